"""execution="feed": trials fed to long-lived tasks through worker-pinned actors."""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time

import dask.config
import pytest
import sqlalchemy as sa
from distributed.utils_test import gen_cluster

import dasktune
import dasktune.run.driver as driver_module
import dasktune.run.feed as feed_module
from dasktune import Float, Search
from dasktune.optim.base import Optimizer
from dasktune.optim.pruners import Pruner, Verdict
from dasktune.run.driver import check_execution
from dasktune.run.feed import FedWindow, Feed
from tests.clusters import local_client
from tests.dying import always_dies_at_seven, die_once_at_seven
from tests.waiting import async_poll_until, poll_until

SPACE = {"x": Float(0.0, 1.0)}


async def call(fn, *args, **kwargs):
    return await asyncio.to_thread(fn, *args, **kwargs)


def square(params):
    time.sleep(0.005)
    return (params["x"] - 0.3) ** 2


def fails_above_half(params):
    if params["x"] > 0.5:
        raise ValueError(f"x={params['x']} is too large")
    return params["x"]


def sleepy(params):
    time.sleep(0.2)
    return params["x"]


def _feed_keys(s) -> list[str]:
    return [k for k in s.tasks if str(k).startswith("feed-")]


async def _until_released(s) -> None:
    """The feed's actors and server tasks leave the scheduler."""
    await async_poll_until(
        lambda: not _feed_keys(s),
        what="the feed's actors and servers to be released",
        state=lambda: _feed_keys(s),
    )


@gen_cluster(client=True)
async def test_fed_trials_are_those_of_tasks_and_the_feed_is_released(c, s, a, b):
    runs = {}
    for execution in ("feed", "tasks"):
        search = Search(execution, square, "sqlite://", client=c, space=SPACE)
        report = await call(
            search.run, None, n_trials=40, seed=3, progress=False,
            execution=execution,
        )  # fmt: skip
        assert (report.evaluated, report.failed, report.stopped) == (40, 0, "n_trials")
        frame = await call(search.trials)
        runs[execution] = sorted(zip(frame["x"], frame["value"], strict=True))
        assert set(frame["status"]) == {"done"}
        assert frame["worker"].isin([a.address, b.address]).all()
        search.close()
    assert runs["feed"] == runs["tasks"]  # the same seed, the same trials
    await _until_released(s)
    assert not a.state.actors and not b.state.actors


def _counting_calls(monkeypatch) -> list[str]:
    """The actor calls a FedWindow makes (their function names)."""
    calls: list[str] = []
    real = FedWindow._call

    async def counted(self, station, function, *args):
        calls.append(function)
        return await real(self, station, function, *args)

    monkeypatch.setattr(FedWindow, "_call", counted)
    return calls


@gen_cluster(client=True)
async def test_in_process_workers_are_fed_without_calls(c, s, a, b):
    # gen_cluster's workers run in the test's process: payloads go straight
    # into their feeds' queues, results come back through a listener
    calls = []
    with pytest.MonkeyPatch.context() as mp:
        calls = _counting_calls(mp)
        search = Search("local", square, "sqlite://", client=c, space=SPACE)
        report = await call(
            search.run, None, n_trials=30, seed=3, progress=False, execution="feed"
        )
        assert report.evaluated == 30
        assert calls == []  # no put, no take, no stop went over a comm
        frame = await call(search.trials)
        assert set(frame["worker"]) == {a.address, b.address}
        search.close()
    await _until_released(s)


@gen_cluster(client=True)
async def test_the_calls_path_feeds_the_same_trials(c, s, a, b):
    # the path of workers in other processes (actor calls over a comm), taken
    # here on in-process workers: the same trials as the in-process path's
    runs = {}
    for in_process in (True, False):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(feed_module, "IN_PROCESS", in_process)
            calls = _counting_calls(mp)
            search = Search(
                f"calls-{in_process}", square, "sqlite://", client=c, space=SPACE
            )
            report = await call(
                search.run, None, n_trials=30, seed=3, progress=False,
                execution="feed",
            )  # fmt: skip
            assert report.evaluated == 30
            assert ("put" in calls and "take" in calls) is not in_process
            frame = await call(search.trials)
            runs[in_process] = sorted(zip(frame["x"], frame["value"], strict=True))
            search.close()
    assert runs[True] == runs[False]
    await _until_released(s)


class SlowAsker(Optimizer):
    """Asks a list of points; the 9th ask takes ``pause`` seconds, and looks
    meanwhile at which of the workers' threads their profilers see."""

    def __init__(self, points, pause, workers):
        super().__init__()
        self.todo, self.pause, self.workers = list(points), pause, workers
        self.profiled: list[int] = []

    def _ask(self):
        if len(self.todo) == 2:
            time.sleep(self.pause)  # a slow sampler: longer than the servers' poll

            def active():
                return [len(w.active_threads) for w in self.workers]

            # every trial sent so far finishes; then the idle servers are hidden
            poll_until(
                lambda: active() == [0, 0],
                what="the servers, idle, to leave the profilers",
                state=active,
            )
            self.profiled = active()
        return self.todo.pop(0) if self.todo else None

    def _tell(self, number, params, value):
        pass

    @property
    def finished(self):
        return not self.todo and not self.n_pending


@gen_cluster(client=True, timeout=60)
async def test_a_pause_between_asks_keeps_the_feed_and_hides_idle_servers(c, s, a, b):
    # a slow sampler (a Gaussian process's asks take seconds): the servers wait
    # for it, past their polling interval, and are not profiled as computing
    lost = []
    with pytest.MonkeyPatch.context() as mp:
        real = FedWindow._lose
        mp.setattr(
            FedWindow, "_lose", lambda self, *a: lost.append(a) or real(self, *a)
        )
        asker = SlowAsker([{"x": i / 10} for i in range(10)], 0.8, [a, b])
        search = Search("pause", square, "sqlite://", client=c, space=SPACE)
        report = await call(
            search.run, asker, progress=False, execution="feed", max_in_flight=2
        )
        search.close()
    assert (report.evaluated, report.failed) == (10, 0)
    assert lost == []  # no server gave up while the sampler asked
    assert asker.profiled == [0, 0]  # idle servers are not "computing"
    await _until_released(s)


@gen_cluster(client=True)
async def test_both_workers_are_fed(c, s, a, b):
    search = Search("both", sleepy, "sqlite://", client=c, space=SPACE)
    await call(
        search.run, None, n_trials=8, seed=0, progress=False, execution="feed",
        max_in_flight=4,
    )  # fmt: skip
    frame = await call(search.trials)
    assert set(frame["worker"]) == {a.address, b.address}


@gen_cluster(client=True)
async def test_a_failing_trial_is_recorded_and_the_rest_goes_on(c, s, a, b):
    search = Search("fails", fails_above_half, "sqlite://", client=c, space=SPACE)
    report = await call(
        search.run, None, n_trials=30, seed=1, progress=False, execution="feed"
    )
    frame = await call(search.trials)
    failed = frame[frame["status"] == "failed"]
    assert report.failed == len(failed) > 0 and report.evaluated == 30 - len(failed)
    assert (failed["x"] > 0.5).all()
    assert failed["error"].str.contains("ValueError: x=").all()


@gen_cluster(client=True, timeout=60)
async def test_the_timeout_stops_the_run_and_the_servers(c, s, a, b):
    search = Search("timeout", sleepy, "sqlite://", client=c, space=SPACE)
    report = await call(
        search.run, None, n_trials=1000, seed=0, progress=False, timeout=1.5,
        execution="feed",
    )  # fmt: skip
    assert report.stopped == "timeout"
    await _until_released(s)
    frame = await call(search.trials)
    assert 0 < (frame["status"] == "done").sum() < 1000


_starts: list[float] = []


def logged_sleepy(params):
    _starts.append(time.monotonic())  # the workers are in this process
    time.sleep(0.2)
    return params["x"]


@gen_cluster(client=True, timeout=60)
async def test_payloads_still_queued_at_the_timeout_never_run(c, s, a, b):
    _starts.clear()
    stops: list[float] = []  # when each feed's stop took effect
    real_stop = Feed.stop

    async def timed_stop(self, servers):
        await real_stop(self, servers)
        stops.append(time.monotonic())

    search = Search("queued", logged_sleepy, "sqlite://", client=c, space=SPACE)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Feed, "stop", timed_stop)
        report = await call(
            search.run, None, n_trials=1000, seed=0, progress=False, timeout=1.0,
            execution="feed", max_in_flight=12,
        )  # fmt: skip
        assert report.stopped == "timeout"
        await _until_released(s)
        # the servers have returned: no payload can start any more
        await async_poll_until(
            lambda: not a.state.tasks and not b.state.tasks,
            what="the servers to return",
            state=lambda: [list(w.state.tasks) for w in (a, b)],
        )
    assert len(stops) == 2  # one feed per worker
    late = [t - min(stops) for t in _starts if t > min(stops)]
    assert late == [], f"{len(late)} payloads started after the feeds stopped"


class StopAfterTwo(Pruner):
    """Stops every trial at its second report."""

    def _decide(self, number, step):
        return Verdict(step >= 1, f"stopped at step {step}")


def reports(params, trial):
    for step in range(300):
        trial.report(step, params["x"])
        if step == 1:  # StopAfterTwo's decision: wait for it to arrive
            poll_until(
                trial.should_prune,
                what=f"the stop of trial {trial.number} at step 1",
                timeout=20,
            )
        if trial.should_prune():
            raise dasktune.TrialPruned
        time.sleep(0.01)
    return params["x"]


@gen_cluster(client=True, timeout=60)
async def test_a_pruner_stops_fed_trials(c, s, a, b):
    search = Search("pruned", reports, "sqlite://", client=c, space=SPACE)
    report = await call(
        search.run, None, n_trials=6, seed=0, progress=False, pruner=StopAfterTwo(),
        execution="feed",
    )  # fmt: skip
    assert report.pruned == 6
    frame = await call(search.trials)
    assert set(frame["status"]) == {"pruned"}
    assert (frame["step"] == 1).all()  # stopped at the decision


def test_bad_execution_is_refused_before_anything_is_written():
    with pytest.raises(ValueError, match=r"execution must be one of 'auto', 'tasks', 'feed'; got 'threads'"):  # fmt: skip
        check_execution("threads")
    with pytest.raises(ValueError, match="cannot run resources.*execution='tasks'"):
        check_execution("feed", resources={"GPU": 1})
    search = Search("refused", square, "sqlite://", client=None, space=SPACE)
    with pytest.raises(ValueError, match="execution must be one of"):
        search.run(None, n_trials=2, seed=0, execution="thread")
    assert len(search.trials()) == 0
    drivers = sa.select(sa.func.count()).select_from(search.store.drivers)
    with search.store.engine.connect() as conn:
        assert conn.execute(drivers).scalar_one() == 0  # no driver registered


@gen_cluster(client=True)
async def test_the_window_refuses_pinned_or_resource_tasks(c, s, a, b):
    window = FedWindow(c, runner=square)
    with pytest.raises(ValueError, match="use Window"):
        window.map(square, [1], [None], keys=["k"], resources={"GPU": 1})
    window.cancel()


# -- a lost worker (real processes) ------------------------------------------


def test_a_lost_worker_s_trials_run_elsewhere_or_fail_past_the_allowed(tmp_path):
    marker = str(tmp_path / "killed")
    grid = [{"x": x / 10, "marker": marker} for x in range(10)]
    # one failure allowed: the workers killed by trial 0.7 twice fail it; each
    # further death would wait for a nanny's restart (tens of seconds on a
    # loaded machine)
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 1}),
        local_client(2, 1) as client,
    ):
        # one thread a worker: a lost worker was running one trial, the one
        # that killed it (the others it held were queued: no failure counted;
        # as Dask's scheduler does, the window counts a failure for as many
        # of the first sent as the worker has threads)
        with Search("lost", die_once_at_seven, "sqlite://", client=client) as search:
            report = search.run(grid, progress=False, execution="feed", timeout=120)
            assert os.path.exists(marker)  # a worker really died
            assert (report.evaluated, report.failed) == (10, 0)
            frame = search.trials()
            assert sorted(frame["value"]) == [x / 10 for x in range(10)]
        # both workers again (the one killed restarted), and trial 0.7 last:
        # it kills both, and no trial is left waiting for a restart
        client.wait_for_workers(2, timeout=60)
        last = sorted(grid, key=lambda params: params["x"] == 0.7)
        with Search("always", always_dies_at_seven, "sqlite://",
                    client=client) as search:  # fmt: skip
            report = search.run(last, progress=False, execution="feed", timeout=120)
            assert (report.evaluated, report.failed) == (9, 1)
            frame = search.trials()
            error = frame.loc[frame["x"] == 0.7, "error"].item()
            assert "worker running it was lost" in error
            assert "allowed-failures" in error
            assert math.isclose(search.best.value, 0.0)
    assert not [t for t in threading.enumerate() if t.name.startswith("dasktune")]


def reports_then_returns(params, trial):
    """Three reports, the last one just before returning."""
    for step in range(3):
        trial.report(step, params["x"] + step)
    return params["x"]


@pytest.mark.parametrize("wait", [True, False])
@gen_cluster(client=True, timeout=60)
async def test_a_fed_trial_s_last_report_is_stored_with_it(c, s, a, b, wait):
    # a fed result comes straight from its worker, its reports through the
    # scheduler (without the direct line, dasktune.run.line, as on a TLS
    # cluster): the driver waits for the last one before recording the trial.
    # The workers' streams to the scheduler made slow, reports come late
    for worker in (a, b):
        worker.batched_stream.interval = 0.1
    search = Search(f"last-{wait}", reports_then_returns, "sqlite://", client=c,
                    space=SPACE)  # fmt: skip
    saved = driver_module._REPORT_WAIT_SECONDS
    if not wait:  # what happens without the wait
        driver_module._REPORT_WAIT_SECONDS = 0.0
    try:
        with dask.config.set({"dasktune.report-line": False}):
            await call(
                search.run, None, n_trials=20, seed=0, progress=False,
                execution="feed",
            )  # fmt: skip
    finally:
        driver_module._REPORT_WAIT_SECONDS = saved
    curves = search.store.curves(search.search_id)
    complete = [len(curves.get(n, [])) == 3 for n in range(20)]
    assert all(complete) if wait else not all(complete), {
        n: curves.get(n) for n in range(20)
    }
