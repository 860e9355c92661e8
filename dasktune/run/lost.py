"""Lost workers: why a task's workers died, and how long to wait for new ones.

Dask raises ``KilledWorker`` once every worker that ran a task died while it
ran (``distributed.scheduler.allowed-failures`` + 1 of them); its message does
not say why. The most common cause is memory: a worker's nanny restarts the
worker once it uses more than ``distributed.worker.memory.terminate`` (95%) of
its memory limit, and logs a ``worker-restart-memory`` event on the scheduler.
:func:`explain_killed` looks for those events and, when the task's last
worker was restarted for memory, adds a note saying so and what to do.

While the cluster has no worker at all, work waits for one at most
``dasktune.no-workers-timeout`` seconds (Dask's configuration; default
:data:`NO_WORKERS_TIMEOUT`, ``None`` waits for ever): :class:`NoWorkersClock`
keeps that time for a window and raises
:class:`~dasktune.exceptions.NoWorkersError` past it.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from typing import Any

import dask.config
import distributed
from dask.utils import format_bytes, parse_timedelta
from distributed.scheduler import KilledWorker

from dasktune.exceptions import NoWorkersError

__all__ = [
    "MEMORY_TOPIC",
    "NO_WORKERS_TIMEOUT",
    "NoWorkersClock",
    "explain_killed",
    "memory_note",
    "no_workers_timeout",
]

#: the scheduler's event topic a nanny logs a restart for memory under
MEMORY_TOPIC = "worker-restart-memory"
#: seconds to wait for the nanny's event, which may reach the scheduler after
#: the worker's death does
_EVENT_WAIT_SECONDS = 1.0


def memory_note(worker: str, rss: int | None, limit: Any) -> str:
    """The note for a task whose worker was restarted for exceeding its memory.

    >>> print(memory_note("tcp://w:1", 2**31, 2**30))  # doctest: +ELLIPSIS
    dasktune: memory is the likely cause: the nanny restarted worker tcp://w:1 ...
    """
    used = "" if rss is None else f" (it used {format_bytes(rss)}"
    if used and isinstance(limit, int | float) and limit:
        used += f" of its {format_bytes(int(limit))} limit"
    used += ")" if used else ""
    return (
        f"dasktune: memory is the likely cause: the nanny restarted worker {worker} "
        f"for exceeding its memory limit{used}. Give each worker more memory "
        "(LocalCluster(memory_limit=...), a larger job), fewer threads per worker, "
        "or make the function use less (smaller batches or chunks, data loaded "
        "once with ProducerConsumer)"
    )


def explain_killed(client: distributed.Client, err: BaseException) -> None:
    """Add a note to a ``KilledWorker`` whose task's last worker the nanny
    restarted for memory; anything else is left as it is."""
    if not isinstance(err, KilledWorker):
        return
    address = getattr(err.last_worker, "address", None)
    if address is None:
        return
    deadline = time.monotonic() + _EVENT_WAIT_SECONDS
    while True:
        try:
            events = client.get_events(MEMORY_TOPIC)
        except Exception as lookup:  # the scheduler cannot say: leave it be
            err.add_note(f"dasktune: could not ask the scheduler why: {lookup!r}")
            return
        hits = [
            e for _, e in events if isinstance(e, dict) and e.get("worker") == address
        ]
        if hits or time.monotonic() >= deadline:
            break
        time.sleep(0.1)  # the nanny's event may still be on its way
    if not hits:
        return
    limit = getattr(err.last_worker, "memory_limit", None)
    err.add_note(memory_note(address, hits[-1].get("rss"), limit))


#: seconds a window waits while the cluster has no worker at all, by default
#: (``dasktune.no-workers-timeout`` in Dask's configuration overrides it)
NO_WORKERS_TIMEOUT = 600.0


def no_workers_timeout() -> float | None:
    """Seconds to wait while no worker is alive: Dask's configuration
    ``dasktune.no-workers-timeout`` (seconds or ``"10 minutes"``; ``None``:
    for ever), else :data:`NO_WORKERS_TIMEOUT`.

    >>> with dask.config.set({"dasktune.no-workers-timeout": "2 minutes"}):
    ...     no_workers_timeout()
    120.0
    """
    return config_seconds(
        "dasktune.no-workers-timeout", NO_WORKERS_TIMEOUT, "'10 minutes', or None"
    )


def config_seconds(key: str, default: float | None, form: str) -> float | None:
    """Seconds from Dask's configuration ``key`` (a number of seconds or a
    duration such as ``"20s"``), else ``default``; ``None`` stays ``None``.

    Raises
    ------
    ValueError
        For a value that is not a positive duration; ``form`` says what else
        it may be ("'20s'").

    >>> config_seconds("dasktune.no-such-key", 5, "'20s'")
    5.0
    """
    value = dask.config.get(key, default)
    if value is None:
        return None
    try:
        seconds = parse_timedelta(value, default="seconds")
    except (KeyError, TypeError, ValueError):  # what dask raises for each
        seconds = None
    if seconds is None or not seconds > 0:
        msg = (
            f"Dask's configuration {key} must be a positive number of seconds "
            f"or a duration such as {form}, got {value!r}"
        )
        raise ValueError(msg)
    return float(seconds)


class NoWorkersClock:
    """How long a window has seen the cluster without any worker; raises
    :class:`~dasktune.exceptions.NoWorkersError` past
    :func:`no_workers_timeout`."""

    def __init__(self) -> None:
        self.since: tuple[float, float] | None = None  # monotonic, wall

    def look(self, alive: int, waiting: Callable[[], str]) -> None:
        """Seen ``alive`` workers; ``waiting()`` says what waits, for the error
        (``"the 4 task(s) in flight of DE (12 finished before)"``)."""
        if alive:
            self.since = None
            return
        now = time.monotonic()
        if self.since is None:
            self.since = (now, time.time())
        limit = no_workers_timeout()
        if limit is not None and now - self.since[0] > limit:
            since = datetime.datetime.fromtimestamp(self.since[1])
            msg = (
                f"waited {limit:.0f} s with no worker alive (none since "
                f"{since:%H:%M:%S}) for {waiting()}; the cluster lost every "
                "worker and none joined: check its workers (their logs, the batch "
                "system's jobs), or wait longer with Dask's configuration "
                "dask.config.set({'dasktune.no-workers-timeout': seconds or None})"
            )
            raise NoWorkersError(msg)
