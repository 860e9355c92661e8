"""resources=: trials run only on workers that declared them, one at a time per unit."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time

import numpy as np
import pytest
from distributed import get_worker
from distributed.utils_test import gen_cluster

from dasktune import Search, async_map, minimize

# one GPU=1 worker and one without: (start, end, worker) of every call
GPU_CLUSTER = [("127.0.0.1", 2, {"resources": {"GPU": 1}}), ("127.0.0.1", 2)]
_lock = threading.Lock()
calls: list[tuple[float, float, str]] = []


def _record(seconds: float) -> None:
    start = time.monotonic()
    time.sleep(seconds)
    with _lock:
        calls.append((start, time.monotonic(), get_worker().address))


def on_gpu(params):
    _record(0.05)
    return params["i"]


def on_gpu_vector(x):
    _record(0.005)
    return float(np.sum(np.asarray(x) ** 2))


def square(x):
    _record(0.02)
    return x * x


def assert_one_at_a_time_on(worker: str) -> None:
    assert calls and {w for _, _, w in calls} == {worker}
    spans = sorted((s, e) for s, e, _ in calls)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end  # never two at once on the GPU=1 worker


@gen_cluster(client=True, nthreads=GPU_CLUSTER, timeout=60)
async def test_search_trials_hold_their_gpu(c, s, a, b):
    calls.clear()
    search = Search("gpu", on_gpu, "sqlite://", client=c)
    report = await asyncio.to_thread(
        search.run,
        [{"i": i} for i in range(6)],
        resources={"GPU": 1},
        progress=False,
    )
    assert report.evaluated == 6
    assert_one_at_a_time_on(a.address)
    search.close()


@gen_cluster(client=True, nthreads=GPU_CLUSTER, timeout=60)
async def test_async_map_and_minimize_take_resources(c, s, a, b):
    calls.clear()
    out = await asyncio.to_thread(
        async_map, square, range(8), client=c, resources={"GPU": 1}
    )
    assert out == [x * x for x in range(8)]
    assert_one_at_a_time_on(a.address)
    calls.clear()
    res = await asyncio.to_thread(
        minimize,
        on_gpu_vector,
        [(-1, 1), (-1, 1)],
        client=c,
        seed=0,
        maxiter=2,
        popsize=3,
        polish=False,
        resources={"GPU": 1},
    )
    assert res.nfev == len(calls)
    assert_one_at_a_time_on(a.address)


@gen_cluster(client=True, nthreads=GPU_CLUSTER, timeout=60)
async def test_resources_no_worker_has_are_refused_before_anything_runs(c, s, a, b):
    calls.clear()
    search = Search("tpu", on_gpu, "sqlite://", client=c)
    with pytest.raises(ValueError, match=r"no worker has the resources \{'TPU': 1\}"):
        await asyncio.to_thread(
            search.run, [{"i": 0}], resources={"TPU": 1}, progress=False
        )
    with pytest.raises(ValueError, match=r"the workers declare .*'GPU': 1"):
        await asyncio.to_thread(
            async_map, square, range(3), client=c, resources={"GPU": 2}
        )
    with pytest.raises(ValueError, match="positive amounts"):
        await asyncio.to_thread(
            async_map, square, range(3), client=c, resources={"GPU": 0}
        )
    assert calls == []
    assert search.store.trials(search.search_id) == []
    search.close()
