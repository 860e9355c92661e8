"""Trials another driver holds: looked at read-only, every so often.

A trial the store says is held by another driver (``DecisionKind.ELSEWHERE``)
is waited for, not evaluated again: :func:`peek_elsewhere` asks the recorder
(:meth:`~dasktune.records.Recorder.peek`, which takes no write lock) every
0.25 s whether its holder finished it (its result is then told) or is gone
(it is then claimed again, within the run's budget).
"""

from __future__ import annotations

import time
from typing import Any, Protocol, TypeVar

from dasktune.records import DecisionKind, Recorder
from dasktune.run.submit import Submitter

__all__ = ["peek_elsewhere"]

_WAIT_ELSEWHERE_SECONDS = 0.25


class _Held(Protocol):
    param_hash: str


P = TypeVar("P", bound=_Held)


def peek_elsewhere(
    recorder: Recorder,
    waiting: list[P],
    peeked: float,
    flying: Submitter[Any],
    budget: int | None,
) -> tuple[float, list[P], list[P], int]:
    """Look (read-only) at trials another driver holds, every so often.

    Returns when it looked, the trials to claim again (their holder finished,
    or is gone: those come last), those still held, and how many of the
    former this driver would evaluate. A trial taken over is an evaluation
    like a new one: no more are taken than the ``budget`` of evaluations
    left (``None``: no limit); the rest are dropped, never evaluated by this
    run. Waits out the interval first when nothing of this driver's is in
    flight (there is no event to wait on: the other driver is another
    process).
    """
    wait = peeked + _WAIT_ELSEWHERE_SECONDS - time.monotonic()
    if wait > 0:
        if len(flying):
            return peeked, [], waiting, 0
        time.sleep(wait)
    decisions = recorder.peek([p.param_hash for p in waiting])
    held: list[P] = []
    told: list[P] = []
    taken: list[P] = []
    for pending, decision in zip(waiting, decisions, strict=True):
        if decision.kind == DecisionKind.ELSEWHERE:
            held.append(pending)
        elif decision.kind == DecisionKind.EVALUATE:
            taken.append(pending)
        else:
            told.append(pending)
    if budget is not None:
        taken = taken[: max(budget, 0)]
    return time.monotonic(), [*told, *taken], held, len(taken)
