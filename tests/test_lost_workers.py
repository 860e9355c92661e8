"""Every worker killed at once, with nannies bringing them back: batches pinned
to the dead workers are re-sent, and each run finishes as it would have."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time

import dask.config
import numpy as np
import pytest
import scipy.optimize
from distributed import Worker
from distributed.utils_test import async_poll_for, gen_cluster, poll_for

from dasktune import SPSA, Float, HyperScipySampler, Search, minimize
from dasktune.exceptions import NoWorkersError
from dasktune.run.lost import no_workers_timeout
from dasktune.run.submit import Window
from tests.clusters import local_client


def slow_sphere(x):
    time.sleep(0.01)
    return float(np.sum(np.asarray(x) ** 2))


def slow_noisy(x, seed=None):
    time.sleep(0.01)
    rng = np.random.default_rng(seed)
    return float(np.sum(np.asarray(x) ** 2) + 0.01 * rng.normal())


def slow_objective(params):
    time.sleep(0.01)
    return (params["x"] - 0.3) ** 2 + (params["y"] + 0.2) ** 2


def _kill_every_worker(client):
    """SIGKILL every worker process at once (their nannies start new ones)."""
    pids = client.run(os.getpid)
    for pid in pids.values():
        os.kill(pid, signal.SIGKILL)


class _KillWhileBusy(threading.Thread):
    """Kill every worker once tasks of the run are processing on them."""

    def __init__(self, client):
        super().__init__(name="kill-while-busy")
        self.client = client
        self.killed = False
        self.error = None

    def run(self):
        try:
            poll_for(lambda: any(self.client.processing().values()), timeout=60)
            _kill_every_worker(self.client)
            self.killed = True
        except BaseException as err:  # seen by the test
            self.error = err


def _while_killed(client, call):
    killer = _KillWhileBusy(client)
    killer.start()
    try:
        result = call()
    finally:
        killer.join(timeout=60)
    assert killer.error is None, killer.error
    assert killer.killed
    return result


@pytest.mark.timeout(180)
def test_de_survives_every_worker_killed_and_equals_scipy():
    bounds = [(-2.0, 2.0)] * 3
    options = {"maxiter": 6, "popsize": 10, "polish": False}
    expected = scipy.optimize.differential_evolution(
        slow_sphere, bounds, rng=3, updating="deferred", **options
    )
    with local_client(2, 1) as client:
        result = _while_killed(
            client,
            lambda: minimize(slow_sphere, bounds, seed=3, client=client, **options),
        )
    assert np.array_equal(result.x, expected.x)
    assert result.fun == expected.fun
    assert result.nfev == expected.nfev


@pytest.mark.timeout(180)
def test_spsa_survives_every_worker_killed_and_is_unchanged():
    kwargs = {"maxiter": 12, "seed": 5, "print_iters": None}
    with local_client(2, 1) as client:
        quiet = SPSA(slow_noisy, [1.0, -1.0], client=client, **kwargs)
        killed = _while_killed(
            client, lambda: SPSA(slow_noisy, [1.0, -1.0], client=client, **kwargs)
        )
    assert np.array_equal(killed.x, quiet.x)
    assert killed.fun == quiet.fun


@pytest.mark.timeout(180)
def test_search_survives_every_worker_killed_and_leaves_nothing_running(tmp_path):
    space = {"x": Float(-1.0, 1.0), "y": Float(-1.0, 1.0)}
    store = tmp_path / "lost.db"
    with (
        local_client(2, 1) as client,
        HyperScipySampler(
            space, method="differential_evolution", seed=2, popsize=8, maxiter=5
        ) as sampler,
    ):
        search = Search("lost", slow_objective, store=store, client=client)
        report = _while_killed(
            client, lambda: search.run(sampler, n_trials=80, progress=False)
        )
        trials = search.trials()
    assert report.evaluated + report.failed == 80
    assert report.failed == 0
    assert "running" not in set(trials["status"])


def double(x):
    return 2 * x


def _harvest_all(window):
    got = []
    while len(window):
        got += [(tag, result) for _, result, tag in window.next_batch()]
    return sorted(got)


@gen_cluster(client=True, nthreads=[], timeout=60)
async def test_a_task_pinned_to_a_gone_worker_is_sent_to_a_new_one(c, s):
    # Dask places a no-worker task only on the workers it names, even with
    # allow_other_workers: the window sends it again to the worker that joined
    window = Window(c, what="pinned")
    window.map(
        double, [1, 2], ["a", "b"], keys=["pin-a", "pin-b"],
        workers=["tcp://127.0.0.1:9", "tcp://127.0.0.1:9"],
    )  # fmt: skip
    await async_poll_for(lambda: len(s.unrunnable) == 2, timeout=10)
    async with Worker(s.address, nthreads=1):
        got = await asyncio.to_thread(_harvest_all, window)
    assert got == [("a", 2), ("b", 4)]
    assert window.resent == 2


@gen_cluster(client=True, nthreads=[], timeout=60)
async def test_no_worker_for_too_long_says_what_waited(c, s):
    window = Window(c, what="DE generation 3")
    window.map(double, [1], ["a"], keys=["alone"])
    with (
        dask.config.set({"dasktune.no-workers-timeout": 0.5}),
        pytest.raises(NoWorkersError) as info,
    ):
        await asyncio.to_thread(window.next_batch)
    message = str(info.value)
    assert message.startswith("waited 0 s with no worker alive (none since ")
    assert "for the 1 task(s) in flight of DE generation 3 (0 finished" in message
    assert "dasktune.no-workers-timeout" in message
    await asyncio.to_thread(window.cancel)


def test_no_workers_timeout_reads_the_configuration():
    assert no_workers_timeout() == 600.0
    with dask.config.set({"dasktune.no-workers-timeout": None}):
        assert no_workers_timeout() is None
    with dask.config.set({"dasktune.no-workers-timeout": "1 minute"}):
        assert no_workers_timeout() == 60.0
    for bad in (-1, "soon"):
        with (
            dask.config.set({"dasktune.no-workers-timeout": bad}),
            pytest.raises(ValueError, match="must be a positive number of seconds"),
        ):
            no_workers_timeout()


def square(params):
    return params["x"] ** 2


@gen_cluster(client=True, nthreads=[], timeout=60)
async def test_fed_trials_with_no_worker_for_too_long_say_so(c, s):
    search = Search("fed", square, "sqlite://", client=c, space={"x": Float(0, 1)})
    with (
        dask.config.set({"dasktune.no-workers-timeout": 0.5}),
        pytest.raises(NoWorkersError, match=r"trial\(s\) fed by fed"),
    ):
        await asyncio.to_thread(
            search.run, None, n_trials=2, seed=0, progress=False, execution="feed"
        )
    assert "running" not in set(
        await asyncio.to_thread(lambda: search.trials()["status"])
    )
