"""Objectives of the tests that kill worker processes (the feed's,
ProducerConsumer's, a pruned search's).

A module of their own, importing little: every worker process that replaces a
killed one imports the objective's module before its first trial, and under
load (10 and more) importing a test module with its test dependencies took
25 s more than importing ``distributed`` alone.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from distributed import get_worker

from dasktune.run.feed import Feed
from tests.waiting import poll_until


def _reported() -> bool:
    """Whether the driver has every result this worker's feed made: none left
    to take, and the driver's next take() has come (after it had the last)."""
    actors = get_worker().state.actors.values()
    feeds = [f for f in actors if isinstance(f, Feed) and not f.closed]  # this run's
    return bool(feeds) and all(
        not f._results and f._ready is not None and not f._ready.is_set() for f in feeds
    )


def _die() -> None:
    # the trials before it have reported: the window counts a failure for
    # the first one it sent that has not (here: this one)
    poll_until(_reported, what="the driver to have this worker's results")
    os._exit(1)


def die_once_at_seven(params: dict[str, Any]) -> float:
    """Kill the worker process the first time x == 0.7 runs."""
    marker = params["marker"]
    if params["x"] == 0.7 and not os.path.exists(marker):
        open(marker, "w").close()
        _die()
    time.sleep(0.05)
    return params["x"]


def always_dies_at_seven(params: dict[str, Any]) -> float:
    """Kill the worker process whenever x == 0.7 runs."""
    if params["x"] == 0.7:
        _die()
    time.sleep(0.05)
    return params["x"]


def load(x: Any) -> Any:
    """A ProducerConsumer's ``init_function``: the element itself."""
    return x


def held_times(params: tuple[float, str], loaded: float) -> float:
    """``k * loaded`` for ``params = (k, folder)``; a worker process with a
    ``<pid>.hold`` file in ``folder`` says it has started and waits to be
    killed."""
    k, folder = params
    mark = os.path.join(folder, str(os.getpid()))
    if os.path.exists(mark + ".hold"):
        open(mark + ".running", "w").close()
        time.sleep(60)  # killed meanwhile
    return k * loaded


def kill_once(params: dict[str, Any], trial: Any) -> float:
    """Kills its own worker process at epoch 3, the first time it runs."""
    marker = Path(params["marker"])
    for epoch in range(8):
        trial.report(epoch, 1.0 / (epoch + 1))
        if epoch == 3 and not marker.exists():
            marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(0.01)
    return 1.0 / 8
