"""Evaluations that wait, run in threads of the caller's process
(dasktune.run.threads_here, chosen by dasktune.run.policy): a short DE run
whose objective sleeps, with a current cluster of multi-thread workers on this
host, is evaluated here on as many threads, bit-identical to scipy's serial
run; a CPU-bound objective, single-thread workers and a long run go to the
cluster as before; failures, NaN, maxfev and the timeout keep their rules;
the threads are joined at the end of the run, also on an error."""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time

import numpy as np
import pytest
from distributed.utils_test import captured_logger, gen_cluster
from scipy.optimize import differential_evolution

from dasktune import async_map, minimize
from dasktune.run.policy import THREADS_WITHIN, ExecutionPolicy
from dasktune.run.threads_here import HereThreads, here_threads

BOUNDS = [(-1.0, 1.0)] * 2
#: 2-D, popsize 4: 8 points a generation, 8 + 8 * maxiter evaluations
KW = {"popsize": 4, "polish": False, "tol": 0.0}
EIGHT = [("127.0.0.1", 4), ("127.0.0.1", 4)]  # 8 threads on this host

_lock = threading.Lock()
_running = 0
#: the most calls running at once, and the threads that made them
PEAK: list[int] = [0]
NAMES: set[str] = set()
CALLS: list[int] = []


def _reset() -> None:
    PEAK[0] = 0
    NAMES.clear()
    CALLS.clear()


def sphere(x):
    return float(np.sum(np.asarray(x) ** 2))


def waits(x):
    """A sphere whose evaluation mostly waits (a 10 ms sleep: its cost),
    noting how many calls run at once and in which threads."""
    global _running
    with _lock:
        _running += 1
        PEAK[0] = max(PEAK[0], _running)
        NAMES.add(threading.current_thread().name)
        CALLS.append(1)
    try:
        time.sleep(0.01)  # the objective's cost, not a synchronisation
        return sphere(x)
    finally:
        with _lock:
            _running -= 1


def spins(x):
    """A CPU-bound sphere: 5 ms of spinning."""
    end = time.perf_counter() + 5e-3
    while time.perf_counter() < end:  # the objective's cost, not a wait
        pass
    return sphere(x)


def waits_or_fails(x):
    """Waits, then fails on the right (raises), refuses on the left (NaN)."""
    time.sleep(0.005)  # the objective's cost
    if x[0] > 0.5:
        raise ValueError(f"no value right of 0.5: {x[0]}")
    if x[0] < -0.5:
        return math.nan
    return sphere(x)


def inf_where_failing(x):
    """What scipy's serial run sees of ``waits_or_fails``: +inf for each
    failure, as dasktune tells it."""
    return math.inf if abs(x[0]) > 0.5 else sphere(x)


def always_fails(x):
    time.sleep(0.005)  # the objective's cost
    raise LookupError(f"the objective's own failure at {x[0]:.3f}")


class Abort(BaseException):
    """Not an Exception: a call raising it stops the run (as Ctrl-C does)."""


def aborts(x):
    time.sleep(0.005)  # the objective's cost
    if x[0] > 0:
        raise Abort("stop the run")
    return sphere(x)


#: the threads alive when the running test started (another test's, not ours)
_BEFORE: set[int | None] = set()


@pytest.fixture(autouse=True)
def _threads_before():
    _BEFORE.clear()
    _BEFORE.update(t.ident for t in threading.enumerate())
    yield


def _here_threads() -> list[str]:
    """The dasktune threads started since the test began, still alive."""
    return [
        t.name
        for t in threading.enumerate()
        if t.name.startswith("dasktune") and t.ident not in _BEFORE
    ]


@gen_cluster(client=True, nthreads=EIGHT)
async def test_a_waiting_objective_runs_in_threads_here_bit_identical(c, s, a, b):
    ref = differential_evolution(waits, BOUNDS, rng=3, updating="deferred", maxiter=3, **KW)  # fmt: skip
    _reset()
    res = await asyncio.to_thread(minimize, waits, BOUNDS, seed=3, maxiter=3, **KW)
    assert res.execution == "local", res.execution_reason
    assert "evaluations wait (CPU" in res.execution_reason, res.execution_reason
    assert "8 threads in this process" in res.execution_reason
    # evaluated side by side, in the run's threads, none on a worker
    assert PEAK[0] > 1, PEAK
    # (a point held while the first was watched is made by the caller when
    # that one did not look like waiting yet, as on a busy machine)
    assert any(name.startswith("dasktune-here") for name in NAMES), NAMES
    assert not any(name.startswith("Dask-") for name in NAMES), NAMES
    assert not s.task_prefixes  # no task ever reached the scheduler
    np.testing.assert_array_equal(res.x, ref.x)
    assert res.fun == ref.fun and res.nfev == ref.nfev == len(CALLS)
    assert _here_threads() == []  # joined at the end of the run


@gen_cluster(client=True, nthreads=EIGHT)
async def test_a_cpu_bound_objective_goes_to_the_workers(c, s, a, b):
    res = await asyncio.to_thread(minimize, spins, BOUNDS, seed=0, maxiter=1, **KW)
    assert res.execution == "cluster", res.execution_reason
    assert "evaluations wait" not in res.execution_reason
    assert _here_threads() == []


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1), ("127.0.0.1", 1)])
async def test_single_thread_workers_keep_a_waiting_objective_on_the_cluster(
    c, s, a, b
):
    # the user runs the objective one call at a time per process: not here
    assert await asyncio.to_thread(here_threads, c) is None
    _reset()
    res = await asyncio.to_thread(minimize, waits, BOUNDS, seed=0, maxiter=1, **KW)
    assert res.execution == "cluster", res.execution_reason
    assert not any(name.startswith("dasktune-here") for name in NAMES), NAMES


@gen_cluster(client=True, nthreads=EIGHT)
async def test_a_long_waiting_run_goes_to_the_cluster(c, s, a, b):
    """The rest of a run lasting THREADS_WITHIN or more on the threads is
    worth watching on the dashboard: the cluster's, as before."""
    assert await asyncio.to_thread(here_threads, c) == 8
    left = int(THREADS_WITHIN / 0.01) * 8  # 10 ms each, on 8 threads

    def decide(expected: int):
        policy = ExecutionPolicy(what="f", expected=expected)
        return policy.after_probe([0.01], 1, cpu=[1e-4])

    short, long = (
        await asyncio.to_thread(decide, 32),
        await asyncio.to_thread(decide, left + 1),
    )
    assert (short.where, short.threads) == ("local", 8), short
    assert (long.where, long.threads) == ("cluster", 1), long
    # CPU-bound, however short: the workers' processes
    policy = await asyncio.to_thread(ExecutionPolicy, what="f", expected=32)
    assert policy.after_probe([0.01], 1, cpu=[0.009]).where == "cluster"


def test_a_threads_run_whose_evaluations_grow_moves_to_the_cluster():
    policy = ExecutionPolicy(what="f", expected=200)
    # 192 left at 10 ms on 8 threads: 0.24 s, stays; at 0.5 s: 12 s, moves
    assert policy.revisit(8, 8 * 0.01, done=8, threads=8) is None
    moved = policy.revisit(8, 8 * 0.5, done=8, threads=8)
    assert moved is not None and moved.where == "cluster"
    assert "in 8 threads of the caller's process" in moved.reason


@gen_cluster(client=True, nthreads=EIGHT)
async def test_failures_and_nan_in_threads_are_told_inf_as_elsewhere(c, s, a, b):
    ref = differential_evolution(
        inf_where_failing, BOUNDS, rng=5, updating="deferred", maxiter=3, **KW
    )
    res = await asyncio.to_thread(
        minimize, waits_or_fails, BOUNDS, seed=5, maxiter=3, **KW
    )
    assert res.execution == "local" and "threads" in res.execution_reason
    np.testing.assert_array_equal(res.x, ref.x)
    assert res.fun == ref.fun and res.nfev == ref.nfev
    assert res.nfev_evaluated < res.nfev  # the failures and NaN not counted
    assert _here_threads() == []


@gen_cluster(client=True, nthreads=EIGHT)
async def test_all_failed_in_threads_raises_the_first_failure(c, s, a, b):
    with pytest.raises(LookupError, match="the objective's own failure") as info:
        await asyncio.to_thread(minimize, always_fails, BOUNDS, seed=0, maxiter=5, **KW)  # fmt: skip
    notes = info.value.__notes__
    assert any("every evaluation failed" in note for note in notes), notes
    # the first failure is the first point's, as in the caller's thread
    assert "run in the caller's process" in " ".join(notes)
    assert _here_threads() == []


@gen_cluster(client=True, nthreads=EIGHT)
async def test_maxfev_and_the_timeout_bound_a_run_in_threads(c, s, a, b):
    _reset()
    res = await asyncio.to_thread(
        minimize, waits, BOUNDS, seed=1, maxiter=3, maxfev=11, **KW
    )
    assert "threads" in res.execution_reason, res.execution_reason
    # the objective called no more than maxfev times, ahead or not
    assert res.nfev_evaluated == 11 == len(CALLS), (res.nfev_evaluated, len(CALLS))
    assert "maxfev" in res.message
    try:  # 88 evaluations: 0.11 s on 8 threads at the least
        res = await asyncio.to_thread(
            minimize, waits, BOUNDS, seed=1, maxiter=10, timeout=0.04, **KW
        )
    except TimeoutError as err:  # so busy a machine that none returned in time
        assert "no evaluation done" in str(err)
    else:
        assert "timeout" in res.message, res.message
        assert 1 <= res.nfev_evaluated < 88
    assert _here_threads() == []


@gen_cluster(client=True, nthreads=EIGHT)
async def test_an_error_stopping_the_run_joins_its_threads(c, s, a, b):
    with pytest.raises(Abort, match="stop the run"):
        await asyncio.to_thread(minimize, aborts, BOUNDS, seed=0, maxiter=3, **KW)
    assert _here_threads() == []


def test_the_pool_evaluates_ahead_within_room_and_joins():
    _reset()
    pool = HereThreads(4, waits, ())
    try:
        pool.ahead([(i, np.array([0.1 * i, 0.0])) for i in range(6)], room=3)
        assert pool.take(5) is None  # past room: not started
        done = [pool.take(i) for i in range(3)]
        assert [d.raw for d in done] == pytest.approx([0.0, 0.01, 0.04])
        assert all(d.cpu < d.seconds for d in done)
    finally:
        pool.close()
    assert len(CALLS) == 3
    assert _here_threads() == []


@pytest.mark.parametrize("objective, goes", [(waits, True), (spins, False)])
def test_the_first_call_lets_the_rest_go_only_when_it_waits(objective, goes):
    """The rest of a batch is held while the first call is watched: let go
    when that call waits, else skipped (the caller evaluates those itself)."""
    points = [(i, np.array([0.1 * i, 0.0])) for i in range(4)]
    pool = HereThreads(4, objective, ())
    try:
        went = pool.first(0, points[0][1], points, room=4, waits_below=0.25)
        done = [pool.take(i) for i in range(4)]
    finally:
        pool.close()
    # a CPU-bound call never lets them go; a waiting one does, unless the
    # machine is so busy that its thread had not even started a millisecond
    # in (nothing then says it waits: the caller makes them, as for spins)
    assert went is goes or (goes and done[0].cpu < 0.25 * done[0].seconds)
    assert done[0] is not None and not done[0].skipped
    made = [d for d in done[1:] if d is not None and not d.skipped]
    assert len(made) == (3 if went else 0), done
    assert _here_threads() == []


def waits_item(i):
    """``waits`` for async_map: 10 ms asleep, then ``i * i``; fails at 13."""
    if i == 13:
        time.sleep(0.01)  # the objective's cost
        raise KeyError("thirteen")
    waits(np.array([float(i), 0.0]))
    return i * i


def spins_item(i):
    spins(np.array([float(i), 0.0]))
    return i * i


@gen_cluster(client=True, nthreads=EIGHT)
async def test_async_map_maps_a_waiting_function_in_threads_here(c, s, a, b):
    _reset()
    with captured_logger("dasktune", level=logging.DEBUG) as log:
        values = await asyncio.to_thread(async_map, waits_item, range(1, 13))
    assert values == [i * i for i in range(1, 13)]  # in order
    assert "execution local: evaluations wait (CPU" in log.getvalue(), log.getvalue()
    assert PEAK[0] > 1 and len(CALLS) == 12, (PEAK, len(CALLS))
    assert NAMES - {threading.main_thread().name} and not s.task_prefixes
    # the first failure in order raises, with its element named; threads joined
    with pytest.raises(KeyError, match="thirteen") as info:
        await asyncio.to_thread(async_map, waits_item, range(1, 30))
    assert any("element 12 of args" in note for note in info.value.__notes__)
    with pytest.raises(TimeoutError, match="timeout=0.015 s"):
        await asyncio.to_thread(async_map, waits_item, range(1, 12), timeout=0.015)
    assert _here_threads() == []


@gen_cluster(client=True, nthreads=EIGHT)
async def test_async_map_sends_a_cpu_bound_function_to_the_workers(c, s, a, b):
    values = await asyncio.to_thread(async_map, spins_item, range(8))
    assert values == [i * i for i in range(8)]
    assert s.task_prefixes  # the rest went as tasks
    assert _here_threads() == []


class _SeenCluster:
    """A cluster's own view of its workers, as a LocalCluster keeps it (a
    remote worker cannot be started in a test)."""

    def __init__(self, *hosts: str) -> None:
        self.scheduler_info = {
            "workers": {
                f"tcp://{host}:{port}": {"host": host, "nthreads": 4}
                for port, host in enumerate(hosts, 9000)
            }
        }


class _Client:
    def __init__(self, cluster: _SeenCluster) -> None:
        self.cluster = cluster


def test_a_worker_on_another_host_keeps_the_run_off_this_process():
    assert here_threads(_Client(_SeenCluster("127.0.0.1", "127.0.0.1"))) == 8
    # 203.0.113.0/24 is for documentation: never this machine's
    assert here_threads(_Client(_SeenCluster("127.0.0.1", "203.0.113.7"))) is None
