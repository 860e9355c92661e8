"""Search: sources, filters, de-duplication, the trials table, resume."""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from distributed.utils_test import gen_cluster
from sklearn.model_selection import ParameterGrid, ParameterSampler

import dasktune.search as search_module
from dasktune import SPSA, Bool, Categorical, DasktuneError, Float, Int, Search
from dasktune.exceptions import SearchMismatchError, TooManyFailuresError
from dasktune.optim.base import RandomSampler
from dasktune.optim.selector import LCBSelector
from dasktune.records import Claim, Outcome, Trial, TrialStatus, canonical
from dasktune.space import Dimension, Space
from dasktune.store.sql import TrialStore
from tests.waiting import poll_until

_lock = threading.Lock()
_evaluated: collections.Counter = collections.Counter()

SCRIPT = Path(__file__).with_name("search_script.py")


@pytest.fixture(autouse=True)
def _reset():
    _evaluated.clear()


def score(params):
    with _lock:
        _evaluated[tuple(sorted(params.items()))] += 1
    penalty = {"rbf": 0.0, "linear": 1.0, "poly": -5.0}[params["kernel"]]
    return {"loss": (params["C"] - 1) ** 2 + penalty, "n_support": 3}


def fails_for_poly(params):
    if params["kernel"] == "poly":
        raise np_error()
    return 1.0


def np_error():
    return FloatingPointError("poly diverged")


async def call(fn, *args, **kwargs):
    return await asyncio.to_thread(fn, *args, **kwargs)


@gen_cluster(client=True)
async def test_grid_search_table_and_best(c, s, a, b):
    search = Search("svm", score, "sqlite://", client=c)
    grid = ParameterGrid({"C": [0.1, 1, 10], "kernel": ["rbf", "linear"]})
    report = await call(search.run, grid, progress=False)
    assert (report.evaluated, report.stopped) == (6, "finished")
    frame = search.trials()
    assert list(frame.columns) == [
        "number", "C", "kernel", "value", "status", "duration", "worker",
        "host", "attempts", "started", "finished", "error", "aux",
    ]  # fmt: skip
    assert sorted(frame["kernel"]) == ["linear"] * 3 + ["rbf"] * 3  # values
    assert (frame["status"] == "done").all()
    assert frame["worker"].str.startswith("tcp://").all()
    assert isinstance(frame["started"].dtype, pd.DatetimeTZDtype)
    best = search.best
    assert (best.params, best.value, best.aux) == (
        {"C": 1, "kernel": "rbf"},
        0.0,
        {"n_support": 3},
    )


@gen_cluster(client=True)
async def test_extending_a_grid_reuses_done_trials(c, s, a, b):
    store = TrialStore("sqlite://")
    search = Search("svm", score, store, client=c)
    await call(
        search.run,
        ParameterGrid({"C": [0.1, 1], "kernel": ["rbf", "linear"]}),
        progress=False,
    )
    again = Search("svm", score, store, client=c)  # re-opened by name
    grid = ParameterGrid({"C": [0.1, 1], "kernel": ["rbf", "linear", "poly"]})
    report = await call(again.run, grid, progress=False)
    assert (report.evaluated, report.reused) == (2, 4)
    assert set(_evaluated.values()) == {1}  # nothing computed twice
    assert len(again.trials()) == 6
    assert again.best.params == {"C": 1, "kernel": "poly"}


@gen_cluster(client=True)
async def test_sampler_source_and_filter(c, s, a, b):
    seen_frames = []

    def small_c(params, trials):
        seen_frames.append(trials)
        return params["C"] < 5

    sampler = ParameterSampler(
        {"C": list(range(10)), "kernel": ["rbf"]}, n_iter=10, random_state=0
    )
    search = Search("sampled", score, "sqlite://", client=c)
    report = await call(search.run, sampler, filters=[small_c], progress=False)
    frame = search.trials()
    assert (frame["C"] < 5).all()
    assert report.skipped == 10 - len(frame)
    assert all(isinstance(f, pd.DataFrame) for f in seen_frames)
    # the frame is refreshed per batch of results, not rebuilt per candidate
    assert len({id(f) for f in seen_frames}) < len(seen_frames)

    def broken(params, trials):
        raise RuntimeError("boom in filter")

    with pytest.raises(RuntimeError, match="boom in filter") as info:
        await call(search.run, [{"C": 1, "kernel": "rbf"}], filters=[broken])
    assert "raised by the filter 'broken' on {'C': 1" in info.value.__notes__[-1]


def array_valued(params):  # values as scipy takes them, in every form
    value = float(params["x"]) ** 2
    return {
        "plain": np.array([value]),
        "0-d": np.array(value),
        "loss": {"loss": np.array([[value]]), "n": 1},
        "tuple": (np.array([value]), {"n": 1}),
        "too long": np.array([value, 1.0]),
        "string": str(value),
    }[params["form"]]


@gen_cluster(client=True)
async def test_values_of_size_one_and_bad_kinds(c, s, a, b):
    search = Search("arrays", array_valued, "sqlite://", client=c)
    forms = ["plain", "0-d", "loss", "tuple", "too long", "string"]
    grid = ParameterGrid({"x": [1, 2], "form": forms})
    report = await call(search.run, grid, progress=False)
    assert (report.evaluated, report.failed) == (8, 4)  # the run goes on
    done = search.trials(status="done")
    assert sorted(done["value"]) == [1.0] * 4 + [4.0] * 4
    failed = search.trials(status="failed").set_index(["form", "x"])
    with pytest.raises(ValueError, match=r"status must be among .*got \['fail'\]"):
        search.trials(status=["done", "fail"])  # a typo is no empty frame
    assert "got ndarray of shape (2,)" in failed.loc[("too long", 2), "error"]
    assert "got str: '4.0'" in failed.loc[("string", 2), "error"]


@gen_cluster(client=True)
async def test_failed_trials_recorded_and_search_completes(c, s, a, b):
    search = Search("fails", fails_for_poly, "sqlite://", client=c)
    grid = ParameterGrid({"C": [1, 2], "kernel": ["rbf", "poly"]})
    report = await call(search.run, grid, progress=False)
    assert (report.evaluated, report.failed) == (2, 2)
    failed = search.trials(status="failed")
    assert len(failed) == 2
    assert failed["error"].str.contains("FloatingPointError: poly diverged").all()
    with pytest.raises(TooManyFailuresError, match="poly diverged"):
        await call(search.run, grid, retry_failed=True, max_failures=1, progress=False)


@gen_cluster(client=True)
async def test_maximize_and_random_sampling_of_a_space(c, s, a, b):
    space = {
        "C": Float(0.1, 10, log=True),
        "kernel": Categorical(["rbf", "linear"]),
        "k": Int(1, 3),
    }
    search = Search(
        "max", score, "sqlite://", client=c, space=space, direction="maximize"
    )
    report = await call(search.run, n_trials=12, seed=0, progress=False)
    assert report.evaluated == 12
    frame = search.trials()
    assert search.best.value == frame["value"].max()
    # re-opened without its space and direction (to read it, or to run on):
    # the stored ones
    again = Search("max", score, search.store, client=c)
    assert again.space == Space(space) and again.directions == ["maximize"]
    assert again.best.value == search.best.value
    # opened only to be read: no objective needed; running it is refused
    reader = Search("max", None, search.store)
    assert reader.best.value == search.best.value
    with pytest.raises(TypeError, match="opened without an objective: it can be read"):
        await call(reader.run, n_trials=1, progress=False)
    with pytest.raises(ValueError, match="a new search needs an objective"):
        Search("nope", None, search.store)
    assert search.store.find_search("nope") is None
    # (a stored space keeps its names sorted, so its columns come in that order)
    assert list(again.trials().columns[1:4]) == ["C", "k", "kernel"]
    pd.testing.assert_frame_equal(again.trials()[frame.columns], frame)
    report = await call(again.run, n_trials=3, seed=1, progress=False)
    assert report.evaluated + report.reused == 3
    with pytest.raises(SearchMismatchError, match="pass the same space"):
        Search(
            "max",
            score,
            search.store,
            client=c,
            space={"C": Float(0, 1)},
            direction="maximize",
        )


@gen_cluster(client=True)
async def test_points_outside_the_space_are_refused(c, s, a, b):
    space = {"C": Float(0.1, 10, log=True), "kernel": Categorical(["rbf", "linear"])}
    search = Search("space", score, "sqlite://", client=c, space=space)
    good = {"C": np.float64(1.0), "kernel": "rbf"}  # a grid's numpy numbers too
    for bad, why in (
        ({"C": 50.0, "kernel": "rbf"}, r"C=50.0 is not in Float\(low=0.1"),
        ({"kernel": "rbf"}, "it has no 'C'"),
        ({"C": 1.0, "kernel": "poly"}, "kernel='poly' is not in Categorical"),
    ):
        with pytest.raises(ValueError, match=f"not a point of search 'space'.*{why}"):
            await call(search.run, [good, bad], progress=False)
        assert len(search.trials()) == 0  # a list: refused before any work
    with pytest.raises(ValueError, match="C=50.0 is not in"):
        await call(search.run, (p for p in [good, {"C": 50.0, "kernel": "rbf"}]),
                   progress=False)  # fmt: skip
    # a generator: each point as it comes, and nothing is left running
    assert set(search.trials()["status"]) <= {"done"}
    report = await call(search.run, [good], progress=False)
    assert report.evaluated + report.reused == 1


@gen_cluster(client=True)
async def test_bad_input_raises_before_submission(c, s, a, b):
    search = Search("bad", score, "sqlite://", client=c)
    with pytest.raises(ValueError, match="parameter names \\['value'\\] are reserved"):
        await call(search.run, ParameterGrid({"value": [1, 2]}), progress=False)
    with pytest.raises(ValueError, match="parameter names \\['status'\\] are reserved"):
        await call(search.run, [{"status": 1}], progress=False)
    with pytest.raises(
        TypeError, match="source must be an iterable of parameter dicts"
    ):
        await call(search.run, 42)
    with pytest.raises(TypeError, match="a function is not a source.*SPSAOptimizer"):
        await call(search.run, SPSA)
    with pytest.raises(ValueError, match="n_trials must be an integer >= 1"):
        await call(search.run, [{"C": 1}], n_trials=0)
    with pytest.raises(ValueError, match="timeout must be a positive, finite number"):
        await call(search.run, [{"C": 1}], timeout=-1)
    with pytest.raises(TypeError, match="each filter must be callable"):
        await call(search.run, [{"C": 1}], filters=[3])
    with pytest.raises(ValueError, match="without a source samples the search's space"):
        await call(search.run)
    assert search.trials().empty  # nothing was submitted
    with pytest.raises(DasktuneError, match="no done feasible trial yet"):
        _ = search.best
    with pytest.raises(ValueError, match="direction must be"):
        Search("bad", score, "sqlite://", direction="down")
    with pytest.raises(TypeError, match="objective must be callable"):
        Search("bad", 3, "sqlite://")


def _done_params(url: str) -> set[int]:
    store = TrialStore(url)
    try:
        sid = store.find_search("shared")
        if sid is None:
            return set()
        return {
            r["params"]["i"] for r in store.trials(sid["id"]) if r["status"] == "done"
        }
    finally:
        store.close()


def _launch(
    url: str, log: Path, sleep: float, stale_after: float = 30.0
) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), url, str(log), str(sleep), str(stale_after)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_url(request, tmp_path) -> str:
    """A store for searches shared by driver processes: a SQLite file, or a
    database on a real PostgreSQL server."""
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{tmp_path}/s.db"


def test_three_drivers_never_evaluate_a_parameter_set_twice(tmp_path, shared_url):
    url, log = shared_url, tmp_path / "evaluations.log"
    procs = [_launch(url, log, 0.02) for _ in range(3)]
    for p in procs:
        out, _ = p.communicate(timeout=90)
        assert p.returncode == 0 and "finished" in out
    counts = collections.Counter(log.read_text().split())
    assert sorted(int(k) for k in counts) == list(range(40))
    assert set(counts.values()) == {1}


def test_resume_after_sigkill_skips_done_trials(tmp_path, shared_url):
    url, log = shared_url, tmp_path / "evaluations.log"
    proc = _launch(url, log, 0.1)
    poll_until(
        lambda: len(_done_params(url)) >= 6 or proc.poll() is not None,
        what="6 trials done by the driver",
        timeout=60,
    )
    assert proc.poll() is None
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    done_before = _done_params(url)
    assert 6 <= len(done_before) < 40
    # the same script again: done trials skipped, interrupted ones re-run
    again = _launch(url, log, 0.0)
    out, _ = again.communicate(timeout=90)
    assert again.returncode == 0 and "finished" in out
    counts = collections.Counter(int(k) for k in log.read_text().split())
    assert set(counts) == set(range(40))
    assert all(counts[i] == 1 for i in done_before)
    assert _done_params(url) == set(range(40))


@gen_cluster(client=True)
async def test_search_on_postgresql_reuses_and_resumes(c, s, a, b, postgres_url):
    search = Search("svm", score, postgres_url, client=c)
    grid = ParameterGrid({"C": [0.1, 1, 10], "kernel": ["rbf", "linear"]})
    report = await call(search.run, grid, progress=False)
    assert (report.evaluated, report.stopped) == (6, "finished")
    assert search.best.params == {"C": 1, "kernel": "rbf"}
    search.close()
    # another process's view: a new Search object on the same database
    again = Search("svm", score, postgres_url, client=c)
    bigger = ParameterGrid({"C": [0.1, 1, 10, 100], "kernel": ["rbf", "linear"]})
    report = await call(again.run, bigger, progress=False)
    assert (report.evaluated, report.reused) == (2, 6)
    frame = again.trials()
    assert len(frame) == 8 and (frame["status"] == "done").all()
    assert "s3cret" not in repr(again)
    again.close()


def _seen_rows_and_keep(params, trials):
    # a filter that refuses C values already done: only possible if the table
    # it sees is brought up to date between batches
    done = trials[trials["status"] == "done"]
    return not (done["C"] == params["C"]).any()


@gen_cluster(client=True)
async def test_filters_and_trials_see_new_rows_as_they_come(c, s, a, b):
    search = Search("incremental", score, "sqlite://", client=c)
    first = await call(
        search.run, [{"C": 1, "kernel": "rbf"}, {"C": 2, "kernel": "rbf"}],
        progress=False,
    )  # fmt: skip
    assert first.evaluated == 2
    assert search.trials()["status"].tolist() == ["done", "done"]
    # the same C with another kernel is refused by the filter, a new C is not
    again = await call(
        search.run,
        [{"C": 1, "kernel": "linear"}, {"C": 3, "kernel": "linear"}],
        filters=[_seen_rows_and_keep], progress=False,
    )  # fmt: skip
    assert (again.evaluated, again.skipped) == (1, 1)
    frame = search.trials()
    assert frame["C"].tolist() == [1, 2, 3] and len(search.trials(status="done")) == 3
    # another Search object on the same store reads it whole, the same
    other = Search("incremental", score, search.store, client=c)
    pd.testing.assert_frame_equal(other.trials(), frame)


@pytest.mark.parametrize("store", [5, None, b"x.db"])
def test_store_of_the_wrong_type_says_what_it_accepts(store):
    with pytest.raises(
        TypeError,
        match=r"store must be a SQLAlchemy URL string .*, the path of a SQLite file, "
        r"or an open dasktune.store.sql.TrialStore, got",
    ):
        Search("s", abs, store)


@gen_cluster(client=True)
async def test_a_path_is_a_sqlite_store(c, s, a, b):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "trials.db"  # a pathlib.Path, as notebooks write it
        with Search("by-path", constant, path, client=c) as search:
            await call(search.run, [{"a": 1.0}, {"a": 2.0}], progress=False)
        # the same file by its URL holds the trials
        with Search("by-path", None, f"sqlite:///{path}") as again:
            assert sorted(again.trials(status="done")["a"]) == [1.0, 2.0]


SPACE_XC = {"x": Float(0, 1), "c": Categorical(["a", "b"])}


@pytest.mark.parametrize(
    ("theirs", "why"),
    [
        (
            {"x": Float(0, 2), "c": Categorical(["a", "b"])},
            "x: Float(low=0.0, high=2.0",
        ),
        ({"x": Float(0, 1)}, "it has no 'c'"),
        ({"x": Float(0, 1), "c": Categorical(["a", "z"])}, "c: Categorical"),
        ({"x": Float(0, 1), "c": Bool()}, "c: Bool()"),
    ],
)
def test_an_optimizer_over_another_space_is_refused_before_any_work(theirs, why):
    with Search("s", constant, "sqlite://", space=SPACE_XC) as search:
        _refuse_each(search, theirs, why)


def _refuse_each(search, theirs, why):
    for optimizer in (
        RandomSampler(theirs, seed=0, n_trials=3),
        # inside a selector too
        LCBSelector({"same": RandomSampler(SPACE_XC, seed=0, n_trials=3),
                     "other": RandomSampler(theirs, seed=0, n_trials=3)}),
    ):  # fmt: skip
        with pytest.raises(ValueError, match="searches a space whose points") as info:
            search.run(optimizer, progress=False)
        assert why in str(info.value)
        assert "give it the search's space" in str(info.value)
    assert search.trials().empty  # nothing ran, nothing recorded


def test_an_optimizer_over_part_of_the_space_runs():
    # a narrower range, a log spread, fewer choices, ints in a Float range,
    # an extra parameter: every point is a point of the search's space
    space = Space(SPACE_XC)
    for theirs in (
        {"x": Float(0.25, 0.5), "c": Categorical(["b"])},
        {
            "x": Float(0.01, 1, log=True),
            "c": Categorical(["a", "b"]),
            "extra": Int(0, 3),
        },
        {"x": Int(0, 1), "c": Categorical(["a"])},
    ):
        assert Space(theirs).outside_of(space) is None
    assert (
        Space({"k": Int(1, 3)}).outside_of(Space({"k": Categorical([1, 2, 3])})) is None
    )
    assert Space({"k": Int(1, 4)}).outside_of(Space({"k": Categorical([1, 2, 3])}))
    assert (
        Space({"b": Bool()}).outside_of(Space({"b": Categorical([True, False])}))
        is None
    )
    # a dimension of a kind dasktune does not know: the same one is inside
    assert Space({"o": _Odd()}).outside_of(Space({"o": _Odd()})) is None
    assert Space({"o": _Odd()}).outside_of(Space({"o": Int(0, 9)}))


class _Odd(Dimension):
    """A dimension of a user's own kind."""

    def to_json(self):
        return {"type": "odd"}


class _DictSpaceSampler(RandomSampler):
    """An optimizer of a user's whose space attribute is a plain dict."""

    def __init__(self, space):
        super().__init__(space, seed=0, n_trials=2)
        self.space = dict(space)


def test_an_optimizer_with_a_dict_space_is_checked_too():
    with Search("s", constant, "sqlite://", space=SPACE_XC) as search:
        wide = _DictSpaceSampler({"x": Float(0, 2), "c": Categorical(["a", "b"])})
        with pytest.raises(ValueError, match="searches a space whose points"):
            search.run(wide, progress=False)


class _OwnAskTell:
    """A user's ask/tell object, no Optimizer: AskTell's members only."""

    seed = None
    wants_values = True
    n_objectives = 1
    batch_size = 0

    def __init__(self, points):
        self.points, self.told, self.closed = list(points), {}, False
        self.asked = 0

    def ask(self):
        if self.asked >= len(self.points):
            return None
        self.asked += 1
        return Trial(self.asked - 1, self.points[self.asked - 1])

    def tell(self, trial, value, constraints=None):
        number = trial.number if isinstance(trial, Trial) else trial
        self.told[number] = value

    @property
    def finished(self):
        return len(self.told) == len(self.points)

    def describe(self):
        return "own"

    def close(self):
        self.closed = True


@gen_cluster(client=True)
async def test_a_users_ask_tell_object_runs_with_the_hooks_defaults(c, s, a, b):
    # the hooks beyond AskTell's members (adopt_space, spaces, directions, ...)
    # are an Optimizer's; an object without them takes their defaults
    own = _OwnAskTell([{"a": 1.0}, {"a": 2.0}])
    with Search("own", constant, "sqlite://", client=c, direction="maximize") as s_:
        report = await call(s_.run, own, progress=False)
    assert (report.evaluated, report.stopped) == (2, "finished")
    assert own.told == {0: -1.0, 1: -2.0} and not own.closed  # the user's to close


def test_best_says_why_there_is_none():
    store = TrialStore("sqlite://")
    with Search("why", constant, store) as search:
        driver = store.register_driver(search.search_id)
        claims = [Claim(*reversed(canonical({"a": a}))) for a in (1.0, 2.0)]
        store.sync(search.search_id, driver, [], claims)
        store.sync(search.search_id, driver,
                   [Outcome(claims[0].param_hash, TrialStatus.PRUNED, value=3.0)], [])  # fmt: skip
        store.release(search.search_id, driver)  # the other goes back as queued
        with pytest.raises(DasktuneError, match=r"its trials are 1 pruned, 1 queued; "
                           r"run\(\) it again to finish the interrupted ones"):  # fmt: skip
            search.best  # noqa: B018
    store.close()


def constant(params):
    return float(params["a"])


@gen_cluster(client=True)
async def test_a_space_smaller_than_n_trials_ends_saying_so(c, s, a, b):
    search = Search("tiny", constant, "sqlite://", client=c, space={"a": Int(0, 1)})
    run = call(search.run, n_trials=3, seed=0, progress=False)
    report = await asyncio.wait_for(run, 30)
    assert report.stopped == "the space has 2 points; all are done"
    assert report.evaluated == 2
    # and again: nothing new to evaluate, it ends at once
    report = await asyncio.wait_for(call(search.run, n_trials=3, progress=False), 30)
    assert (report.evaluated, report.stopped) == (0, report.stopped)
    assert report.stopped == "the space has 2 points; all are done"


@gen_cluster(client=True)
async def test_a_source_proposing_only_known_sets_ends_saying_so(c, s, a, b):
    search = Search("cycle", constant, "sqlite://", client=c)
    source = itertools.cycle([{"a": 0}, {"a": 1}])
    report = await asyncio.wait_for(call(search.run, source, progress=False), 30)
    assert report.evaluated == 2
    assert report.stopped.startswith("the source proposed only known parameter sets")


def _slow_repeats():
    yield {"a": 0}
    while True:
        time.sleep(0.05)
        yield {"a": 0}


@gen_cluster(client=True)
async def test_timeout_ends_a_source_that_keeps_proposing(c, s, a, b):
    search = Search("slow", constant, "sqlite://", client=c)
    run = call(search.run, _slow_repeats(), timeout=0.5, progress=False)
    report = await asyncio.wait_for(run, 20)
    assert report.stopped == "timeout"


class _StoreThatCannotRelease(TrialStore):
    def release(self, search_id, driver_id):
        raise RuntimeError("the store's write failed")


def always_fails(params):
    raise FloatingPointError("diverged")


@gen_cluster(client=True)
async def test_the_loops_error_wins_over_the_clean_ups(c, s, a, b):
    store = _StoreThatCannotRelease("sqlite://")
    search = Search("first", always_fails, store, client=c)
    with pytest.raises(TooManyFailuresError, match="max_failures=1") as info:
        await call(search.run, [{"a": 0}, {"a": 1}], max_failures=1, progress=False)
    notes = "\n".join(info.value.__notes__)
    assert "while cleaning up after this error, RuntimeError" in notes
    assert "the store's write failed" in notes
    # with no error in the loop, the clean-up's own error is raised
    fine = Search("fine", constant, store, client=c)
    with pytest.raises(RuntimeError, match="the store's write failed"):
        await call(fine.run, [{"a": 0}], progress=False)


@gen_cluster(client=True)
async def test_a_run_whose_every_trial_failed_warns(c, s, a, b):
    search = Search("diverges", always_fails, "sqlite://", client=c)
    with pytest.warns(RuntimeWarning) as caught:
        report = await call(search.run, [{"a": 0}, {"a": 1}], progress=False)
    assert (report.failed, report.evaluated) == (2, 0)
    (warning,) = [w for w in caught if "every trial" in str(w.message)]
    assert str(warning.message) == (
        "every trial of this run of search 'diverges' failed (2); the first: "
        "FloatingPointError: diverged; search.trials(status='failed') has their "
        "tracebacks"
    )
    with pytest.raises(
        DasktuneError, match=r"its trials are 2 failed; trials\(status="
    ):
        search.best  # noqa: B018
    # a run with one success does not warn
    fine = Search("fine", constant, "sqlite://", client=c)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        await call(fine.run, [{"a": 0}], progress=False)


@gen_cluster(client=True)
async def test_progress_bar_has_the_grids_total(c, s, a, b, capsys):
    search = Search("bar", score, "sqlite://", client=c)
    grid = ParameterGrid({"C": [0.1, 1, 10], "kernel": ["rbf", "linear"]})
    await call(search.run, grid, progress=True)
    assert "6/6" in capsys.readouterr().err
    # a re-run reuses every trial: the bar still counts them all
    await call(search.run, grid, progress=True)
    assert "6/6" in capsys.readouterr().err


def test_survivor_takes_over_a_killed_drivers_trials(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    logs = [tmp_path / "killed.log", tmp_path / "survivor.log"]
    killed, survivor = (_launch(url, log, 0.1, stale_after=3.0) for log in logs)
    # midway: both drivers evaluating, most trials still to do
    poll_until(
        lambda: (
            killed.poll() is not None
            or all(log.exists() and len(log.read_text().split()) >= 3 for log in logs)
        ),
        what="both drivers to have evaluated 3 trials",
        timeout=60,
    )
    assert killed.poll() is None
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait(timeout=30)
    done_before = _done_params(url)
    out, _ = survivor.communicate(timeout=60)
    assert survivor.returncode == 0 and "finished" in out
    assert _done_params(url) == set(range(40))
    store = TrialStore(url)
    try:
        sid = store.find_search("shared")["id"]
        assert {r["status"] for r in store.trials(sid)} == {"done"}
    finally:
        store.close()
    # nothing done evaluated again, and the survivor evaluated each set once
    theirs = collections.Counter(logs[1].read_text().split())
    assert set(theirs.values()) == {1}
    both = collections.Counter(int(k) for log in logs for k in log.read_text().split())
    assert all(both[i] == 1 for i in done_before)


def test_provenance_is_kept_from_the_search_that_made_it(monkeypatch):
    # a reader re-opening a search neither works provenance out again (git,
    # package versions) nor changes what the search keeps of it
    import dasktune.search as search_module

    calls = []

    def counted(objective):
        calls.append(objective)
        return {"made_by": len(calls)}

    monkeypatch.setattr(search_module, "provenance", counted)
    first = Search("kept", constant, "sqlite://")
    Search("kept", constant, first.store)
    assert len(calls) == 1
    assert json.loads(first.store.find_search("kept")["metadata"]) == {"made_by": 1}


def _record(store, sid, xs, status=TrialStatus.DONE):
    """Claim the trials ``{"x": x}`` and record them (straight to the store)."""
    driver = store.register_driver(sid)
    claims = [Claim(h, record) for record, h in map(canonical, ({"x": x} for x in xs))]
    store.sync(sid, driver, [], claims)
    outcomes = [
        Outcome(c.param_hash, status, value=float(c.params["x"])) for c in claims
    ]
    store.sync(sid, driver, outcomes, [])
    return claims


def test_a_new_reader_starts_from_the_stores_snapshot(tmp_path, monkeypatch):
    monkeypatch.setattr(search_module, "SNAPSHOT_ROWS", 50)
    url = f"sqlite:///{tmp_path}/s.db"
    first = Search("snap", score, url)
    sid = first.search_id
    _record(first.store, sid, range(30))
    first.trials()  # 30 rows: fewer than SNAPSHOT_ROWS, none kept
    assert first.store.read_snapshot(sid) is None
    _record(first.store, sid, range(30, 120))
    driver = first.store.register_driver(sid)
    running = Claim(*reversed(canonical({"x": -1})))
    first.store.sync(sid, driver, [], [running])
    assert first.trials()["status"].tolist()[-1] == "running"
    seq, _ = first.store.read_snapshot(sid)  # 91 more rows read: kept
    # rows written after it: new trials, and the running one's outcome
    _record(first.store, sid, range(120, 130))
    done = Outcome(running.param_hash, TrialStatus.DONE, value=-1.0)
    first.store.sync(sid, driver, [done], [])
    reads = []
    read_columns = TrialStore.read_columns

    def spy(store, search_id, *, since=None):
        reads.append(since)
        return read_columns(store, search_id, since=since)

    monkeypatch.setattr(TrialStore, "read_columns", spy)
    reader = Search("snap", score, url)
    frame = reader.trials()
    assert reads == [seq]  # the snapshot, then only the rows after it
    monkeypatch.setattr(TrialStore, "read_snapshot", lambda *_: None)
    whole = Search("snap", score, url).trials()
    assert reads[-1] == 0  # this one read every row
    pd.testing.assert_frame_equal(frame, whole)
    assert len(frame) == 131 and frame["status"].tolist()[120] == "done"
    assert frame["value"].tolist()[120] == -1.0
    for s in (first, reader):
        s.close()


def test_a_damaged_snapshot_is_skipped(tmp_path, monkeypatch):
    monkeypatch.setattr(search_module, "SNAPSHOT_ROWS", 5)
    url = f"sqlite:///{tmp_path}/s.db"
    search = Search("snap", score, url)
    _record(search.store, search.search_id, range(10))
    whole = search.trials()
    _, data = search.store.read_snapshot(search.search_id)
    with sqlite3.connect(f"{tmp_path}/s.db") as raw:
        raw.execute("UPDATE trial_snapshots SET data = ?", (data[: len(data) // 2],))
    with pytest.warns(RuntimeWarning, match="snapshot of search 1 is skipped"):
        again = Search("snap", score, url).trials()
    pd.testing.assert_frame_equal(again, whole)
    search.close()


@gen_cluster(client=True)
async def test_a_run_with_filters_keeps_its_table_as_the_snapshot(c, s, a, b):
    search_module.SNAPSHOT_ROWS, before = 3, search_module.SNAPSHOT_ROWS
    try:
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite:///{folder}/s.db"
            search = Search("snap", score, url, client=c)
            grid = [{"C": C, "kernel": "rbf"} for C in range(8)]
            await call(search.run, grid[:4], progress=False)  # no filters
            assert search.store.read_snapshot(search.search_id) is None
            await call(search.run, grid, filters=[_seen_rows_and_keep],
                       progress=False)  # fmt: skip
            seq, _ = search.store.read_snapshot(search.search_id)
            assert seq == search.store.read_columns(search.search_id)[0]
            search.close()
    finally:
        search_module.SNAPSHOT_ROWS = before


@gen_cluster(client=True, timeout=120)
async def test_n_trials_counts_the_trials_taken_over(c, s, a, b):
    # trials first held by a live driver, then abandoned by it, are taken
    # over within the run's n_trials: at most n_trials evaluations in all
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/s.db"
        search = Search("takeover", score, url, client=c, stale_after=1.0)
        grid = [{"C": float(i), "kernel": "rbf"} for i in range(20)]
        holder_store = TrialStore(url)
        sid = holder_store.find_search("takeover")["id"]
        holder = holder_store.register_driver(sid)
        held = [Claim(*reversed(canonical(p))) for p in grid[:10]]
        assert {d.kind for d in holder_store.sync(sid, holder, [], held)} == {
            "evaluate"
        }
        stop = threading.Event()

        def beat() -> None:
            # alive until the run, having met its trials held, claims others
            while not stop.wait(0.05) and len(holder_store.trials(sid)) == 10:
                holder_store.heartbeat(holder)

        beating = threading.Thread(target=beat)
        beating.start()
        try:
            report = await call(search.run, grid, n_trials=10)
        finally:
            stop.set()
            beating.join(timeout=30)
            holder_store.close()
        assert sum(_evaluated.values()) == 10
        assert report.stopped == "n_trials"
        done = search.trials(status="done")
        assert len(done) == 10
        search.close()
