"""The partial_fit searches recorded in a store: curves, ends, resume.

The kill test drives its own cluster in a subprocess (tests/hyperband_script.py).
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from distributed.utils_test import gen_cluster
from scipy.stats import loguniform
from sklearn.datasets import load_digits
from sklearn.linear_model import SGDClassifier

from dasktune.optim.pruners import SuccessiveHalvingPruner
from dasktune.sklearn import HyperbandSearchCV, SuccessiveHalvingSearchCV
from dasktune.sklearn.ledger import Ledger
from dasktune.store.sql import TrialStore
from tests.subprocesses import launch

X, Y = load_digits(return_X_y=True)
PARAMS = {"alpha": loguniform(1e-6, 1e0), "penalty": ["l2", "l1"]}
SCRIPT = Path(__file__).with_name("hyperband_script.py")


def _sgd() -> SGDClassifier:
    return SGDClassifier(tol=None, random_state=0)


def _replayed(history, max_iter: int) -> dict[int, str]:
    """The decisions ASHA takes on these (model, calls, score) in this order."""
    pruner = SuccessiveHalvingPruner(1, 3, max_resource=max_iter, direction="maximize")
    decisions = {}
    for model, calls, score in history:
        if calls >= max_iter:
            decisions[model] = f"trained to max_iter={max_iter}"
            continue
        verdict = pruner.report(model, calls, score)
        if verdict:
            decisions[model] = verdict.reason
    return decisions


@gen_cluster(client=True, timeout=240)
async def test_scores_are_recorded_and_a_fit_again_trains_nothing_decided(
    c, s, a, b, tmp_path_factory
):
    url = f"sqlite:///{tmp_path_factory.mktemp('store')}/hb.db"

    def search(**kwargs):
        return HyperbandSearchCV(
            _sgd(), PARAMS, max_iter=9, random_state=0, store=url, client=c, **kwargs
        )

    first = await asyncio.to_thread(search().fit, X, Y)
    n = len(first.cv_results_["params"])
    assert first.n_models_reused_ == 0
    assert first.n_partial_fit_calls_run_ == first.n_partial_fit_calls_
    assert first.search_name_.startswith("SGDClassifier@")
    # every score is the model's curve in the store (step = partial_fit calls);
    # each model's end is its status, its last score its value
    store = TrialStore(url)
    try:
        row = store.find_search(first.search_name_)
        curves = store.curves(row["id"])
        trials = {t["params"]["model_id"]: t for t in store.trials(row["id"])}
    finally:
        store.close()
    assert len(trials) == n
    for i, records in first.model_history_.items():
        number = trials[i]["number"]
        assert curves[number] == [(r["partial_fit_calls"], r["score"]) for r in records]
        done = records[-1]["partial_fit_calls"] == 9
        assert trials[i]["status"] == ("done" if done else "pruned")
        assert trials[i]["value"] == records[-1]["score"]
        assert trials[i]["aux"]["decision"] == first.decisions_[i]
        if not done:
            assert trials[i]["error"] == first.decisions_[i]
    # run again: every model is reused, only the best is trained again (models
    # are not stored) and it is the same model
    again = await asyncio.to_thread(search().fit, X, Y)
    assert again.search_name_ == first.search_name_
    assert again.n_models_reused_ == n
    best_calls = first.cv_results_["partial_fit_calls"][first.best_index_]
    assert again.n_partial_fit_calls_run_ == best_calls
    assert again.decisions_ == first.decisions_
    for key in ("test_score", "partial_fit_calls", "rank_test_score", "bracket"):
        np.testing.assert_array_equal(again.cv_results_[key], first.cv_results_[key])
    assert [(r["model_id"], r["score"]) for r in again.history_] == [
        (r["model_id"], r["score"]) for r in first.history_
    ]
    assert again.best_index_ == first.best_index_
    np.testing.assert_array_equal(
        again.best_estimator_.coef_, first.best_estimator_.coef_
    )
    # other data: another search, nothing reused
    other = await asyncio.to_thread(search().fit, X[:-1], Y[:-1])
    assert other.search_name_ != first.search_name_
    assert other.n_models_reused_ == 0


@pytest.mark.parametrize("store", [3, ["sqlite://"]])
def test_a_store_of_the_wrong_type_is_refused_before_any_cluster(store):
    search = SuccessiveHalvingSearchCV(
        _sgd(), PARAMS, store=store, client="tcp://127.0.0.1:1"
    )
    with pytest.raises(TypeError, match="store must be a SQLAlchemy URL"):
        search.fit(X, Y)


# -- a driver killed half-way --------------------------------------------------


def _state(url: str) -> tuple[int, int]:
    """Models ended, and models still training that have scores stored."""
    store = TrialStore(url)
    try:
        found = [s for s in store.list_searches() if s["name"].startswith("resume@")]
        if not found:
            return 0, 0
        trials = store.trials(found[0]["id"])
        curves = store.curves(found[0]["id"])
    finally:
        store.close()
    ended = sum(t["status"] in ("done", "pruned") for t in trials)
    started = sum(t["status"] == "running" and t["number"] in curves for t in trials)
    return ended, started


def _stored(url: str) -> dict[int, dict]:
    """The models ended in the store, by model id."""
    store = TrialStore(url)
    try:
        (found,) = [s for s in store.list_searches() if s["name"].startswith("resume@")]
        trials = store.trials(found["id"])
    finally:
        store.close()
    return {
        t["params"]["model_id"]: t for t in trials if t["status"] in ("done", "pruned")
    }


def _launch(url: str, log: Path, sleep: float) -> subprocess.Popen:
    return launch(SCRIPT, url, env={"FIT_LOG": str(log), "STEP_SLEEP": str(sleep)})


@pytest.mark.timeout(600)  # two driver processes starting scikit-learn and Dask
def test_a_killed_fit_reuses_the_models_that_ended(tmp_path):
    url, log = f"sqlite:///{tmp_path}/hb.db", tmp_path / "calls.log"
    proc = _launch(url, log, 0.1)
    deadline = time.monotonic() + 300
    while True:  # models ended, and others half-way with scores stored
        ended, started = _state(url)
        if ended >= 6 and started >= 1:
            break
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    before = _stored(url)
    calls_before = collections.Counter(log.read_text().splitlines())
    assert 6 <= len(before) < 24
    again = _launch(url, log, 0.0)
    out, _ = again.communicate(timeout=300)
    assert again.returncode == 0, out
    result = json.loads(out.strip().splitlines()[-1])
    calls_after = collections.Counter(log.read_text().splitlines()) - calls_before
    params, models = result["params"], result["models"]
    # the models that ended were taken from the store as they were
    assert result["reused"] == len(before)
    for i, trial in before.items():
        stored = [[r["partial_fit_calls"], r["score"]] for r in trial["aux"]["history"]]
        assert models[str(i)] == stored
        assert result["decisions"][str(i)] == trial["aux"]["decision"]
    # ... and not trained again (the best, if one of them, is: models are not
    # stored); the others were trained from step 0, once, to their end (a
    # model whose end was decided but not yet recorded when the driver died
    # ends when its scores are replayed: trained no more either)
    best = result["best_index"]
    for i, name in enumerate(params):
        last_calls = models[str(i)][-1][0]
        trained = i not in before and result["timed"][str(i)][-1]
        expected = last_calls if trained or i == best else 0
        assert calls_after[name] == expected, (i, name)
    assert result["calls_run"] == sum(calls_after.values())
    # every decision is ASHA's on the scores in the order it got them
    assert _replayed(result["history"], 27) == {
        int(k): v for k, v in result["decisions"].items()
    }
    # the best model is the one scored (trained again the same, if reused)
    assert result["held_out"] == result["best_score"]


@gen_cluster(client=True, timeout=240)
async def test_scores_stored_without_their_ends_are_decided_again_the_same(
    c, s, a, b, tmp_path_factory
):
    # a driver that died after storing every score but before any end: the
    # stored scores, replayed through a new pruner in their order, decide
    # every end as it was decided, and no model is trained again
    folder = tmp_path_factory.mktemp("stores")
    full, cut = f"sqlite:///{folder}/full.db", f"sqlite:///{folder}/cut.db"

    def search(url):
        return SuccessiveHalvingSearchCV(
            _sgd(), PARAMS, n_initial_parameters=20, max_iter=27,
            random_state=0, store=url, client=c,
        )  # fmt: skip

    first = await asyncio.to_thread(search(full).fit, X, Y)
    candidates = first.cv_results_["params"]
    store = TrialStore(cut)
    try:
        ledger = Ledger(store, first.search_name_, candidates, {})
        ledger.claim()
        order = [
            (r["model_id"], r["partial_fit_calls"], r["score"]) for r in first.history_
        ]
        ledger.write([ledger.report(*report) for report in order], [])
        ledger.close()  # the models go back to queued, their ends unknown
    finally:
        store.close()
    again = await asyncio.to_thread(search(cut).fit, X, Y)
    assert again.search_name_ == first.search_name_
    assert again.n_models_reused_ == 0  # none had ended in the store
    assert again.decisions_ == first.decisions_
    best_calls = first.cv_results_["partial_fit_calls"][first.best_index_]
    assert again.n_partial_fit_calls_run_ == best_calls  # only the best, for its model
    np.testing.assert_array_equal(
        again.cv_results_["test_score"], first.cv_results_["test_score"]
    )
    # the ends are recorded now
    store = TrialStore(cut)
    try:
        statuses = {
            t["status"]
            for t in store.trials(store.find_search(again.search_name_)["id"])
        }
    finally:
        store.close()
    assert statuses <= {"done", "pruned"}
