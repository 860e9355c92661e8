"""async_map, async_apply and the scipy map-like, on in-process and real clusters."""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
import uuid

import numpy as np
import pytest
from distributed import Client, LocalCluster
from distributed.utils_test import gen_cluster
from distributed.worker import thread_state
from scipy.optimize import differential_evolution, rosen

from dasktune import async_apply, async_map
from dasktune.run.mapping import ClientMap
from tests.waiting import async_poll_until, poll_until

# -- objectives at module level, so they pickle across processes ---------------

_lock = threading.Lock()
_calls: dict[str, int] = {}
_keys: list[str] = []


def square(x: int) -> int:
    return x * x


def record_key(x: int) -> int:
    with _lock:
        _keys.append(thread_state.key)
    return x


def count_and_sleep(x: int) -> int:
    time.sleep(0.01)
    with _lock:
        _calls["done"] = _calls.get("done", 0) + 1
    return x


def nap_and_count(seconds: float) -> None:
    time.sleep(seconds)
    with _lock:
        _calls["napped"] = _calls.get("napped", 0) + 1


def fail_on_three(x: int) -> int:
    if x == 3:
        raise KeyError(f"no {x}")
    time.sleep(0.2)
    return x


def flaky_once(x: int) -> int:
    with _lock:
        _calls[f"flaky-{x}"] = _calls.get(f"flaky-{x}", 0) + 1
        first = _calls[f"flaky-{x}"] == 1
    if first:
        raise RuntimeError(f"first call for {x}")
    return x


def count_calls_flaky_on_two(x: int) -> int:
    with _lock:
        _calls[f"n-{x}"] = _calls.get(f"n-{x}", 0) + 1
        first = _calls[f"n-{x}"] == 1
    if x == 2 and first:
        raise RuntimeError("first call for 2")
    return x


def lock_at_three(x: int) -> object:
    """A result that cannot be pickled for element 3; arrays for the rest."""
    return threading.Lock() if x == 3 else np.full(4, x)


def die_once(item: tuple[int, str]) -> int:
    """Kill the worker process the first time element 5 is computed."""
    x, marker = item
    if x == 5 and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    time.sleep(0.05)
    return x * 10


@pytest.fixture(autouse=True)
def _reset() -> None:
    _calls.clear()
    _keys.clear()


# -- results -------------------------------------------------------------------


@gen_cluster(client=True)
async def test_results_in_input_order(c, s, a, b):
    def jitter(x):
        time.sleep(random.random() / 100)
        return -x

    out = await asyncio.to_thread(
        async_map, jitter, list(range(50)), client=c, chunksize=1
    )
    assert out == [-x for x in range(50)]


@gen_cluster(client=True)
async def test_unpicklable_function_is_refused_before_submission(c, s, a, b):
    guard = threading.Lock()

    def uses_lock(x):
        with guard:
            return x

    with pytest.raises(TypeError, match=r"'uses_lock' cannot be pickled to be sent"):
        await asyncio.to_thread(async_map, uses_lock, range(3), client=c)
    assert not s.tasks  # nothing was submitted


@gen_cluster(client=True)
async def test_unpicklable_result_from_in_process_worker_over_tcp(c, s, a, b):
    # gen_cluster's workers share this process but talk TCP: results pickle
    with pytest.raises(TypeError, match=r"element 3 of args \(3\) returned a lock"):
        await asyncio.to_thread(
            async_map, lock_at_three, range(5), client=c, timeout=30
        )


@pytest.fixture
def inproc_client():
    """A client of a cluster in this process (inproc://), used from this thread."""
    with (
        LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                     dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):  # fmt: skip
        yield client


def test_results_of_inproc_workers_are_not_pickled(inproc_client):
    # a worker in the caller's own process on inproc:// hands results over as
    # they are: nothing to check, and nothing refused
    assert inproc_client.scheduler.address.startswith("inproc://")
    out = async_map(lock_at_three, range(5), client=inproc_client)
    assert type(out[3]) is type(threading.Lock())
    np.testing.assert_array_equal(out[4], np.full(4, 4))


@gen_cluster(client=True)
async def test_generator_and_empty_input(c, s, a, b):
    out = await asyncio.to_thread(async_map, square, (x for x in range(40)), client=c)
    assert out == [x * x for x in range(40)]
    assert await asyncio.to_thread(async_map, square, [], client=c) == []
    assert await asyncio.to_thread(async_map, square, iter([]), client=c) == []


@gen_cluster(client=True)
async def test_equal_elements_evaluated_once_each(c, s, a, b):
    out = await asyncio.to_thread(
        async_map, lambda _: random.random(), [0] * 20, client=c, chunksize=1
    )
    assert len(set(out)) == 20


@gen_cluster(client=True)
async def test_bounded_window_counts_futures_in_flight(c, s, a, b):
    in_flight: list[int] = []

    def elements():
        for i in range(20):
            # what was drawn before this element minus what finished
            in_flight.append(i - _calls.get("done", 0))
            yield i

    out = await asyncio.to_thread(
        async_map, count_and_sleep, elements(), 3, client=c, chunksize=1
    )
    assert out == list(range(20))
    assert max(in_flight) <= 3
    assert max(in_flight) >= 2  # the window was actually used


# -- chunking ------------------------------------------------------------------


@gen_cluster(client=True)
async def test_chunking_default_one_chunk_per_slot(c, s, a, b):
    # gen_cluster's two workers have 1 + 2 threads
    out = await asyncio.to_thread(async_map, record_key, list(range(100)), client=c)
    assert out == list(range(100))
    assert len(set(_keys)) == 3
    assert all(k.startswith("map-record-key-") for k in _keys)


@gen_cluster(client=True)
async def test_chunking_off(c, s, a, b):
    out = await asyncio.to_thread(
        async_map, record_key, range(30), client=c, chunksize=1
    )
    assert out == list(range(30))
    assert len(set(_keys)) == 30


@gen_cluster(client=True)
async def test_chunking_adapts_on_generators(c, s, a, b):
    out = await asyncio.to_thread(async_map, record_key, iter(range(2000)), client=c)
    assert out == list(range(2000))
    # starts at one element per task, then grows: far fewer tasks than elements
    assert 3 <= len(set(_keys)) < 100


# -- errors, retries, timeout ---------------------------------------------------


@gen_cluster(client=True)
async def test_exception_type_note_and_cancellation(c, s, a, b):
    with pytest.raises(KeyError, match="no 3") as info:
        await asyncio.to_thread(
            async_map, fail_on_three, range(12), client=c, chunksize=1
        )
    assert any("element 3 of args: 3" in note for note in info.value.__notes__)
    # the rest was cancelled and released; only the failed one is still referenced
    # (by the traceback that pytest keeps)
    await async_poll_until(
        lambda: [state.status for state in c.futures.values()] == ["error"],
        what="the other futures to be released",
        state=lambda: {k: st.status for k, st in c.futures.items()},
    )
    out = await asyncio.to_thread(async_map, square, range(5), client=c)
    assert out == [0, 1, 4, 9, 16]  # the cluster is still usable


@gen_cluster(client=True)
async def test_retries_rerun_raising_work(c, s, a, b):
    with pytest.raises(RuntimeError, match="first call"):
        await asyncio.to_thread(async_map, flaky_once, range(4), client=c, chunksize=1)
    _calls.clear()
    out = await asyncio.to_thread(
        async_map, flaky_once, range(4), client=c, chunksize=1, retries=1
    )
    assert out == [0, 1, 2, 3]


@gen_cluster(client=True)
async def test_retries_rerun_the_raising_call_only(c, s, a, b):
    # one chunk holds every element: a retry re-runs element 2 alone, so each
    # other element is still evaluated once (retries mean one thing everywhere)
    out = await asyncio.to_thread(
        async_map, count_calls_flaky_on_two, range(6), client=c, chunksize=6,
        retries=1,
    )  # fmt: skip
    assert out == list(range(6))
    assert {k: v for k, v in _calls.items()} == {
        **{f"n-{i}": 1 for i in range(6)}, "n-2": 2,
    }  # fmt: skip


def test_a_timeout_after_some_chunks_finished_holds_none_of_them(inproc_client):
    # the error's traceback holds async_map's frame: no finished future of an
    # earlier batch may stay alive with it (nor its result on a worker); called
    # from this thread, as a user calls it, so the traceback keeps that frame
    with pytest.raises(TimeoutError, match="2 of 4 elements done") as info:
        async_map(time.sleep, [0.0, 0.0, 3.0, 3.0], client=inproc_client,
                  chunksize=1, timeout=1.0)  # fmt: skip
    frames = []
    tb = info.value.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert "run" in frames  # the mapper's frame is held
    poll_until(
        lambda: not inproc_client.futures,
        what="every future to be released",
        state=lambda: {k: st.status for k, st in inproc_client.futures.items()},
    )


@gen_cluster(client=True)
async def test_timeout_raises_and_cancels(c, s, a, b):
    with pytest.raises(TimeoutError, match="did not finish within timeout=0.3"):
        await asyncio.to_thread(
            async_map, nap_and_count, [1.0] * 6, client=c, chunksize=1, timeout=0.3
        )
    # raised before the six 1 s naps on three threads could all have finished
    assert _calls.get("napped", 0) < 6
    await async_poll_until(
        lambda: not c.futures,
        what="every future to be released",
        state=lambda: {k: st.status for k, st in c.futures.items()},
    )


def test_progress_bar_is_shown(client, capsys):
    async_map(square, range(7), client=client, progress=True)
    assert "7/7" in capsys.readouterr().err


# -- bad input, raised before anything is submitted ------------------------------


class _NoClient:
    def submit(self, *args, **kwargs):  # pragma: no cover - must never be reached
        raise AssertionError("submitted despite bad input")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"fun": 3}, TypeError, "fun must be callable, got int"),
        ({"args": 5}, TypeError, "args must be iterable, got int"),
        ({"ncpu": 0}, ValueError, r"ncpu must be an integer >= 1, got 0"),
        ({"ncpu": 2.5}, ValueError, r"ncpu must be an integer >= 1, got 2.5"),
        ({"chunksize": 0}, ValueError, r"chunksize must be an integer >= 1, got 0"),
        ({"retries": -1}, ValueError, r"retries must be an integer >= 0, got -1"),
        (
            {"timeout": 0},
            ValueError,
            r"timeout must be a positive, finite number .* got 0",
        ),
        (
            {"timeout": "1s"},
            ValueError,
            r"timeout must be a positive, finite number .* got '1s'",
        ),
        (
            {"timeout": float("inf")},
            ValueError,
            r"finite number of seconds, or None for no limit, got inf",
        ),
    ],
)
def test_bad_input(kwargs, error, match):
    call = {"fun": square, "args": [1, 2], "client": _NoClient()} | kwargs
    with pytest.raises(error, match=match):
        async_map(**call)


def test_async_apply_bad_input():
    with pytest.raises(TypeError, match="fun must be callable"):
        async_apply(_NoClient(), None)
    with pytest.raises(TypeError, match="args must be a tuple"):
        async_apply(_NoClient(), square, 3)
    with pytest.raises(TypeError, match="kwargs must be a dict"):
        async_apply(_NoClient(), square, (1,), [("a", 1)])


# -- async_apply and the scipy map-like ------------------------------------------


@gen_cluster(client=True)
async def test_async_apply(c, s, a, b):
    def keyed(x, key=None):
        return (x, key)

    future = await asyncio.to_thread(async_apply, c, keyed, (1,), {"key": "k"})
    assert await future == (1, "k")
    assert future.key.startswith("apply-keyed-")
    f1 = await asyncio.to_thread(async_apply, c, uuid.uuid4)
    f2 = await asyncio.to_thread(async_apply, c, uuid.uuid4)
    assert f1.key != f2.key  # not de-duplicated
    assert await f1 != await f2
    f3 = await asyncio.to_thread(async_apply, c, square, (4,), retries=2, priority=5)
    assert await f3 == 16


@gen_cluster(client=True, timeout=60)
async def test_client_map_as_scipy_workers(c, s, a, b):
    bounds = [(-2.0, 2.0)] * 2
    options = {"maxiter": 8, "popsize": 6, "polish": False, "rng": 3}
    serial = differential_evolution(rosen, bounds, updating="deferred", **options)
    parallel = await asyncio.to_thread(
        differential_evolution,
        rosen,
        bounds,
        updating="deferred",
        workers=ClientMap(c),
        **options,
    )
    np.testing.assert_array_equal(parallel.x, serial.x)
    assert parallel.fun == serial.fun
    assert parallel.nfev == serial.nfev


# -- real processes ---------------------------------------------------------------


def test_closures_cross_processes(client):
    offset = 7

    def add_offset(x):
        return x + offset + os.getpid() * 0

    assert async_map(add_offset, range(20), client=client) == [x + 7 for x in range(20)]
    assert async_map(lambda x: x - offset, [10], client=client, chunksize=1) == [3]


@pytest.mark.parametrize("chunksize", [1, 3])
def test_unpicklable_result_fails_at_once_naming_its_element(client, chunksize):
    # Dask cannot send it back: without the worker's check the map waits for
    # it (here until the timeout, with none for ever)
    with pytest.raises(TypeError) as info:
        async_map(lock_at_three, range(6), client=client, chunksize=chunksize,
                  timeout=60)  # fmt: skip
    message = str(info.value)
    assert "element 3 of args (3) returned a lock" in message
    assert "cannot be pickled" in message and "make the object picklable" in message
    # arrays pass the check, and the client is still usable
    out = async_map(lock_at_three, [0, 1, 2], client=client, chunksize=chunksize)
    np.testing.assert_array_equal(np.stack(out), [[0] * 4, [1] * 4, [2] * 4])


def test_worker_killed_mid_map_still_returns_everything(client, tmp_path):
    marker = str(tmp_path / "killed")
    items = [(x, marker) for x in range(16)]
    out = async_map(die_once, items, client=client, chunksize=1)
    assert os.path.exists(marker)  # a worker really died
    assert out == [x * 10 for x in range(16)]
