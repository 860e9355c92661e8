"""A search resumed: what the store holds, handed to the run's optimizer and
pruner before it starts.

- :func:`warm_start`: an optimizer that learns from others' results is told
  the done and failed trials (a resumed search, or several drivers);
- :func:`requeue`: an optimizer that proposes given points first is handed
  the interrupted trials (queued, or running under a driver that is gone);
- :func:`restore`: a pruner replays the curves of the final trials.

Each reads the store only when the optimizer or pruner uses what it reads.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from dasktune.optim.base import AskTell, Optimizer
from dasktune.optim.pruners import Pruner
from dasktune.records import FIELD, DecisionKind, TrialStatus, canonical
from dasktune.store.rows import DECODING_ERRORS, damaged_trial
from dasktune.store.sql import TrialStore

__all__ = ["requeue", "restore", "told", "warm_start"]


def warm_start(
    optimizer: AskTell,
    store: TrialStore,
    search_id: int,
    signs: Sequence[float],
    name: str,
) -> int:
    """Teach an optimizer that learns from others' results what the store
    holds (a resumed search, or several drivers): its ``warm_start``."""
    if not isinstance(optimizer, Optimizer) or not optimizer.wants_values:
        return 0
    if type(optimizer).warm_start is Optimizer.warm_start:
        return 0  # it ignores them: do not read the store for nothing
    _, rows = store.read_trials(
        search_id, status=[TrialStatus.DONE, TrialStatus.FAILED]
    )
    try:
        results = told(rows, signs)
    except DECODING_ERRORS as err:  # a row damaged or written by hand: named
        raise damaged_trial(store.display_url, rows, err, repr(name)) from err
    return optimizer.warm_start(results) if results else 0


def requeue(
    optimizer: AskTell, store: TrialStore, search_id: int, stale_after: float, name: str
) -> int:
    """Hand an optimizer that proposes given points first (its ``requeue``)
    this search's interrupted trials: queued (a run stopped by a timeout
    or Ctrl-C), or running under a driver that is gone (killed)."""
    if not isinstance(optimizer, Optimizer):
        return 0
    if type(optimizer).requeue is Optimizer.requeue:
        return 0  # it ignores them: do not read the store for nothing
    _, rows = store.read_trials(
        search_id, status=[TrialStatus.QUEUED, TrialStatus.RUNNING]
    )
    if not rows:
        return 0
    try:
        points = [json.loads(row[FIELD["params"]]) for row in rows]
    except DECODING_ERRORS as err:  # a row damaged or written by hand: named
        raise damaged_trial(store.display_url, rows, err, repr(name)) from err
    # who may evaluate them now: not a trial a live driver runs
    decisions = store.peek(
        search_id,
        "",
        [canonical(p)[1] for p in points],
        stale_after=stale_after,
    )
    left = [
        p
        for p, d in zip(points, decisions, strict=True)
        if d.kind == DecisionKind.EVALUATE
    ]
    return optimizer.requeue(left) if left else 0


def restore(pruner: Pruner, store: TrialStore, search_id: int) -> None:
    """Rebuild ``pruner`` from the store: the curves of the trials that are
    final (done, pruned), replayed in the order reported, and the done ones
    completed. Unfinished trials' reports are left out: they run again and
    report their steps again."""
    _, rows = store.read_trials(
        search_id, status=[TrialStatus.DONE, TrialStatus.PRUNED]
    )
    final = {int(row[FIELD["number"]]) for row in rows}
    done = [
        int(row[FIELD["number"]])
        for row in rows
        if row[FIELD["status"]] == TrialStatus.DONE
    ]
    reports = [
        (n, step, value)
        for n, step, value, _ in store.read_values(search_id)
        if n in final
    ]
    if reports or done:
        pruner.restore(reports, completed=done)


def told(
    rows: Sequence[Sequence[Any]], signs: Sequence[float]
) -> list[tuple[Any, ...]]:
    """What a warm start tells: each done or failed row's parameters and
    value (minimised; ``inf`` for a failure), with its constraints if any."""
    results: list[tuple[Any, ...]] = []
    for row in rows:
        params = json.loads(row[FIELD["params"]])
        value, objectives = row[FIELD["value"]], row[FIELD["objectives"]]
        told: Any = math.inf
        if row[FIELD["status"]] != TrialStatus.DONE or value is None:
            pass
        elif len(signs) == 1:
            told = signs[0] * float(value)
        elif objectives is not None:
            told = tuple(
                s * float(v) for s, v in zip(signs, json.loads(objectives), strict=True)
            )
        constraints = row[FIELD["constraints"]]
        if constraints is None:
            results.append((params, told))
        else:
            results.append((params, told, tuple(json.loads(constraints))))
    return results
