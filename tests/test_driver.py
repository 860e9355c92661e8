"""The driver loop: windows, failures, retries, grouping, batch objectives."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from distributed import Client
from distributed.utils_test import gen_cluster

from dasktune.exceptions import DasktuneError, TooManyFailuresError
from dasktune.optim.base import IterableSource, Optimizer
from dasktune.records import (
    Claim,
    MemoryRecorder,
    Outcome,
    TrialStatus,
    canonical,
)
from dasktune.run.driver import BatchObjective, Driver
from dasktune.run.options import RunOptions
from dasktune.search import Search
from dasktune.store.recorder import StoreRecorder
from dasktune.store.sql import TrialStore
from tests.waiting import poll_until

_lock = threading.Lock()
_calls: dict[str, int] = {}
_keys: set[str] = set()


@pytest.fixture(autouse=True)
def _reset():
    _calls.clear()
    _keys.clear()
    _at_once.clear()


def square(p):
    from distributed.worker import thread_state

    with _lock:
        _calls[str(p["x"])] = _calls.get(str(p["x"]), 0) + 1
        _keys.add(thread_state.key)
    return p["x"] ** 2


def fails_on_odd(p):
    if p["x"] % 2:
        raise ArithmeticError(f"odd {p['x']}")
    return p["x"]


def flaky(p):
    with _lock:
        _calls[str(p["x"])] = _calls.get(str(p["x"]), 0) + 1
        if _calls[str(p["x"])] == 1:
            raise RuntimeError("first try")
    return 1.0


def run(c, optimizer, objective, **kwargs):
    recorder = kwargs.pop("recorder", None) or MemoryRecorder()
    driver = Driver(optimizer, objective, c, recorder, RunOptions(name="t", **kwargs))
    return driver, recorder, driver.run()


class Sequential(Optimizer):
    """One point at a time, next = previous + 1: a serial optimizer."""

    def __init__(self, n):
        super().__init__()
        self.n, self.values = n, []

    def _ask(self):
        if self.n_pending or self.finished:
            return None
        return {"x": len(self.values)}

    def _tell(self, number, params, value):
        self.values.append(value)

    @property
    def finished(self):
        return len(self.values) >= self.n


class Stuck(Optimizer):
    def _ask(self):
        return None


class Repeats(Optimizer):
    """Proposes the same point over and over (as scipy does near convergence)."""

    def __init__(self, n):
        super().__init__()
        self.n, self.told = n, []

    def _ask(self):
        return None if self._next_number >= self.n else {"x": 5}

    def _tell(self, number, params, value):
        self.told.append(value)

    @property
    def finished(self):
        return len(self.told) >= self.n


@gen_cluster(client=True)
async def test_serial_optimizer_and_values_told(c, s, a, b):
    opt = Sequential(5)
    _, _, report = await asyncio.to_thread(run, c, opt, square)
    assert opt.values == [0, 1, 4, 9, 16]
    assert (report.evaluated, report.stopped, report.best_value) == (5, "finished", 0)


@gen_cluster(client=True)
async def test_stuck_optimizer_raises_instead_of_waiting(c, s, a, b):
    with pytest.raises(DasktuneError, match=r"Stuck.ask\(\) returned None"):
        await asyncio.to_thread(run, c, Stuck(), square)


@gen_cluster(client=True)
async def test_repeated_points_are_evaluated_once(c, s, a, b):
    opt = Repeats(6)
    _, _, report = await asyncio.to_thread(run, c, opt, square)
    assert _calls == {"5": 1}
    assert opt.told == [25] * 6
    assert report.evaluated == 1
    # every ask is counted: the repeats joined the trial in flight (or, asked
    # after it was done, were reused)
    assert report.joined >= 1 and report.joined + report.reused == 5


@gen_cluster(client=True)
async def test_failures_are_recorded_and_the_loop_goes_on(c, s, a, b):
    source = IterableSource([{"x": i} for i in range(6)])
    _, recorder, report = await asyncio.to_thread(run, c, source, fails_on_odd)
    assert (report.evaluated, report.failed) == (3, 3)
    failed = [o for _, o in recorder.records if o.status == "failed"]
    assert len(failed) == 3
    assert all("ArithmeticError: odd" in o.error for o in failed)
    assert all(o.worker and o.host for _, o in recorder.records)


@gen_cluster(client=True)
async def test_max_failures_stops_with_the_last_traceback(c, s, a, b):
    source = IterableSource([{"x": 2 * i + 1} for i in range(20)])
    with pytest.raises(
        TooManyFailuresError, match=r"(?s)after 2 failed.*ArithmeticError: odd"
    ):
        await asyncio.to_thread(
            run, c, source, fails_on_odd, max_failures=2, max_in_flight=1
        )


@gen_cluster(client=True)
async def test_retries_rerun_raising_trials(c, s, a, b):
    source = IterableSource([{"x": i} for i in range(3)])
    _, recorder, report = await asyncio.to_thread(run, c, source, flaky, retries=1)
    assert (report.evaluated, report.failed) == (3, 0)
    assert all(o.attempts == 2 for _, o in recorder.records)


_running = {"now": 0, "max": 0}


def slow(p):
    with _lock:
        _running["now"] += 1
        _running["max"] = max(_running["max"], _running["now"])
    time.sleep(0.02)
    with _lock:
        _running["now"] -= 1
    return 0.0


@gen_cluster(client=True)
async def test_window_bounds_trials_in_flight(c, s, a, b):
    # gen_cluster has 3 threads: without the window, 3 would run at once
    source = IterableSource({"x": i} for i in range(30))
    _, _, report = await asyncio.to_thread(run, c, source, slow, max_in_flight=2)
    assert report.evaluated == 30
    assert _running["max"] == 2


@gen_cluster(client=True)
async def test_fast_trials_are_grouped_in_tasks_and_named(c, s, a, b):
    source = IterableSource([{"x": i} for i in range(400)])
    _, recorder, report = await asyncio.to_thread(run, c, source, square)
    assert report.evaluated == 400
    assert len(recorder.records) == 400  # each trial recorded on its own
    assert len(_keys) < 100  # but far fewer tasks than trials
    assert all(k.startswith("trial-t-") for k in _keys)


@gen_cluster(client=True)
async def test_n_trials_and_timeout(c, s, a, b):
    source = IterableSource({"x": i} for i in range(1000))
    _, _, report = await asyncio.to_thread(run, c, source, square, n_trials=7)
    assert (report.evaluated, report.stopped) == (7, "n_trials")

    started = []

    def sleepy(p):
        started.append(p)  # the workers are in this process
        time.sleep(0.5)
        return 0.0

    source = IterableSource({"x": i} for i in range(1000))
    _, _, report = await asyncio.to_thread(run, c, source, sleepy, timeout=0.3)
    assert report.stopped == "timeout"
    # not 1000 trials of 0.5 s: only those of the first window (3 threads)
    assert len(started) <= 10


class SumBatch:
    """A batch objective test double: sums, and fails on negative sets."""

    def __init__(self):
        self.batches = []

    def evaluate_batch(self, params):
        self.batches.append(len(params))
        if any(p["a"] < 0 for p in params):
            raise ValueError("negative a")
        return [sum(p.values()) for p in params]


class BatchOfFour(Optimizer):
    def __init__(self):
        super().__init__()
        self.told = []

    def _ask(self):
        if self._next_number >= 8 or (self.n_pending and self._next_number % 4 == 0):
            return None
        return {"a": self._next_number, "b": 1}

    def _tell(self, number, params, value):
        self.told.append((number, value))

    @property
    def finished(self):
        return len(self.told) == 8


@gen_cluster(client=True)
async def test_batch_objective_protocol(c, s, a, b):
    objective = SumBatch()
    assert isinstance(objective, BatchObjective)
    opt = BatchOfFour()
    _, _, report = await asyncio.to_thread(run, c, opt, objective)
    assert report.evaluated == 8
    assert objective.batches == [4, 4]  # each asked batch went out at once
    assert sorted(opt.told) == [(i, i + 1.0) for i in range(8)]


@gen_cluster(client=True)
async def test_batch_objective_failures_are_isolated(c, s, a, b):
    objective = SumBatch()
    source = IterableSource([{"a": 1, "b": 1}, {"a": -1, "b": 1}, {"a": 2, "b": 1}])
    _, recorder, report = await asyncio.to_thread(run, c, source, objective)
    assert (report.evaluated, report.failed) == (2, 1)
    failed = [o for _, o in recorder.records if o.status == "failed"]
    assert "ValueError: negative a" in failed[0].error


# -- batches sent the cheap way, waiting without write locks, re-runs --------

_at_once: dict[str, list[int]] = {}  # worker -> [running now, most at once]


def nap_where(p):
    from distributed import get_worker
    from distributed.worker import thread_state

    worker = get_worker().address
    with _lock:
        now_max = _at_once.setdefault(worker, [0, 0])
        now_max[0] += 1
        now_max[1] = max(now_max[1], now_max[0])
        _keys.add(thread_state.key)
    time.sleep(0.02)
    with _lock:
        now_max[0] -= 1
    return float(p["x"])


class Generations(Optimizer):
    """Batch-synchronous: ``size`` points per generation, ``n`` generations."""

    def __init__(self, n, size):
        super().__init__()
        self.n, self.size, self.generation, self.asked, self.told = n, size, 0, 0, 0

    def _ask(self):
        if self.finished or self.asked == self.size:
            return None
        self.asked += 1
        return {"x": self.generation * self.size + self.asked}

    def _tell(self, number, params, value):
        self.told += 1
        if self.told == self.size:
            self.generation, self.asked, self.told = self.generation + 1, 0, 0

    @property
    def batch_size(self):
        return self.size - self.told if self.asked else 0

    @property
    def finished(self):
        return self.generation >= self.n


@gen_cluster(client=True)
async def test_a_known_batch_goes_as_one_task_per_worker_on_its_threads(c, s, a, b):
    # gen_cluster: worker a has 1 thread, b has 2; as tasks ("auto" feeds
    # batches of trials this short: test_feed_choice.py)
    _, recorder, report = await asyncio.to_thread(
        run, c, Generations(3, 12), nap_where, execution="tasks"
    )
    assert report.evaluated == 36 and len(recorder.records) == 36
    assert len(_keys) == 3 * 2  # one task per worker and generation
    assert _at_once[a.address][1] == 1  # never more at once than its threads
    assert _at_once[b.address][1] == 2  # and all of them used


class CountingStoreRecorder(StoreRecorder):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.syncs = self.peeks = 0

    def sync(self, outcomes, claims):
        self.syncs += 1
        return super().sync(outcomes, claims)

    def peek(self, hashes):
        self.peeks += 1
        return super().peek(hashes)


@gen_cluster(client=True, timeout=60)
async def test_waiting_for_another_driver_reads_instead_of_claiming(
    c, s, a, b, tmp_path_factory
):
    store = TrialStore(f"sqlite:///{tmp_path_factory.mktemp('wait')}/w.db")
    sid = store.open_search("w", space=None, direction="minimize", metadata={})
    other, mine = store.register_driver(sid), store.register_driver(sid)
    record, h = canonical({"x": 0})
    assert store.sync(sid, other, [], [Claim(h, record)])[0].kind == "evaluate"

    recorder = CountingStoreRecorder(store, sid, mine, False, 30.0)
    errors = []

    def the_other_driver_finishes():
        try:  # once this driver has looked three times, waiting for it
            poll_until(lambda: recorder.peeks >= 3, what="three looks at the trial")
        except AssertionError as err:
            errors.append(err)
        store.sync(sid, other, [Outcome(h, TrialStatus.DONE, value=42.0)], [])

    finisher = threading.Thread(target=the_other_driver_finishes)
    finisher.start()
    opt = Sequential(1)
    try:
        _, _, report = await asyncio.to_thread(run, c, opt, square, recorder=recorder)
    finally:
        finisher.join()
    assert not errors, errors
    assert opt.values == [42.0] and report.reused == 1
    assert "0" not in _calls  # never evaluated here
    # one claim finding it held, one claiming it back once done: no write
    # transaction per wake while waiting, only reads
    assert recorder.syncs <= 3
    assert recorder.peeks >= 3


@gen_cluster(client=True)
async def test_a_rerun_over_done_trials_claims_more_per_transaction(c, s, a, b):
    grid = [{"x": i} for i in range(3000)]
    recorder = CountingMemoryRecorder()
    await asyncio.to_thread(
        run, c, IterableSource(grid[:2000]), square, recorder=recorder
    )
    recorder.syncs = 0
    _calls.clear()
    _, _, report = await asyncio.to_thread(
        run, c, IterableSource(grid), square, recorder=recorder
    )
    assert (report.reused, report.evaluated) == (2000, 1000)
    assert len(_calls) == 1000  # only the new ones evaluated
    # the 2000 done ones took a handful of transactions (claims doubling up to
    # 256 per transaction), not one per window of 5 (400 of them)
    assert recorder.syncs < 40


class CountingMemoryRecorder(MemoryRecorder):
    def __init__(self):
        super().__init__()
        self.syncs = 0

    def sync(self, outcomes, claims):
        self.syncs += 1
        return super().sync(outcomes, claims)


def test_an_objective_changing_its_params_does_not_change_what_is_recorded(
    tmp_path,
):
    # the objective's dict and the recorded one are separate, though a search
    # maps a proposal once for both
    class Meddling:
        def evaluate_batch(self, params):
            for p in params:
                p["a"] = -1
                p["added"] = True
            return [1.0 for _ in params]

    with Client(processes=False, n_workers=1, threads_per_worker=1) as client:
        search = Search("meddle", Meddling(), f"sqlite:///{tmp_path}/m.db",
                        client=client)  # fmt: skip
        report = search.run([{"a": 1}, {"a": 2}], progress=False)
        assert report.evaluated == 2
        frame = search.trials()
        assert frame["a"].tolist() == [1, 2] and "added" not in frame
        search.close()
