"""Why a task's workers died: a note on Dask's ``KilledWorker`` that says so.

Dask raises ``KilledWorker`` once every worker that ran a task died while it
ran (``distributed.scheduler.allowed-failures`` + 1 of them); its message does
not say why. The most common cause is memory: a worker's nanny restarts the
worker once it uses more than ``distributed.worker.memory.terminate`` (95%) of
its memory limit, and logs a ``worker-restart-memory`` event on the scheduler.
:func:`explain_killed` looks for those events and, when the task's last
worker was restarted for memory, adds a note saying so and what to do.
"""

from __future__ import annotations

import time
from typing import Any

import distributed
from dask.utils import format_bytes
from distributed.scheduler import KilledWorker

__all__ = ["MEMORY_TOPIC", "explain_killed", "memory_note"]

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
