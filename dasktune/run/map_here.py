"""``async_map`` in the caller's process, while the policy keeps it there.

:func:`map_here` calls ``fun`` on the elements of ``args`` here, in order,
timing the first calls for :class:`~dasktune.run.policy.ExecutionPolicy`: a
cheap ``fun`` is mapped here whole, and no cluster is started; calls that wait,
in a short map with a local multi-thread cluster current, are mapped here on as
many threads, in order; when the calls are worth a cluster, it stops and hands
back what is left of ``args``. A call
that raises is run again up to ``retries`` times, then its exception is raised
with the note the cluster's path gives it (the element's index and a short
repr). No Dask here.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from dasktune._checks import short_repr
from dasktune.run.policy import ExecutionDecision, ExecutionPolicy, ended_while_timing
from dasktune.run.threads_here import cpu_seconds, sched_clock

__all__ = ["map_here"]

logger = logging.getLogger("dasktune")


def map_here(
    fun: Callable[[Any], Any],
    iterator: Iterator[Any],
    *,
    policy: ExecutionPolicy,
    retries: int = 0,
    timeout: float | None = None,
    n: int | None = None,
) -> tuple[list[Any], ExecutionDecision]:
    """``[fun(x) for x in iterator]`` here while ``policy`` keeps the map here.

    Returns
    -------
    results : list
        In order; all of them when ``decision.where == "local"``, else those
        of the elements drawn so far (``iterator`` holds the rest).
    decision : ExecutionDecision

    Raises
    ------
    TimeoutError
        Past ``timeout`` seconds (checked between calls).
    Exception
        What ``fun`` raised, with a note naming the element.
    """
    results: list[Any] = []
    durations: list[float] = []
    cpus: list[float] = []
    decision = policy.forced
    deadline = None if timeout is None else time.perf_counter() + timeout
    for index, item in enumerate(iterator):
        if deadline is not None and time.perf_counter() > deadline:
            raise _timed_out(timeout, index, n)
        clock = sched_clock() if decision is None else (0.0, 0.0)
        started = time.perf_counter()
        results.append(_call(fun, item, index, retries))
        if decision is None:
            durations.append(time.perf_counter() - started)
            cpus.append(cpu_seconds(durations[-1], clock, sched_clock()))
            decision = policy.after_probe(durations, len(results), cpu=cpus)
            if decision is not None and decision.where != "local":
                break
            if decision is not None and decision.threads > 1:
                rest = _ThreadedRest(fun, iterator, decision.threads, retries, deadline)
                results.extend(rest.map(len(results), timeout, n))
                break
    if decision is None:
        decision = ended_while_timing(durations, run="map", timed="calls")
    logger.debug("async_map: execution %s: %s", decision.where, decision.reason)
    return results, decision


def _timed_out(timeout: float | None, done: int, n: int | None) -> TimeoutError:
    msg = (
        f"async_map did not finish within timeout={timeout} s: {done} of "
        f"{n if n is not None else 'an unknown number of'} elements done "
        "(in the caller's process)"
    )
    return TimeoutError(msg)


class _ThreadedRest:
    """The rest of a map whose calls wait, on ``width`` threads here: in
    order, at most two calls a thread in flight; each call started before
    the deadline; the first failure in order raised (what follows it
    cancelled); the threads joined, however it ends."""

    def __init__(
        self,
        fun: Callable[[Any], Any],
        iterator: Iterator[Any],
        width: int,
        retries: int,
        deadline: float | None,
    ) -> None:
        self.fun, self.iterator, self.width = fun, iterator, width
        self.retries, self.deadline = retries, deadline

    def map(self, start: int, timeout: float | None, n: int | None) -> list[Any]:
        results: list[Any] = []
        pending: collections.deque[Future[Any]] = collections.deque()
        pool = ThreadPoolExecutor(self.width, thread_name_prefix="dasktune-here")
        try:
            for index, item in enumerate(self.iterator, start):
                pending.append(pool.submit(self._call, item, index))
                if len(pending) >= 2 * self.width:
                    results.append(self._result(pending.popleft(), timeout, n))
            while pending:
                results.append(self._result(pending.popleft(), timeout, n))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return results

    def _call(self, item: Any, index: int) -> Any:
        if self.deadline is not None and time.perf_counter() > self.deadline:
            return _Skipped(index)
        return _call(self.fun, item, index, self.retries)

    @staticmethod
    def _result(future: Future[Any], timeout: float | None, n: int | None) -> Any:
        value = future.result()  # a call of fun's: as long as it takes here
        if isinstance(value, _Skipped):
            raise _timed_out(timeout, value.index, n)
        return value


class _Skipped:
    """A call not made: the map's deadline passed before its turn."""

    def __init__(self, index: int) -> None:
        self.index = index


def _call(fun: Callable[[Any], Any], item: Any, index: int, retries: int) -> Any:
    """``fun(item)``, run again up to ``retries`` times when it raises."""
    attempt = 0
    while True:
        try:
            return fun(item)
        except Exception as err:
            attempt += 1
            if attempt <= retries:
                continue
            err.add_note(
                f"async_map: raised by element {index} of args: {short_repr(item)}"
            )
            raise
