"""How trials are evaluated: on the workers, and from a batch objective's results.

A plain objective's trials travel to a worker grouped in one opaque object; each
trial is called, timed, retried and caught on its own there, so one failing trial
never hides the others, and its traceback is recorded. Whatever the objective
raises is caught, ``SystemExit`` and ``KeyboardInterrupt`` included: the trial
fails, the worker lives. With a ``limit`` (``trial_timeout``) each call runs
under :func:`dasktune.run.timelimit.call_limited`: past it the trial fails,
"timed out after N s", and is not retried. A batch objective's raw
results are normalised the same way on the client.
"""

from __future__ import annotations

import contextvars
import math
import socket
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, cast

import distributed
import numpy as np
from distributed.protocol import pickle
from distributed.utils import set_thread_state
from numpy.typing import NDArray

from dasktune._checks import short_repr
from dasktune._values import (
    check_not_nan,
    normalize_result,
    read_result,
)
from dasktune.exceptions import DasktuneError, TrialPruned
from dasktune.records import Outcome, TrialStatus, canonical
from dasktune.run.line import Line
from dasktune.run.report import TrialHandle
from dasktune.run.retry import retried
from dasktune.run.stop import cancelled_here
from dasktune.run.timelimit import task_thread_state

__all__ = [
    "Group",
    "GroupResult",
    "evaluate_columns",
    "evaluate_group",
    "failure",
    "failure_exception",
    "normalize_result",
    "outcome_of",
    "read_result",
]


def _transient(err: BaseException) -> BaseException:
    """``err`` as it will reach the driver: a copy that survives pickling.

    The copy holds no traceback (no frames and their locals kept alive); the
    traceback travels as text in ``Outcome.error``. An exception that cannot
    make the round trip becomes a :class:`DasktuneError` carrying its text, and
    so does one that is not an ``Exception`` (``SystemExit``,
    ``KeyboardInterrupt``): raised again in the driver's process it would
    end that process.
    """
    if not isinstance(err, Exception):
        msg = (
            f"the objective raised {type(err).__qualname__}: {err} (caught on the "
            "worker and recorded as a failed trial, so that the worker lives)"
        )
        return DasktuneError(msg)
    try:
        copy = cast(BaseException, pickle.loads(pickle.dumps(err)))
        return copy.with_traceback(None)
    except Exception as pickling_error:
        msg = (
            f"{type(err).__qualname__}: {err} (the objective's exception could not "
            f"be pickled to travel to the driver: {pickling_error})"
        )
        return DasktuneError(msg)


def failure_exception(outcome: Outcome) -> BaseException:
    """The failed trial's own exception, with its traceback text in a note.

    Falls back to a :class:`DasktuneError` carrying the traceback text when
    the exception did not travel (a trial failed in an earlier run, or its
    task was lost). Calling it again returns the same object, noted once.
    """
    exc = outcome.exception
    if exc is None:
        last = (outcome.error or "").strip().splitlines()
        exc = outcome.exception = DasktuneError(last[-1] if last else "a trial failed")
    where = f"worker {outcome.worker}" if outcome.worker else "the client"
    note = f"dasktune: raised by the objective on {where}:\n{outcome.error}"
    if note not in getattr(exc, "__notes__", ()):
        exc.add_note(note)
    return exc


class Group:
    """Trials sent to a worker as one opaque object.

    ``threads`` is how many of them may run at once on the worker (its thread
    count, for a batch sent as one task per worker); 1 runs them in turn.
    Parameter vectors of one length travel as one 2-D array (one pickle for
    the batch, not one per point). With a ``channel`` key (an objective that
    takes ``trial``), ``numbers`` are the trials' numbers, and each trial is
    called with ``trial=TrialHandle(number, channel)`` (``channel``: a
    :class:`~dasktune.run.line.Line`, or a key). ``limit`` is the
    seconds each call may run (``trial_timeout``; ``None``: no limit).
    """

    __slots__ = (
        "channel", "items", "limit", "numbers", "objectives", "retries", "threads",
    )  # fmt: skip

    def __init__(
        self,
        items: list[tuple[str, Any]],
        retries: int,
        threads: int = 1,
        *,
        numbers: list[int] | None = None,
        channel: str | Line | None = None,
        objectives: int = 1,
        limit: float | None = None,
    ) -> None:
        self.items = items
        self.retries = retries
        self.threads = threads
        self.numbers = numbers
        self.channel = channel
        self.objectives = objectives
        self.limit = limit

    def __getstate__(self) -> tuple[Any, ...]:
        hashes = [h for h, _ in self.items]
        params = [p for _, p in self.items]
        first = params[0] if params else None
        if (
            isinstance(first, np.ndarray)
            and first.ndim == 1
            and all(
                type(p) is np.ndarray
                and p.shape == first.shape
                and p.dtype == first.dtype
                for p in params
            )
        ):
            stacked: Any = np.stack(params)
            ok = True
        else:
            stacked, ok = params, False
        return (
            hashes, stacked, ok, self.retries, self.threads, self.numbers,
            self.channel, self.objectives, self.limit,
        )  # fmt: skip

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        hashes, params, stacked, self.retries, self.threads = state[:5]
        self.numbers, self.channel, self.objectives, self.limit = state[5:]
        self.items = list(zip(hashes, list(params) if stacked else params, strict=True))


#: what an attempt returns when its objective raised TrialPruned
_PRUNED = object()

_OUTCOME_COLUMNS = (
    "param_hash", "status", "value", "aux", "error", "attempts", "started",
    "finished", "duration", "exception", "values", "constraints", "reported",
)  # fmt: skip


class GroupResult:
    """The outcomes of a group, and where it ran; travels as columns."""

    __slots__ = ("host", "outcomes", "worker")

    def __init__(self, outcomes: list[Outcome], worker: str | None, host: str) -> None:
        self.outcomes = outcomes
        self.worker = worker
        self.host = host

    def __getstate__(self) -> tuple[Any, ...]:
        columns = [[getattr(o, c) for o in self.outcomes] for c in _OUTCOME_COLUMNS]
        columns[1] = [str(status) for status in columns[1]]
        return self.worker, self.host, columns

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.worker, self.host, columns = state
        columns[1] = [TrialStatus(status) for status in columns[1]]
        self.outcomes = [
            Outcome(h, st, v, a, e, self.worker, self.host, n, s, f, d, vs, c, x, r)
            for h, st, v, a, e, n, s, f, d, x, vs, c, r in zip(*columns, strict=True)
        ]


def _evaluate_one(
    objective: Callable[..., Any],
    params: Any,
    retries: int,
    h: str,
    handle: Callable[[], TrialHandle] | None = None,
    objectives: int = 1,
    limit: float | None = None,
) -> Outcome:
    """One trial, retried; ``handle`` makes each attempt's ``trial`` argument.

    A trial that raises :class:`TrialPruned`, or returns once its pruner
    stopped it, is ``pruned``: with its last reported value when it raised,
    with the value it returned otherwise. Past ``limit`` seconds a call fails
    with :class:`TrialTimeoutError`, not retried (it would most likely run
    past its limit again).
    """
    started = time.time()
    if cancelled_here():  # its run is over (interrupted): nobody reads it
        msg = "not run: its task was cancelled (the run is over)"
        return Outcome(h, TrialStatus.FAILED, error=msg, started=started)
    trial: TrialHandle | None = None

    def new_trial() -> None:  # each attempt reports afresh
        nonlocal trial
        trial = None if handle is None else handle()

    def call() -> Any:
        try:
            raw = objective(params) if trial is None else objective(params, trial=trial)
        except TrialPruned:
            return _PRUNED  # told to stop: a result, never retried
        values, aux, constraints = read_result(raw, objectives)
        check_not_nan(values, params)
        return values, aux, constraints

    done = retried(call, retries, limit, before=None if handle is None else new_trial)
    reported = None if trial is None else trial.last_step
    if done.error is not None:
        return Outcome(
            h,
            TrialStatus.FAILED,
            error="".join(traceback.format_exception(done.error)),
            exception=_transient(done.error),
            attempts=done.calls,
            started=started,
            finished=time.time(),
            duration=done.seconds,
            reported=reported,
        )
    if done.value is _PRUNED:
        assert trial is not None  # only a trial's objective is told to stop
        return Outcome(
            h,
            TrialStatus.PRUNED,
            value=trial.last_value,
            attempts=done.calls,
            started=started,
            finished=time.time(),
            duration=done.seconds,
            reported=reported,
        )
    assert done.value is not None  # no error: what call() returned
    values, aux, constraints = done.value
    stopped = trial is not None and trial.should_prune()
    return Outcome(
        h,
        TrialStatus.PRUNED if stopped else TrialStatus.DONE,
        value=values[0],
        aux=canonical(aux)[0] if aux else {},
        attempts=done.calls,
        started=started,
        finished=time.time(),
        duration=done.seconds,
        values=values if objectives > 1 else None,
        constraints=constraints,
        reported=reported,
    )


def _handles(group: Group) -> list[Callable[[], TrialHandle] | None]:
    """Each item's maker of ``trial`` handles (``None``: a plain objective)."""
    if group.channel is None or group.numbers is None:
        return [None] * len(group.items)
    return [partial(TrialHandle, n, group.channel) for n in group.numbers]


def evaluate_group(objective: Callable[[Any], Any], group: Group) -> GroupResult:
    """Run on a worker: every trial of the group, each caught on its own.

    With ``group.threads > 1`` the trials run on a pool of that many threads
    (the worker's own count: this task stands for all of them), joined before
    returning; results keep the group's order.
    """
    try:
        worker = distributed.get_worker().address
    except ValueError:
        worker = None
    threads = min(group.threads, len(group.items))
    if threads > 1:
        # the pool's threads see the task's worker and key, as the task does
        # (get_worker(), thread_state.key inside the objective)
        state = task_thread_state()

        def one(
            item: tuple[str, Any],
            handle: Callable[[], TrialHandle] | None,
            context: contextvars.Context,
        ) -> Outcome:
            with set_thread_state(**state):
                return context.run(
                    _evaluate_one, objective, item[1], group.retries, item[0],
                    handle, group.objectives, group.limit,
                )  # fmt: skip

        contexts = [contextvars.copy_context() for _ in group.items]
        with ThreadPoolExecutor(threads, thread_name_prefix="dasktune-trial") as pool:
            outcomes = list(pool.map(one, group.items, _handles(group), contexts))
    else:
        outcomes = [
            _evaluate_one(
                objective, p, group.retries, h, handle, group.objectives, group.limit
            )
            for (h, p), handle in zip(group.items, _handles(group), strict=True)
        ]
    return GroupResult(outcomes, worker, socket.gethostname())


def evaluate_columns(objective: Callable[[Any], Any], group: Group) -> GroupResult:
    """Run on a worker: a vectorized objective called once for the whole group.

    The group's points are the columns of one ``(N, S)`` array and the
    objective returns their ``S`` values (scipy's ``vectorized=True``); each
    point is still recorded on its own, sharing the call's time. A raising call
    is re-run ``retries`` times; when it still raises, or returns the wrong
    shape, every point of the group fails with that error. ``group.limit``
    bounds the call (the group's points together).
    """
    try:
        worker = distributed.get_worker().address
    except ValueError:
        worker = None
    hashes = [h for h, _ in group.items]
    points = np.column_stack([np.asarray(p, dtype=float) for _, p in group.items])
    started = time.time()

    def call() -> NDArray[np.float64]:
        return _column_values(objective(points.copy()), points.shape)

    done = retried(call, group.retries, group.limit)
    values = done.value
    attempts = done.calls
    exception = None if done.error is None else _transient(done.error)
    error = (
        "" if done.error is None else "".join(traceback.format_exception(done.error))
    )
    share = done.seconds / len(hashes)
    finished = time.time()
    outcomes = []
    for j, h in enumerate(hashes):
        if values is None or math.isnan(values[j]):
            if values is not None:
                error = (
                    "the vectorized objective returned NaN for column "
                    f"{j}: {points[:, j].tolist()!r}"
                )
            outcomes.append(
                Outcome(h, TrialStatus.FAILED, error=error, attempts=attempts,
                        started=started, finished=finished, duration=share,
                        exception=exception)
            )  # fmt: skip
        else:
            outcomes.append(
                Outcome(h, TrialStatus.DONE, value=float(values[j]), attempts=attempts,
                        started=started, finished=finished, duration=share)
            )  # fmt: skip
    return GroupResult(outcomes, worker, socket.gethostname())


def _column_values(raw: Any, shape: tuple[int, ...]) -> NDArray[np.float64]:
    """A vectorized objective's values: ``S`` numbers for ``S`` columns.

    As scipy does, a result that squeezes to shape ``(S,)`` is accepted.

    >>> _column_values([1, 2], (3, 2)).tolist()
    [1.0, 2.0]
    >>> _column_values(5.0, (3, 2))
    Traceback (most recent call last):
    ...
    ValueError: a vectorized objective must return shape (2,) ...
    """
    n, s = shape
    expected = (
        f"a vectorized objective must return shape ({s},) (one value per column) "
        f"when given an array of shape ({n}, {s})"
    )
    try:
        values = np.asarray(raw, dtype=float)
    except (TypeError, ValueError) as err:
        msg = f"{expected}; got {type(raw).__name__}: {short_repr(raw)}"
        raise TypeError(msg) from err
    squeezed = np.atleast_1d(np.squeeze(values))
    if squeezed.shape != (s,):
        msg = (
            f"{expected}; got shape {values.shape}. Return one number per column, "
            "e.g. np.sum(x**2, axis=0)"
        )
        raise ValueError(msg)
    return squeezed


def failure(
    param_hash: str, error: str, started: float, exception: BaseException | None = None
) -> Outcome:
    """A failed trial's outcome; ``exception`` is kept with it (not stored)."""
    now = time.time()
    return Outcome(
        param_hash,
        TrialStatus.FAILED,
        error=error,
        exception=None if exception is None else _transient(exception),
        started=started,
        finished=now,
        duration=now - started,
    )


def outcome_of(
    call: Any,
    param_hash: str,
    raw: Any,
    started: float,
    finished: float,
    objectives: int = 1,
) -> Outcome:
    """The outcome of a raw result returned for ``call`` (a batch objective's)."""
    try:
        values, aux, constraints = read_result(raw, objectives)
        check_not_nan(values, call)
    except Exception as err:
        return failure(param_hash, traceback.format_exc(), started, err)
    return Outcome(
        param_hash,
        TrialStatus.DONE,
        value=values[0],
        aux=canonical(aux)[0] if aux else {},
        started=started,
        finished=finished,
        duration=finished - started,
        values=values if objectives > 1 else None,
        constraints=constraints,
    )
