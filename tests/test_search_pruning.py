"""Search.run(pruner=...): trials that report, stopped early, recorded, resumed."""

from __future__ import annotations

import asyncio
import collections
import math
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
from distributed.utils_test import gen_cluster

import dasktune
from dasktune import Search
from dasktune.optim.base import Optimizer
from dasktune.optim.pruners import Pruner, SuccessiveHalvingPruner, Verdict
from dasktune.store import TrialStore
from tests.clusters import local_client
from tests.dying import kill_once
from tests.waiting import poll_until

EPOCHS = 30
SCRIPT = Path(__file__).with_name("prune_script.py")

# epochs actually run, by the trial's "rate" (the workers are in this process)
_lock = threading.Lock()
epochs_run: collections.Counter[float] = collections.Counter()


def _epochs(params, trial, *, pause, until=None):
    """A training loop: reports each epoch, stops when the pruner says so;
    ``until(params, trial, epoch)`` runs after each report."""
    loss = math.inf
    for epoch in range(EPOCHS):
        with _lock:
            epochs_run[params["rate"]] += 1
        loss = params["rate"] / (epoch + 1)
        trial.report(epoch, loss)
        if until is not None:
            until(params, trial, epoch)
        if trial.should_prune():
            raise dasktune.TrialPruned
        time.sleep(pause)
    return loss


def train(params, trial):
    """A training loop: reports each epoch, stops when the pruner says so."""
    # a stop has 10 ms an epoch to arrive, also under load
    return _epochs(params, trial, pause=0.01)


def _until_stopped_above_one(params, trial, epoch):
    """Where :class:`StopAboveOne` stops a trial, wait for its decision to
    arrive (however long that takes on a loaded machine)."""
    if epoch == 3 and params["rate"] > 1.0:
        poll_until(
            trial.should_prune,
            what=f"the stop of trial {trial.number} at step 3",
            timeout=20,
        )


def train_stopped_above_one(params, trial):
    """:func:`train`, waiting at step 3 for :class:`StopAboveOne`'s stop."""
    return _epochs(params, trial, pause=0.01, until=_until_stopped_above_one)


def train_and_return(params, trial):
    """Obeys a stop by returning its loss instead of raising."""
    loss = math.inf
    for epoch in range(EPOCHS):
        loss = params["rate"] / (epoch + 1)
        trial.report(epoch, loss)
        _until_stopped_above_one(params, trial, epoch)
        if trial.should_prune():
            return loss
        time.sleep(0.01)
    return loss


def plain(params):
    return params["rate"]


def reports_badly(params, trial):
    trial.report(0, 1.0)
    if params["kind"] == "nan":
        trial.report(1, math.nan)
    trial.report(0, 0.5)
    return 0.0


class StopAboveOne(Pruner):
    """Stops a trial whose rate is above 1 at step 3: decisions known ahead."""

    def _decide(self, number, step):
        curve = self.curves[number]
        return Verdict(step >= 3 and curve[0] > 1.0, f"rate above 1 at step {step}")


class Recording(Optimizer):
    """Proposes a list, then records what it is told."""

    def __init__(self, params):
        super().__init__()
        self.todo = list(params)
        self.told: dict[float, float] = {}

    def _ask(self):
        return self.todo.pop(0) if self.todo else None

    def _tell(self, number, params, value):
        self.told[params["rate"]] = value

    @property
    def finished(self):
        return not self.todo and not self.n_pending


def call(fn, *args, **kwargs):
    return asyncio.to_thread(fn, *args, **kwargs)


@gen_cluster(client=True, timeout=60)
async def test_pruned_trials_stop_early_and_are_recorded_with_their_curves(c, s, a, b):
    epochs_run.clear()
    rates = [0.5, 0.75, 2.0, 3.0, 4.0]
    pruner = StopAboveOne()
    search = Search("prune", train_stopped_above_one, "sqlite://", client=c)
    optimizer = Recording([{"rate": r} for r in rates])
    report = await call(search.run, optimizer, pruner=pruner, progress=False)
    assert (report.evaluated, report.pruned, report.failed) == (2, 3, 0)
    # the good ones ran whole; the bad ones stopped at step 3
    assert epochs_run[0.5] == epochs_run[0.75] == EPOCHS
    for rate in (2.0, 3.0, 4.0):
        assert epochs_run[rate] == 4
    frame = search.trials().set_index("rate")
    curves = search.store.curves(search.search_id)
    for rate in rates:
        row = frame.loc[rate]
        curve = curves[row["number"]]
        # every step reported is stored, once, in order
        assert [st for st, _ in curve] == list(range(int(row["step"]) + 1))
        assert row["value"] == pytest.approx(curve[-1][1])
        if rate > 1:
            assert row["status"] == "pruned"
            assert row["error"].startswith("rate above 1 at step")
            # the optimizer is told the last value the trial reported
            assert optimizer.told[rate] == pytest.approx(curve[-1][1])
        else:
            assert (row["status"], row["step"]) == ("done", EPOCHS - 1)
            assert optimizer.told[rate] == pytest.approx(rate / EPOCHS)
    # done trials are passed to pruner.complete; the best ignores pruned ones
    assert pruner.completed == {frame.loc[0.5, "number"], frame.loc[0.75, "number"]}
    assert search.best.params == {"rate": 0.5}

    # a re-run reuses every trial: a pruned one is told its last value again
    again = Recording([{"rate": r} for r in rates])
    report = await call(search.run, again, pruner=StopAboveOne(), progress=False)
    assert (report.evaluated, report.pruned, report.reused) == (0, 0, 5)
    assert again.told == pytest.approx(optimizer.told)
    search.close()


def learn(params, trial):
    """An accuracy that rises to the trial's skill: higher is better."""
    score = 0.0
    for epoch in range(EPOCHS):
        score = params["skill"] * (1 - 1 / (epoch + 2))
        trial.report(epoch, score)
        if epoch == 1 and params["skill"] < 0.5:  # weak: the median stops it here
            poll_until(
                trial.should_prune,
                what=f"the stop of trial {trial.number} at step 1",
                timeout=20,
            )
        if trial.should_prune():
            raise dasktune.TrialPruned
        time.sleep(0.01)  # a stop has 10 ms an epoch to arrive, also under load
    return score


@gen_cluster(client=True, timeout=60)
async def test_a_pruner_takes_a_maximised_searchs_direction(c, s, a, b):
    from dasktune.optim.pruners import MedianPruner

    skills = [0.9, 0.8, 0.2, 0.95, 0.1]
    search = Search("accuracy", learn, "sqlite://", client=c, direction="maximize")
    pruner = MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    await call(search.run, [{"skill": k} for k in skills], pruner=pruner,
               max_in_flight=1, progress=False)  # fmt: skip
    assert pruner.direction == "maximize"
    status = dict(search.trials()[["skill", "status"]].itertuples(index=False))
    # the weak ones stopped, the best kept (minimising, it was the other way round)
    assert status == {0.9: "done", 0.8: "done", 0.2: "pruned", 0.95: "done",
                      0.1: "pruned"}  # fmt: skip
    assert search.best.params == {"skill": 0.95}
    # a pruner given the other direction is refused before anything runs
    with pytest.raises(ValueError, match="it would stop the best trials"):
        await call(search.run, [{"skill": 0.5}],
                   pruner=MedianPruner(direction="minimize"), progress=False)  # fmt: skip
    assert len(search.trials()) == len(skills)
    search.close()


@gen_cluster(client=True, timeout=60)
async def test_asha_spends_fewer_epochs_and_keeps_the_best(c, s, a, b):
    epochs_run.clear()
    rates = [0.5 + 0.25 * i for i in range(12)]
    search = Search("asha", train, "sqlite://", client=c)
    report = await call(
        search.run,
        [{"rate": r} for r in rates],
        pruner=SuccessiveHalvingPruner(min_resource=2, reduction_factor=3),
        max_in_flight=2,
        progress=False,
    )
    assert report.pruned >= 6
    assert sum(epochs_run.values()) < 0.6 * EPOCHS * len(rates)
    assert search.best.params == {"rate": 0.5}
    search.close()


@gen_cluster(client=True, timeout=60)
async def test_a_stopped_trial_that_returns_is_recorded_pruned(c, s, a, b):
    search = Search("returns", train_and_return, "sqlite://", client=c)
    await call(
        search.run,
        [{"rate": 0.5}, {"rate": 3.0}],
        pruner=StopAboveOne(),
        progress=False,
    )
    frame = search.trials().set_index("rate")
    assert list(frame["status"]) == ["done", "pruned"]
    assert frame.loc[3.0, "step"] < EPOCHS - 1
    assert frame.loc[3.0, "error"].startswith("rate above 1")
    search.close()


@gen_cluster(client=True, timeout=60)
async def test_reports_without_a_pruner_are_still_recorded(c, s, a, b):
    search = Search("curves", train, "sqlite://", client=c)
    await call(search.run, [{"rate": 1.0}], progress=False)
    frame = search.trials()
    assert (frame.loc[0, "status"], frame.loc[0, "step"]) == ("done", EPOCHS - 1)
    assert len(search.store.curves(search.search_id)[0]) == EPOCHS
    search.close()


@gen_cluster(client=True, timeout=60)
async def test_bad_reports_fail_their_trial_with_a_clear_error(c, s, a, b):
    search = Search("bad", reports_badly, "sqlite://", client=c)
    report = await call(
        search.run,
        [{"kind": "nan"}, {"kind": "back"}],
        pruner=StopAboveOne(),
        progress=False,
    )
    assert report.failed == 2
    errors = search.trials().set_index("kind")["error"]
    assert "value must be finite, got nan at step 1" in errors["nan"]
    assert "reported step 0 after step 0" in errors["back"]
    search.close()


def test_a_pruner_needs_an_objective_that_reports(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    with Search("plain", plain, url, client="tcp://127.0.0.1:1") as search:
        # raised before any client is made or anything submitted
        with pytest.raises(TypeError, match="takes no 'trial' argument"):
            search.run([{"rate": 1.0}], pruner=StopAboveOne(), progress=False)
        with pytest.raises(TypeError, match="pruner must be a dasktune.optim"):
            search.run([{"rate": 1.0}], pruner="median", progress=False)
        assert search.store.trials(search.search_id) == []
        assert search.store.runs(search.search_id) == []


def fails_small_rates(params, trial):
    if params["rate"] < 1:
        raise ValueError("too small")
    return train(params, trial)


@gen_cluster(client=True, timeout=60)
async def test_a_run_of_pruned_and_failed_trials_does_not_warn_all_failed(c, s, a, b):
    search = Search("mixed", fails_small_rates, "sqlite://", client=c)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        report = await call(search.run, [{"rate": r} for r in (0.5, 2.0, 3.0)],
                            pruner=StopAboveOne(), progress=False)  # fmt: skip
    assert (report.failed, report.pruned, report.evaluated) == (1, 2, 0)
    search.close()


def optuna_style(trial):
    return trial.suggest_float("x", 0, 1)


def test_a_positional_only_first_argument_named_trial_is_the_params():
    from dasktune.run.report import check_trial_first, wants_trial

    def objective(trial, /):  # called objective(params): fine, if oddly named
        return trial["x"]

    check_trial_first(objective)
    assert not wants_trial(objective)


def test_an_optuna_style_objective_is_refused_before_anything_runs(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    with Search("optuna", optuna_style, url, client="tcp://127.0.0.1:1") as search:
        # raised before any client is made or anything submitted
        with pytest.raises(TypeError, match=r"optuna_style\(trial, \.\.\.\) takes the "
                           r"trial first.*def optuna_style\(params\)"):  # fmt: skip
            search.run([{"x": 0.5}], progress=False)
        assert search.store.trials(search.search_id) == []
        assert search.store.runs(search.search_id) == []


# -- a driver killed, then resumed; a worker killed mid-trial -------------------


def _final(url: str) -> dict[int, str]:
    store = TrialStore(url)
    try:
        found = store.find_search("pruned")
        if found is None:
            return {}
        return {
            r["params"]["i"]: r["status"]
            for r in store.trials(found["id"])
            if r["status"] in ("done", "pruned")
        }
    finally:
        store.close()


def prune_script_grid() -> list[dict[str, int]]:
    return [{"i": i} for i in range(16)]  # prune_script.GRID


def test_a_killed_driver_resumes_without_rerunning_final_trials(tmp_path):
    url, log = f"sqlite:///{tmp_path}/s.db", tmp_path / "epochs.log"
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), url, str(log)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    poll_until(
        lambda: len(_final(url)) >= 6 or proc.poll() is not None,
        what="6 trials final in the driver's store",
        timeout=90,
    )
    assert proc.poll() is None
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    before = _final(url)
    assert len(before) < len(prune_script_grid())
    assert "pruned" in before.values() and "done" in before.values()
    started = collections.Counter(
        line.split()[0] for line in log.read_text().splitlines() if line.endswith(" 0")
    )
    # the same search again, in this process, with a fresh pruner
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import prune_script
    finally:
        sys.path.remove(str(SCRIPT.parent))
    pruner = prune_script.make_pruner()
    with (
        local_client(1, 2, processes=False) as client,
        Search("pruned", prune_script.make_objective(str(log)), url, client=client)
        as search,
    ):  # fmt: skip
        search.run(prune_script.GRID, pruner=pruner, progress=False)
        statuses = set(search.trials()["status"])
    assert statuses <= {"done", "pruned"}
    # the pruner was rebuilt from the store: it holds the curves of trials it
    # never saw run, and knows the done ones
    store = TrialStore(url)
    found = store.find_search("pruned")
    assert found is not None
    numbers = {r["params"]["i"]: r["number"] for r in store.trials(found["id"])}
    store.close()
    assert {numbers[i] for i in before} <= set(pruner.curves)
    assert {numbers[i] for i, st in before.items() if st == "done"} <= pruner.completed
    # a trial final before the kill never started again
    again = collections.Counter(
        line.split()[0] for line in log.read_text().splitlines() if line.endswith(" 0")
    )
    for i in before:
        assert again[str(i)] == started[str(i)] == 1
    assert set(_final(url)) == {p["i"] for p in prune_script.GRID}


def test_a_worker_killed_mid_trial_loses_no_report(tmp_path):
    marker = tmp_path / "killed"
    with (
        local_client(2, 1) as client,
        Search("killed", kill_once, "sqlite://", client=client) as search,
    ):  # fmt: skip
        report = search.run(
            [{"marker": str(marker)}], pruner=StopAboveOne(), progress=False
        )
        assert marker.exists()  # a worker died in the trial
        assert report.evaluated == 1
        frame = search.trials()
        assert (frame.loc[0, "status"], frame.loc[0, "step"]) == ("done", 7)
        # the re-run's steps 0-3 counted once
        curve = search.store.curves(search.search_id)[0]
        assert [st for st, _ in curve] == list(range(8))
