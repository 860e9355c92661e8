"""trial_timeout: a trial past its limit fails, "timed out after N s", and the
thread (or the worker) it held is freed, on every path trials take."""

from __future__ import annotations

import asyncio
import math
import threading
import time
import warnings

import numpy as np
import pytest
from distributed.utils_test import gen_cluster, inc

from dasktune import SPSA, Search, async_map, minimize
from dasktune.exceptions import TrialTimeoutError
from dasktune.run.timelimit import TrialInterrupted, call_limited
from tests.clusters import local_client

_held = threading.Lock()  # held by a test: blocks_at_zero waits in C on it
_BOUND = 30.0  # seconds any poll below may take
#: seconds a restarted worker may take to come back: a new process that
#: imports distributed, which took 13-39 s at load 13-20 here
_RESTART_BOUND = 120.0


def loops_at_zero(params):
    """Python code that never returns for x == 0 (short sleeps in a loop)."""
    if params["x"] == 0:
        while True:
            time.sleep(0.01)
    return float(params["x"])


def blocks_at_zero(params):
    """For x == 0, blocked in C (a lock's acquire) until the test releases it."""
    if params["x"] == 0:
        with _held:
            pass
    return float(params["x"])


def sleeps_at_zero(params):
    """For x == 0, one C call that does not return for 1000 s."""
    if params["x"] == 0:
        time.sleep(1000)
    return float(params["x"])


def sleeps_if_zero(x):
    if x == 0:
        time.sleep(1000)
    return x + 1


def loops_if_two(x):
    while x == 2:
        time.sleep(0.01)
    return x + 1


def loops_right_half(x):
    """Runs forever in the right half of the box (Python code)."""
    while x[0] > 0.5:
        time.sleep(0.01)
    return float(np.sum(x**2))


def loops(x):
    while True:
        time.sleep(0.01)


def _trial_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "dasktune-trial"]


async def _poll(condition, what: str) -> None:
    """Wait (bounded) until ``condition()`` holds."""
    deadline = time.monotonic() + _BOUND
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {_BOUND} s for {what}")
        await asyncio.sleep(0.01)


def _grid(n: int = 6) -> list[dict[str, int]]:
    return [{"x": i} for i in range(n)]


# -- the limit itself ----------------------------------------------------------


def test_call_limited_stops_python_code_and_shows_where():
    with pytest.raises(TrialTimeoutError, match=r"timed out after 0\.2 s") as info:
        call_limited(lambda: loops_at_zero({"x": 0}), 0.2)
    assert isinstance(info.value, TimeoutError) and not info.value.stuck
    cause = info.value.__cause__
    assert isinstance(cause, TrialInterrupted)
    frames = []
    tb = cause.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert "loops_at_zero" in frames  # where it was when stopped
    asyncio.run(_poll(lambda: not _trial_threads(), "the trial's thread to end"))


def test_call_limited_gives_values_and_errors_as_they_are():
    assert call_limited(lambda: 6 * 7, 5.0) == 42
    with pytest.raises(ZeroDivisionError):
        call_limited(lambda: 1 / 0, 5.0)


def test_call_limited_leaves_a_call_blocked_in_c():
    with _held:
        with pytest.raises(TrialTimeoutError, match="did not stop within") as info:
            call_limited(lambda: blocks_at_zero({"x": 0}), 0.1, grace=0.1)
        assert info.value.stuck and info.value.worker is None
        assert _trial_threads()  # left running, in C
    # once it returns, the pending interruption ends it, quietly
    asyncio.run(_poll(lambda: not _trial_threads(), "the stuck thread to end"))


# -- Search.run: every path a trial takes ----------------------------------------


@pytest.mark.parametrize("execution", ["tasks", "feed"])
@gen_cluster(client=True)
async def test_search_records_a_trial_past_its_limit(c, s, a, b, execution):
    search = Search("limited", loops_at_zero, "sqlite://", client=c)
    report = await asyncio.to_thread(
        search.run, _grid(), trial_timeout=0.5, retries=2, progress=False,
        execution=execution,
    )  # fmt: skip
    assert (report.evaluated, report.failed, report.stopped) == (5, 1, "finished")
    frame = search.trials().set_index("x")
    assert frame.loc[0, "status"] == "failed"
    assert "TrialTimeoutError: timed out after 0.5 s" in frame.loc[0, "error"]
    assert "loops_at_zero" in frame.loc[0, "error"]  # where it was stopped
    assert frame.loc[0, "attempts"] == 1  # a timeout is not retried
    assert (frame.loc[1:, "status"] == "done").all()
    # the threads are free: new work runs at once
    assert await asyncio.wait_for(c.submit(inc, 1), _BOUND) == 2
    await _poll(lambda: not _trial_threads(), "the trial's thread to end")


@gen_cluster(client=True)
async def test_search_limits_a_worker_batch(c, s, a, b):
    """A batch-synchronous optimizer's batch travels as one task per worker,
    run on a pool of its threads: each trial is limited on its own."""
    result = await asyncio.to_thread(
        minimize, loops_right_half, [(-1, 1), (-1, 1)], seed=0, maxiter=2,
        popsize=4, polish=False, trial_timeout=0.3, client=c,
    )  # fmt: skip
    assert math.isfinite(result.fun) and result.x[0] <= 0.5
    assert await asyncio.wait_for(c.submit(inc, 1), _BOUND) == 2


@pytest.mark.parametrize("execution", ["tasks", "feed"])
@gen_cluster(client=True)
async def test_threads_only_cluster_frees_its_thread_and_says_why(
    c, s, a, b, execution
):
    """Blocked in C on an in-process worker: no restart is possible; the Dask
    thread is freed all the same, and the warning says so."""
    search = Search("blocked", blocks_at_zero, "sqlite://", client=c)
    with _held:
        with pytest.warns(RuntimeWarning, match="cannot be restarted") as seen:
            report = await asyncio.to_thread(
                search.run, _grid(), trial_timeout=0.3, progress=False,
                execution=execution,
            )  # fmt: skip
        assert any(
            "trial 0 ran past trial_timeout=0.3 s and did not stop" in str(w.message)
            for w in seen
        )
        assert (report.evaluated, report.failed) == (5, 1)
        error = search.trials().set_index("x").loc[0, "error"]
        assert "timed out after 0.3 s" in error and "did not stop within" in error
        # every Dask thread is free while the objective is still blocked
        await _poll(
            lambda: a.state.executing_count == b.state.executing_count == 0,
            "the workers' threads to be free",
        )
        assert await asyncio.wait_for(c.submit(inc, 1), _BOUND) == 2
        assert _trial_threads()
    await _poll(lambda: not _trial_threads(), "the blocked thread to end")


# -- async_map, minimize, SPSA ---------------------------------------------------


@gen_cluster(client=True)
async def test_async_map_names_the_element_past_its_limit(c, s, a, b):
    with pytest.raises(TrialTimeoutError, match=r"timed out after 0\.3 s") as info:
        await asyncio.to_thread(
            async_map, loops_if_two, range(5), client=c, chunksize=1,
            trial_timeout=0.3, retries=3,
        )  # fmt: skip
    assert any("element 2 of args" in n for n in info.value.__notes__)
    assert await asyncio.wait_for(c.submit(inc, 1), _BOUND) == 2
    await _poll(lambda: not _trial_threads(), "the call's thread to end")


@gen_cluster(client=True)
async def test_minimize_and_spsa_raise_the_timeout_when_every_evaluation_failed(
    c, s, a, b
):
    with pytest.raises(TrialTimeoutError, match="timed out after 0.2 s"):
        await asyncio.to_thread(
            minimize, loops, [(-1, 1)], seed=0, maxiter=1, popsize=2,
            polish=False, trial_timeout=0.2, client=c,
        )  # fmt: skip
    with pytest.raises(TrialTimeoutError, match="timed out after 0.2 s"):
        # a vectorized call: the limit bounds the call (its points together)
        await asyncio.to_thread(
            minimize, loops, [(-1, 1)], seed=0, maxiter=1, popsize=2,
            polish=False, vectorized=True, trial_timeout=0.2, client=c,
        )  # fmt: skip
    with pytest.raises(TrialTimeoutError, match="timed out after 0.2 s"):
        await asyncio.to_thread(
            SPSA, loops, [0.5], a_par=0.1, maxiter=2, print_iters=None,
            trial_timeout=0.2, client=c,
        )  # fmt: skip
    await _poll(lambda: not _trial_threads(), "the calls' threads to end")


# -- bad input -------------------------------------------------------------------


class _Batch:
    """A batch objective (a ProducerConsumer's shape): evaluated whole."""

    reduce = sum

    def evaluate_batch(self, params):
        return [0.0 for _ in params]


@pytest.mark.parametrize("bad", [0, -1.0, math.inf, math.nan, "5", True])
@gen_cluster(client=True)
async def test_trial_timeout_is_checked_before_anything_runs(c, s, a, b, bad):
    search = Search("checked", loops_at_zero, "sqlite://", client=c)
    expected = "trial_timeout must be a positive, finite number of seconds"
    calls = [
        lambda: search.run(_grid(), trial_timeout=bad, progress=False),
        lambda: async_map(inc, range(3), client=c, trial_timeout=bad),
        lambda: minimize(loops, [(-1, 1)], client=c, trial_timeout=bad),
        lambda: SPSA(loops, [0.5], client=c, trial_timeout=bad),
    ]
    for run in calls:
        with pytest.raises(ValueError, match=expected):
            await asyncio.to_thread(run)
    assert not s.tasks  # nothing was submitted
    batch = Search("batch", _Batch(), "sqlite://", client=c)
    with pytest.raises(ValueError, match="cannot limit a batch objective"):
        await asyncio.to_thread(batch.run, _grid(), trial_timeout=1, progress=False)


# -- real worker processes: a call blocked in C, its worker restarted ------------


@pytest.mark.timeout(600)
def test_a_worker_stuck_in_c_is_restarted_and_the_cluster_works_on():
    """Two runs whose trial blocks in one C call, through a task and through
    the feed, then an async_map element: each time the worker is restarted
    (said in a warning), the trial recorded failed, the run finished; then
    new work runs at once (issue 29: a third search evaluated 0 trials)."""
    with local_client(2, 1) as client:
        for execution in ("tasks", "feed"):
            search = Search(f"stuck-{execution}", sleeps_at_zero, "sqlite://",
                            client=client)  # fmt: skip
            with pytest.warns(RuntimeWarning, match="restarted worker") as seen:
                report = search.run(
                    _grid(), trial_timeout=1, progress=False, execution=execution
                )
            message = str(
                next(w.message for w in seen if "restarted" in str(w.message))
            )
            assert "trial 0 ran past trial_timeout=1 s and did not stop" in message
            assert (report.evaluated, report.failed) == (5, 1)
            frame = search.trials().set_index("x")
            assert "timed out after 1 s" in frame.loc[0, "error"]
            assert (frame.loc[1:, "status"] == "done").all()
            assert client.submit(inc, 1).result(timeout=_BOUND) == 2
            # the restarted worker comes back (its start may be slow when the
            # machine is busy: the next step starts with the cluster whole)
            client.wait_for_workers(2, timeout=_RESTART_BOUND)
        with (
            pytest.warns(RuntimeWarning, match="restarted worker"),
            pytest.raises(TrialTimeoutError, match="did not stop") as info,
        ):
            async_map(sleeps_if_zero, range(4), client=client, chunksize=1,
                      trial_timeout=1)  # fmt: skip
        assert any("element 0 of args" in n for n in info.value.__notes__)
        assert client.submit(inc, 1).result(timeout=_BOUND) == 2
        client.wait_for_workers(2, timeout=_RESTART_BOUND)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            third = Search("after", sleeps_at_zero, "sqlite://", client=client)
            report = third.run(_grid()[1:], trial_timeout=30, progress=False)
        assert (report.evaluated, report.failed) == (5, 0)
