"""``async_map`` in the caller's process, while the policy keeps it there.

:func:`map_here` calls ``fun`` on the elements of ``args`` here, in order,
timing the first calls for :class:`~dasktune.run.policy.ExecutionPolicy`: a
cheap ``fun`` is mapped here whole, and no cluster is started; when the calls
are worth a cluster, it stops and hands back what is left of ``args``. A call
that raises is run again up to ``retries`` times, then its exception is raised
with the note the cluster's path gives it (the element's index and a short
repr). No Dask here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from dasktune._checks import short_repr
from dasktune.run.policy import ExecutionDecision, ExecutionPolicy

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
    decision = policy.forced
    deadline = None if timeout is None else time.perf_counter() + timeout
    for index, item in enumerate(iterator):
        if deadline is not None and time.perf_counter() > deadline:
            msg = (
                f"async_map did not finish within timeout={timeout} s: {index} of "
                f"{n if n is not None else 'an unknown number of'} elements done "
                "(in the caller's process)"
            )
            raise TimeoutError(msg)
        started = time.perf_counter()
        results.append(_call(fun, item, index, retries))
        if decision is None:
            durations.append(time.perf_counter() - started)
            decision = policy.after_probe(durations, len(results))
            if decision is not None and decision.where != "local":
                break
    if decision is None:
        fastest = min(durations, default=0.0)
        reason = (
            "the map ended within the calls timed to decide (the fastest took "
            f"{fastest * 1e3:.3g} ms), in the caller's process"
        )
        decision = ExecutionDecision("local", reason)
    logger.debug("async_map: execution %s: %s", decision.where, decision.reason)
    return results, decision


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
