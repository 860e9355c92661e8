"""Ctrl-C (a real SIGINT) on a run whose work runs as long tasks: once it has
returned, nothing of it runs on the cluster."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from distributed.utils_test import async_poll_for, gen_cluster, poll_for

from dasktune import async_map, minimize
from dasktune.run.stop import stop_tasks
from tests.clusters import local_client


class CountingSphere:
    """A sphere that appends a byte to ``path`` at each evaluation."""

    def __init__(self, path: str, pause: float = 0.001):
        self.path, self.pause = path, pause

    def __call__(self, x):
        with open(self.path, "ab") as f:
            f.write(b".")
        time.sleep(self.pause)
        return float(np.sum(np.asarray(x) ** 2))


def _count(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _interrupted(client, counted, call):
    """Send SIGINT once 50 evaluations ran; return the count at the return of
    ``call`` (raising KeyboardInterrupt), once no worker runs a task."""
    assert threading.current_thread() is threading.main_thread()  # gets SIGINT

    def interrupt():
        poll_for(lambda: _count(counted) > 50, timeout=60)
        os.kill(os.getpid(), signal.SIGINT)

    killer = threading.Thread(target=interrupt)
    # Ctrl-C as Python makes it, whatever an import in this process set
    # (dask_jobqueue's runner sets sys.exit())
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    killer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            call()
    finally:
        killer.join(timeout=60)
        signal.signal(signal.SIGINT, previous)
    at_return = _count(counted)
    # no worker runs a task of it any more (a cancelled task's thread is still
    # "executing"): none can evaluate again
    executing = client.run(lambda dask_worker: len(dask_worker.state.executing))
    assert not any(executing.values())
    return at_return


@pytest.mark.timeout(120)
def test_ctrl_c_on_dual_annealing_leaves_no_replica_running(tmp_path):
    counted = tmp_path / "evaluations"
    fun = CountingSphere(str(counted))
    with local_client(2, 1) as client:
        at_return = _interrupted(
            client, counted,
            lambda: minimize(
                fun, [(-5.0, 5.0)] * 4, method="dual_annealing", seed=1,
                n_workers=2, maxiter=100_000, client=client,
            ),
        )  # fmt: skip
        assert _count(counted) == at_return


@pytest.mark.timeout(120)
def test_ctrl_c_on_differential_evolution_leaves_no_generation_running(tmp_path):
    # a generation is one task per worker, 200 evaluations each
    counted = tmp_path / "evaluations"
    fun = CountingSphere(str(counted), pause=0.01)
    with local_client(2, 1) as client:
        at_return = _interrupted(
            client, counted,
            lambda: minimize(
                fun, [(-5.0, 5.0)] * 4, seed=1, popsize=100, maxiter=50,
                client=client,
            ),
        )  # fmt: skip
        assert _count(counted) == at_return
        assert at_return < 400  # the first generation was cut short


@pytest.mark.timeout(120)
def test_ctrl_c_on_async_map_leaves_no_chunk_running(tmp_path):
    counted = tmp_path / "evaluations"
    fun = CountingSphere(str(counted), pause=0.01)
    with local_client(2, 1) as client:
        at_return = _interrupted(
            client,
            counted,
            lambda: async_map(fun, [[1.0]] * 2000, client=client, chunksize=1000),
        )
        assert _count(counted) == at_return
        assert at_return < 2000


_release = threading.Event()


def _blocked():
    _release.wait(30)
    return 1


@gen_cluster(client=True, timeout=60)
async def test_a_task_that_does_not_stop_is_named_after_the_bound(c, s, a, b):
    _release.clear()
    future = c.submit(_blocked, key="blocked-1")
    try:
        await async_poll_for(
            lambda: any(
                ts.key == "blocked-1" for w in (a, b) for ts in w.state.executing
            ),
            10,
        )
        late = await asyncio.to_thread(stop_tasks, c, [future], "the run", 0.3)
    finally:
        _release.set()
    assert late is not None
    assert late.startswith("the run: 1 cancelled task(s) still ran their current call")
    assert "blocked-1" in late
    late = await asyncio.to_thread(stop_tasks, c, [], "the run", 0.3)
    assert late is None
