"""Stopping a run's tasks: nothing of an interrupted run keeps running.

Dask cancels a task by forgetting it; a thread already running it runs on.
Tasks that run many evaluations (a batch's share, an ``async_map`` chunk, a
whole scipy replica) call :func:`cancelled_here` before each one and stop once
their task was cancelled; the caller of an interrupted run calls
:func:`stop_tasks`, which cancels its futures and waits (bounded) until no
worker runs one of their tasks any more.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import distributed
from distributed.worker import thread_state

__all__ = ["STOP_SECONDS", "cancelled_here", "stop_tasks"]

#: seconds :func:`stop_tasks` waits for cancelled tasks to leave their threads
STOP_SECONDS = 10.0
#: seconds the workers have to say which tasks they still run
_ASK_WORKERS_SECONDS = 5.0


def cancelled_here() -> bool:
    """On a worker, inside a task: whether the task was cancelled (its thread
    runs on, as Dask cannot stop it; a long task checks this between its
    steps and returns). False outside a task."""
    try:
        worker = distributed.get_worker()
    except ValueError:
        return False
    # the task's key: also in the threads a task runs its trials on
    key = getattr(thread_state, "key", None)
    if key is None:
        return False
    ts = worker.state.tasks.get(key)
    return ts is None or ts.state not in ("executing", "long-running")


def _still_running(keys: Sequence[str], dask_worker: Any = None) -> list[str]:
    """On a worker: which of ``keys`` a thread still runs (cancelled or not)."""
    running = {ts.key for ts in dask_worker.state.executing}
    running |= {ts.key for ts in dask_worker.state.long_running}
    running |= {
        ts.key
        for ts in dask_worker.state.tasks.values()
        if ts.state == "cancelled" and ts.previous in ("executing", "long-running")
    }
    return sorted(running.intersection(keys))


def stop_tasks(
    client: distributed.Client,
    futures: Sequence[distributed.Future],
    what: str,
    seconds: float = STOP_SECONDS,
) -> str | None:
    """Cancel ``futures`` and wait, ``seconds`` at most, until no worker runs
    their tasks any more (tasks that check :func:`cancelled_here` between
    their steps stop at the next one).

    Returns ``None`` once none runs, else a sentence naming those still
    running (for a note on the error that ended the run).
    """
    keys: list[Any] = [f.key for f in futures]
    client.cancel(list(futures))
    deadline = time.monotonic() + seconds
    running: list[Any] = keys
    while True:
        try:
            # Client.run has no timeout: a frozen worker would hold it
            found = client.sync(
                client._run, _still_running, keys, on_error="ignore",
                callback_timeout=_ASK_WORKERS_SECONDS,
            )  # fmt: skip
        except Exception as err:  # the workers cannot be asked: say so
            return f"{what}: could not check that its tasks stopped: {err!r}"
        running = sorted(
            {k for ks in found.values() if isinstance(ks, list) for k in ks}
        )
        if not running or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    if not running:
        return None
    return (
        f"{what}: {len(running)} cancelled task(s) still ran their current call "
        f"{seconds:g} s later ({', '.join(running[:3])}); they stop before the next"
    )
