"""ProducerConsumer: loaded once, evaluated in place, resilient to lost workers."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import threading
import time

import numpy as np
import pytest
from distributed import Worker
from distributed.utils_test import gen_cluster

from dasktune import SPSA, ProducerConsumer, Search, minimize
from tests.clusters import local_client
from tests.dying import held_times, load
from tests.waiting import async_poll_until, poll_until

_lock = threading.Lock()
_inits: list[int] = []


@pytest.fixture(autouse=True)
def _reset():
    _inits.clear()


def slow_load(x):
    time.sleep(0.05)
    with _lock:
        _inits.append(x)
    return x


def times(params, loaded):
    return params * loaded


class Unpicklable:
    def __init__(self, value):
        self.value = value
        self.lock = threading.Lock()

    def __reduce__(self):
        raise TypeError("this object must never travel")


def load_unpicklable(x):
    return Unpicklable(x)


def use_unpicklable(params, loaded):
    with loaded.lock:
        return params + loaded.value


def ident(x):
    return x


def lock_on_three(params, loaded):
    """A result that cannot be pickled for the item 3."""
    return threading.Lock() if loaded == 3 else params + loaded


def fails_on_three(x):
    if x == 3:
        raise OSError(f"cannot read shard {x}")
    return x


def divide(params, loaded):
    return loaded / params


def load_normal(seed):
    return np.random.default_rng(seed).normal(loc=1.5, scale=1.0, size=2000)


def neg_loglike(theta, data):
    return float(0.5 * np.sum((data - theta[0]) ** 2))


def neg_loglike_named(params, data):  # a Search hands the parameters as a dict
    return float(0.5 * np.sum((data - params["mu"]) ** 2))


async def call(fn, *args, **kwargs):
    return await asyncio.to_thread(fn, *args, **kwargs)


@gen_cluster(client=True)
async def test_optimtools_readme_example(c, s, a, b):
    pc = await call(ProducerConsumer, slow_load, [1, 2, 3, 4], times, client=c)
    assert await call(pc.run, 2) == [2, 4, 6, 8]  # in init_data order
    assert await call(pc.run, -1) == [-1, -2, -3, -4]
    pc.close()


@gen_cluster(client=True)
async def test_init_runs_once_per_element_and_reductions(c, s, a, b):
    data = list(range(10))
    with await call(ProducerConsumer, slow_load, data, times, client=c) as pc:
        for p in range(20):
            assert await call(pc.run, p) == [p * x for x in data]
        assert sorted(_inits) == data  # exactly once each
        assert await call(pc.run, 3, reduce=sum) == 3 * sum(data)
        assert await call(pc.run, 3, reduce=max) == 27
        assert await call(pc.map, [1, 2, 3], reduce=sum) == [45, 90, 135]
        assert await call(pc.map, [1, -1]) == [data, [-x for x in data]]
        assert len(pc.shards) == 3  # gen_cluster has 3 threads


@gen_cluster(client=True)
async def test_errors_name_the_element_and_leave_it_usable(c, s, a, b):
    with pytest.raises(OSError, match="cannot read shard 3") as info:
        await call(ProducerConsumer, fails_on_three, [1, 2, 3, 4], times, client=c)
    assert any("init_data[2]" in note for note in info.value.__notes__)
    with await call(
        ProducerConsumer, fails_on_three, [4, 0, 2], divide, client=c
    ) as pc:
        with pytest.raises(ZeroDivisionError) as info:
            await call(pc.run, 0.0)
        assert any(
            "init_data[0]" in n and "params 0.0" in n for n in info.value.__notes__
        )
        assert await call(pc.run, 2.0) == [2.0, 0.0, 1.0]  # still usable


def quick_load(x):
    return x


def slower_times(params, loaded):
    time.sleep(2.0)
    return params * loaded


@gen_cluster(client=True)
async def test_timeout(c, s, a, b):
    # the timeout covers the loading too: a loader with nothing to wait for,
    # so that a loaded machine cannot make the loading the part that times out
    with (
        await call(
            ProducerConsumer, quick_load, [1, 2], slower_times, client=c, timeout=1.0
        ) as pc,
        pytest.raises(TimeoutError, match="no result within timeout=1.0"),
    ):
        await call(pc.run, 1)


@gen_cluster(client=True, timeout=120)
async def test_no_hang_over_a_thousand_runs(c, s, a, b):
    with await call(ProducerConsumer, slow_load, list(range(6)), times, client=c) as pc:

        def many():
            return [pc.run(i, reduce=sum) for i in range(1000)]

        assert await call(many) == [15 * i for i in range(1000)]


@gen_cluster(client=True)
async def test_close_frees_the_actors(c, s, a, b):
    pc = await call(ProducerConsumer, slow_load, [1, 2, 3], times, client=c)
    assert sum(len(w.state.actors) for w in (a, b)) == 2  # one per worker
    await call(pc.close)
    await async_poll_until(
        lambda: not any(w.state.actors for w in (a, b)),
        what="the workers to release the actors",
        state=lambda: [list(w.state.actors) for w in (a, b)],
    )
    with pytest.raises(RuntimeError, match="closed"):
        await call(pc.run, 1)


def test_bad_input():
    with pytest.raises(TypeError, match="init_function must be callable"):
        ProducerConsumer(3, [1], times)
    with pytest.raises(TypeError, match="process_function must be callable"):
        ProducerConsumer(slow_load, [1], None)
    with pytest.raises(ValueError, match="init_data is empty"):
        ProducerConsumer(slow_load, [], times)
    with pytest.raises(TypeError, match="init_data must be a sequence"):
        ProducerConsumer(slow_load, (i for i in range(3)), times)
    with pytest.raises(ValueError, match="n_cores must be an integer >= 1"):
        ProducerConsumer(slow_load, [1], times, n_cores=0)
    with pytest.raises(ValueError, match="rebuild_timeout must be a positive"):
        ProducerConsumer(slow_load, [1], times, rebuild_timeout=0)
    assert not _inits  # nothing ran


@gen_cluster(client=True, timeout=120)
async def test_as_the_objective_of_spsa_minimize_and_search(c, s, a, b):
    with await call(
        ProducerConsumer, load_normal, [0, 1, 2, 3], neg_loglike, client=c
    ) as pc:
        objective = pc.objective(reduce=sum)
        fit = await call(
            SPSA,
            objective,
            [0.0],
            a_par=1e-4,
            c_par=0.1,
            maxiter=60,
            seed=0,
            client=c,
            print_iters=None,
        )
        assert fit.x[0] == pytest.approx(1.5, abs=0.1)
        res = await call(
            minimize, objective, [(-5.0, 5.0)], maxiter=20, seed=0, client=c
        )
        assert res.x[0] == pytest.approx(1.5, abs=0.05)
        with pytest.raises(TypeError, match="has no reduction"):
            await call(SPSA, pc, [0.0], client=c)
    named = await call(
        ProducerConsumer, load_normal, [0, 1], neg_loglike_named, client=c, reduce=sum
    )
    with named:
        search = Search("pc", named, "sqlite://", client=c)
        await call(search.run, [{"mu": m} for m in (0.0, 1.5, 3.0)], progress=False)
        assert search.best.params == {"mu": 1.5}


def neg_loglike_column(theta, data):  # a 1-element array per element, as scipy allows
    mu = theta["mu"] if isinstance(theta, dict) else theta[0]
    return np.array([0.5 * np.sum((data - mu) ** 2)])


@gen_cluster(client=True, timeout=120)
async def test_reductions_of_arrays_of_size_one(c, s, a, b):
    # sum of 1-element arrays is a 1-element array: every entry point reads it
    with await call(
        ProducerConsumer, load_normal, [0, 1], neg_loglike_column, client=c, reduce=sum
    ) as pc:
        assert (await call(pc.run, [1.5])).shape == (1,)
        res = await call(minimize, pc, [(-5.0, 5.0)], maxiter=20, seed=0, client=c)
        assert res.x[0] == pytest.approx(1.5, abs=0.05) and res.nfev_evaluated > 0
        fit = await call(
            SPSA, pc, [0.0], a_par=1e-4, c_par=0.1, maxiter=30, seed=0, client=c,
            print_iters=None,
        )  # fmt: skip
        assert fit.x[0] == pytest.approx(1.5, abs=0.2)
        search = Search("pc-arrays", pc, "sqlite://", client=c)
        await call(search.run, [{"mu": m} for m in (0.0, 1.5, 3.0)], progress=False)
        assert search.best.params == {"mu": 1.5}


# -- real processes: unpicklable objects and lost workers ---------------------------


def test_loaded_objects_never_travel(client):
    with ProducerConsumer(
        load_unpicklable, [1, 2, 3, 4], use_unpicklable, client=client
    ) as pc:
        assert pc.run(10) == [11, 12, 13, 14]
        assert pc.run(10, reduce=sum) == 50


@pytest.mark.parametrize("visible", [False, True])
def test_unpicklable_result_fails_the_call_naming_item_and_params(client, visible):
    # an actor call's answer (or a visible task's result) Dask cannot send
    # back: without the worker's check the call waits for it
    with ProducerConsumer(
        ident, [1, 2, 3, 4], lock_on_three, client=client, timeout=60, visible=visible
    ) as pc:
        with pytest.raises(TypeError) as info:
            pc.run(10)
        message = str(info.value)
        assert (
            "process_function on init_data[2] with params 10 returned a lock" in message
        )
        assert "cannot be pickled to travel back from its worker" in message
        shard = r"reduce over the shard at init_data\[\d\] with params 10"
        with pytest.raises(TypeError, match=shard + " returned a list"):
            pc.run(10, reduce=list)
        assert pc.run(10, reduce=lambda values: 0) == 0  # the actors live on


def _kill(client, address):
    pid = client.run(os.getpid, workers=[address])[address]
    os.kill(pid, signal.SIGKILL)


def _holder(client, pc, shard):
    return next(iter(client.who_has([pc._futures[shard]]).values()))[0]


@pytest.mark.parametrize("visible", [False, True])
def test_worker_killed_between_and_during_runs(visible, tmp_path):
    params = (3, str(tmp_path))
    expected = [3 * x for x in range(8)]
    # nannies bring killed workers back, as an HPC cluster brings new jobs
    with (
        local_client(2, 2) as client,
        ProducerConsumer(
            load,
            list(range(8)),
            held_times,
            n_cores=4,
            client=client,
            visible=visible,
        ) as pc,
    ):
        assert pc.run(params) == expected
        _kill(client, _holder(client, pc, 0))  # between runs
        assert pc.run(params) == expected
        assert pc.rebuilds >= 1
        rebuilt = pc.rebuilds
        # during the next run: once the holder of shard 1 (perhaps of every
        # shard, its peer not back yet) runs it
        victim = _holder(client, pc, 1)
        pid = client.run(os.getpid, workers=[victim])[victim]
        (tmp_path / f"{pid}.hold").touch()
        errors: list[BaseException] = []

        def kill_when_running() -> None:
            try:
                poll_until(
                    (tmp_path / f"{pid}.running").exists,
                    what=f"worker {victim} to run its shards",
                )
                os.kill(pid, signal.SIGKILL)
            except BaseException as err:
                errors.append(err)

        killer = threading.Thread(target=kill_when_running)
        killer.start()
        try:
            result = pc.run(params)
        finally:
            killer.join()
        assert not errors, errors
        assert result == expected
        assert pc.rebuilds > rebuilt


@gen_cluster(client=True, timeout=60)
async def test_a_rebuild_waits_for_a_worker_to_join(c, s, a, b):
    # every worker gone: the rebuild waits for one, and a task pinned to a
    # worker that left would never reach the one that joins (Dask leaves it
    # in no-worker)
    pc = await call(ProducerConsumer, slow_load, [1, 2, 3], times, client=c)
    try:
        assert await call(pc.run, 2) == [2, 4, 6]
        await a.close()
        await b.close()
        running = asyncio.ensure_future(call(pc.run, 3))
        await async_poll_until(lambda: pc.rebuilds > 0, what="the rebuild to start")
        async with Worker(s.address, nthreads=1):
            assert await running == [3, 6, 9]
            await call(pc.close)
        assert pc.rebuilds == 2
    finally:
        pc.close()


@gen_cluster(client=True, timeout=60)
async def test_a_rebuild_with_no_worker_raises_within_its_bound(c, s, a, b):
    with await call(
        ProducerConsumer, slow_load, [1, 2, 3], times, client=c, name="orphan",
        rebuild_timeout=0.5,
    ) as pc:  # fmt: skip
        assert await call(pc.run, 2) == [2, 4, 6]
        await a.close()
        await b.close()
        with pytest.raises(TimeoutError) as info:
            await call(pc.run, 2)
    text = str(info.value)
    assert "rebuilding 2 of the 2 shard groups of ProducerConsumer('orphan'" in text
    assert "(rebuild_timeout=0.5 s): 0 of 2 shard groups loaded, 0 workers" in text
    assert "raise rebuild_timeout" in text


@gen_cluster(client=True, timeout=60)
async def test_visible_runs_are_named_tasks_on_the_dashboard(c, s, a, b):
    data = list(range(6))
    with await call(
        ProducerConsumer, slow_load, data, times, client=c, name="shown", visible=True
    ) as pc:
        assert await call(pc.run, 2) == [2 * x for x in data]
        assert await call(pc.map, [1, 3], reduce=sum) == [15, 45]
        with pytest.raises(ZeroDivisionError):
            await call(pc.run, 0, reduce=lambda values: 1 / 0)
        assert await call(pc.run, 1, reduce=sum) == 15  # still usable
    assert {"pc-run-shown", "pc-load-shown"} <= set(s.task_prefixes)
    assert sorted(_inits) == data  # loaded once, evaluated in place


def very_slow_load(x):
    time.sleep(3)
    return x


# a real cluster: the actors left loading trip gen_cluster's state validation
def test_loading_slower_than_timeout_says_what_how_long_and_how_far(client):
    with pytest.raises(TimeoutError) as info:
        ProducerConsumer(very_slow_load, [1, 2], times, client=client, timeout=0.3,
                         name="slow")  # fmt: skip
    text = str(info.value)
    assert "loading the data of ProducerConsumer('slow'" in text
    # the wait that timed out: at least the timeout, however loaded the machine is
    waited = re.search(r"timed out after ([0-9.e+-]+) s \(timeout=0.3 s\)", text)
    assert waited is not None and float(waited.group(1)) >= 0.3, text
    assert "0 of 2 shard groups loaded" in text


def exits_on_zero(params, loaded):
    if params == 0:
        sys.exit(3)
    return loaded * params


@pytest.mark.parametrize("visible", [False, True])
@gen_cluster(client=True)
async def test_a_process_function_that_exits_fails_the_call_not_the_worker(
    c, s, a, b, visible
):
    with await call(
        ProducerConsumer, slow_load, [1, 2, 3], exits_on_zero, client=c,
        visible=visible, timeout=30,
    ) as pc:  # fmt: skip
        with pytest.raises(RuntimeError, match="SystemExit: 3") as info:
            await call(pc.run, 0)
        # which element's error arrives first depends on the schedule
        assert any("init_data[" in n and "params 0" in n for n in info.value.__notes__)
        assert await call(pc.run, 2) == [2, 4, 6]  # the workers live on
