"""What ``retries`` means on a worker, written once.

``retries`` means one thing everywhere (see :mod:`dasktune.run.submit`): how
many times one call that raised is run again, on its worker, before its error
counts. Every worker-side loop — ``async_map``'s chunks, a search's trials, a
vectorized objective's columns — runs its calls through :func:`retried`:

- any exception is retried, ``SystemExit`` and ``KeyboardInterrupt`` too
  (raised out of a task they would kill the worker), and caught: the caller
  decides what a final error becomes;
- a call past its time limit (``limit`` seconds, through
  :func:`~dasktune.run.timelimit.call_limited`) is not retried: it would most
  likely run past its limit again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, NamedTuple, TypeVar

from dasktune.exceptions import TrialTimeoutError
from dasktune.run.timelimit import call_limited

__all__ = ["Attempts", "retried"]

R = TypeVar("R")


class Attempts(NamedTuple, Generic[R]):
    """How a call went: its value or its last error, after ``calls`` calls
    (a named tuple: made on every trial, it costs next to nothing).

    Attributes
    ----------
    value : object
        What the last call returned (``None`` when it raised).
    error : BaseException or None
        What the last call raised, once no retry was left.
    calls : int
        How many calls were made (1 + the retries used).
    seconds : float
        How long the last call took.
    """

    value: R | None
    error: BaseException | None
    calls: int
    seconds: float


def retried(
    call: Callable[[], R],
    retries: int,
    limit: float | None = None,
    *,
    before: Callable[[], None] | None = None,
) -> Attempts[R]:
    """``call()``, run again up to ``retries`` times while it raises (see the
    module notes); ``before()`` runs ahead of each call, outside its limit.

    >>> calls = []
    >>> def flaky():
    ...     calls.append(1)
    ...     if len(calls) < 3:
    ...         raise ValueError(f"call {len(calls)}")
    ...     return "ok"
    >>> done = retried(flaky, retries=2)
    >>> (done.value, done.error, done.calls)
    ('ok', None, 3)
    >>> calls.clear()
    >>> failed = retried(flaky, retries=1)
    >>> (failed.value, repr(failed.error), failed.calls)
    (None, "ValueError('call 2')", 2)
    """
    count = 0
    while True:
        count += 1
        if before is not None:
            before()
        started = time.perf_counter()
        try:
            value = call() if limit is None else call_limited(call, limit)
        except BaseException as err:  # SystemExit too: see the module notes
            timed_out = limit is not None and isinstance(err, TrialTimeoutError)
            if count <= retries and not timed_out:
                continue
            return Attempts(None, err, count, time.perf_counter() - started)
        return Attempts(value, None, count, time.perf_counter() - started)
