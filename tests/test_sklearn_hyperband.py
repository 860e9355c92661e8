"""dasktune.sklearn's SuccessiveHalvingSearchCV and HyperbandSearchCV."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from distributed.utils_test import async_poll_for, gen_cluster
from scipy.stats import loguniform
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import accuracy_score
from sklearn.model_selection import ParameterGrid, ParameterSampler, train_test_split
from sklearn.svm import SVC

from dasktune.optim.pruners import SuccessiveHalvingPruner
from dasktune.sklearn import HyperbandSearchCV, SuccessiveHalvingSearchCV

X, Y = load_digits(return_X_y=True)
PARAMS = {"alpha": loguniform(1e-6, 1e0), "penalty": ["l2", "l1"]}


def _sgd() -> SGDClassifier:
    return SGDClassifier(tol=None, random_state=0)


def _held_out_accuracy(search, model) -> float:
    """The model's accuracy on the split the search scored on."""
    _, test = train_test_split(
        np.arange(len(X)), test_size=search.test_size, random_state=search.random_state
    )
    return accuracy_score(Y[test], model.predict(X[test]))


@gen_cluster(client=True, timeout=180)
async def test_successive_halving_on_digits_is_a_search_estimator(c, s, a, b):
    search = SuccessiveHalvingSearchCV(
        _sgd(), PARAMS, n_initial_parameters=20, max_iter=27, random_state=0, client=c
    )
    await asyncio.to_thread(search.fit, X, Y)
    results = search.cv_results_
    # the candidates are scikit-learn's ParameterSampler's
    assert results["params"] == list(ParameterSampler(PARAMS, 20, random_state=0))
    assert list(results["param_penalty"]) == [p["penalty"] for p in results["params"]]
    # ASHA's rungs at 1, 3, 9 calls, then max_iter; most models stop at the first
    calls = results["partial_fit_calls"]
    assert set(calls) <= {1, 3, 9, 27} and 27 in calls
    assert (calls == 1).sum() >= 10
    assert search.n_partial_fit_calls_ == calls.sum() < 20 * 27 / 3
    # best_* are the best final score's; the model is the one scored
    assert search.best_score_ == results["test_score"].max()
    assert results["rank_test_score"][search.best_index_] == 1
    assert search.best_params_ == results["params"][search.best_index_]
    model = search.best_estimator_
    assert (
        isinstance(model, SGDClassifier) and model.alpha == search.best_params_["alpha"]
    )
    assert _held_out_accuracy(search, model) == search.best_score_ > 0.9
    assert search.score(X, Y) == accuracy_score(Y, search.predict(X))
    assert search.decision_function(X).shape == (len(X), 10)
    # every score recorded; each model's history ends where its calls ended
    assert len(search.history_) == sum(len(h) for h in search.model_history_.values())
    for i, history in search.model_history_.items():
        assert history[-1]["partial_fit_calls"] == calls[i]
        # a stop is decided before the next step is sent: no call past the rung
        if calls[i] < 27:
            assert search.decisions_[i].endswith("not in it")
            assert f"(step {calls[i]})" in search.decisions_[i]
        else:
            assert search.decisions_[i] == "trained to max_iter=27"
    # nothing left on the cluster: the data and the models are released
    await async_poll_for(lambda: not s.tasks, timeout=10)


@gen_cluster(client=True, timeout=180)
async def test_hyperband_runs_dask_mls_brackets(c, s, a, b):
    search = HyperbandSearchCV(_sgd(), PARAMS, max_iter=27, random_state=0, client=c)
    assert search.bracket_sizes() == [27, 12, 6, 4]
    await asyncio.to_thread(search.fit, X, Y)
    results = search.cv_results_
    assert len(results["params"]) == 49
    brackets = results["bracket"]
    assert set(brackets) == {0, 1, 2, 3}
    for bracket, calls in zip(brackets, results["partial_fit_calls"], strict=True):
        # bracket b's rungs are at 3**b, 3**(b+1), ... below 27
        assert calls in [3**k for k in range(bracket, 3)] + [27]
    # the last bracket prunes nothing: its models all train to max_iter
    assert (results["partial_fit_calls"][brackets == 3] == 27).all()
    assert search.n_partial_fit_calls_ < 49 * 27 / 3
    assert _held_out_accuracy(search, search.best_estimator_) == search.best_score_
    assert search.best_score_ > 0.9


@gen_cluster(client=True)
async def test_an_estimator_without_partial_fit_is_refused_before_any_fit(c, s, a, b):
    for cls in (SuccessiveHalvingSearchCV, HyperbandSearchCV):
        search = cls(SVC(), {"C": [1, 10]}, client=c)
        with pytest.raises(TypeError, match="SVC has none; give an estimator"):
            await asyncio.to_thread(search.fit, X, Y)
    assert not s.tasks and not s.task_prefixes  # nothing was sent


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"parameters": {"nope": loguniform(1, 2)}}, ValueError, "nope"),
        ({"parameters": {"alpha": []}}, ValueError, "alpha"),
        ({"parameters": {}}, ValueError, "parameters is empty"),
        ({"aggressiveness": 1}, ValueError, "aggressiveness must be an int >= 2"),
        ({"max_iter": 0}, ValueError, "max_iter must be an int >= 1"),
        ({"test_size": 2}, ValueError, r"test_size must be a float in \(0, 1\)"),
        ({"n_initial_iter": 50}, ValueError, "beyond max_iter=27"),
        ({"scoring": "no-such-scorer"}, ValueError, "no-such-scorer"),
        (
            {"scoring": ["accuracy", "f1_macro"]},
            ValueError,
            r"several scorers \(accuracy, f1_macro\), give refit= the name",
        ),
        ({"scoring": ["accuracy"], "refit": "nope"}, ValueError, "refit='nope'"),
        (
            {"scoring": ["accuracy", "no-such"], "refit": "accuracy"},
            ValueError,
            "no-such",
        ),
        ({"refit": "accuracy"}, ValueError, "refit='accuracy' names a scorer"),
        ({"patience": 1}, ValueError, "patience must be an int >= 2"),
        ({"patience": "3"}, TypeError, "patience must be an int >= 2, True or"),
        ({"patience": 3, "tol": "0.1"}, TypeError, "tol must be a finite number"),
    ],
)
def test_bad_input_is_refused_before_any_cluster(kwargs, error, match):
    arguments = {"parameters": PARAMS, "max_iter": 27, **kwargs}
    search = SuccessiveHalvingSearchCV(_sgd(), client="tcp://127.0.0.1:1", **arguments)
    with pytest.raises(error, match=match):
        search.fit(X, Y)  # raised before it tries to reach the (absent) scheduler


def test_clone_keeps_the_parameters():
    search = HyperbandSearchCV(_sgd(), PARAMS, max_iter=9, random_state=3)
    copy = clone(search)
    assert copy.get_params()["max_iter"] == 9 and copy.random_state == 3


@gen_cluster(client=True, timeout=180)
async def test_an_error_in_partial_fit_is_raised_as_it_is(c, s, a, b):
    # scikit-learn checks alpha in partial_fit, on the worker: its error comes back
    search = SuccessiveHalvingSearchCV(
        _sgd(), {"alpha": [1e-4, -1.0]}, n_initial_parameters="grid", client=c
    )
    with pytest.raises(ValueError, match="'alpha' parameter of SGDClassifier"):
        await asyncio.to_thread(search.fit, X, Y)
    await async_poll_for(lambda: not s.tasks, timeout=10)


@gen_cluster(client=True, timeout=180)
async def test_a_grid_pandas_data_and_sample_weight(c, s, a, b):
    pd = pytest.importorskip("pandas")
    frame, labels = pd.DataFrame(X), pd.Series(Y)
    weights = np.where(Y == 0, 0.0, 1.0)  # class 0 ignored: never predicted
    grid = {"alpha": [1e-4, 1e-3], "penalty": ["l2", "l1"]}
    search = SuccessiveHalvingSearchCV(
        _sgd(), grid, n_initial_parameters="grid", max_iter=9, random_state=0, client=c
    )
    await asyncio.to_thread(search.fit, frame, labels, sample_weight=weights)
    assert search.cv_results_["params"] == list(ParameterGrid(grid))
    assert (search.predict(X) != 0).all()
    unweighted = SuccessiveHalvingSearchCV(
        _sgd(), grid, n_initial_parameters="grid", max_iter=9, random_state=0, client=c
    )
    await asyncio.to_thread(unweighted.fit, frame, labels)
    assert (unweighted.predict(X) == 0).any()


class _Locked(SGDClassifier):
    """An SGDClassifier holding a lock: it cannot be pickled."""

    def __init__(self, lock=None, alpha=1e-4):
        super().__init__(alpha=alpha)
        self.lock = lock


def test_an_estimator_that_cannot_be_pickled_is_refused_before_any_cluster():
    search = SuccessiveHalvingSearchCV(
        _Locked(lock=threading.Lock()), PARAMS, client="tcp://127.0.0.1:1"
    )
    with pytest.raises(TypeError, match="_Locked cannot be pickled to be sent"):
        search.fit(X, Y)


@gen_cluster(client=True, timeout=180)
async def test_a_dask_array_is_computed_once_and_searched(c, s, a, b):
    da = pytest.importorskip("dask.array")
    search = HyperbandSearchCV(_sgd(), PARAMS, max_iter=9, random_state=0, client=c)
    await asyncio.to_thread(
        search.fit, da.from_array(X, chunks=500), da.from_array(Y, chunks=500)
    )
    assert _held_out_accuracy(search, search.best_estimator_) == search.best_score_


@gen_cluster(client=True, timeout=180, nthreads=[("127.0.0.1", 1)] * 3)
async def test_models_on_a_lost_worker_are_trained_again(c, s, a, b, w3):
    # the models held by worker a are lost with it; Dask recomputes each from
    # its steps (each trains a copy, so a step run again gives the same model)
    search = SuccessiveHalvingSearchCV(
        _sgd(), PARAMS, n_initial_parameters=30, max_iter=81, random_state=0, client=c
    )
    fit = asyncio.create_task(asyncio.to_thread(search.fit, X, Y))
    await async_poll_for(
        lambda: sum(k.startswith("partial_fit") for k in a.data) >= 3, timeout=60
    )
    await a.close()
    await fit
    assert len(s.workers) == 2
    assert 81 in search.cv_results_["partial_fit_calls"]
    assert _held_out_accuracy(search, search.best_estimator_) == search.best_score_
    await async_poll_for(lambda: not s.tasks, timeout=10)


# -- patience and tol, as dask-ml's ----------------------------------------------


def _dask_ml_stops(records, patience, tol) -> bool:
    """Whether dask-ml's rule stops a model with these records (its last call)."""
    dask_ml = pytest.importorskip("dask_ml.model_selection")
    rule = dask_ml.IncrementalSearchCV(_sgd(), PARAMS, patience=patience, tol=tol)
    rule.max_iter = None  # the plateau alone
    return rule._stop_on_plateau({0: 1}, {0: records})[0] == 0


@gen_cluster(client=True, timeout=180)
async def test_patience_stops_a_plateau_by_dask_mls_rule(c, s, a, b):
    search = SuccessiveHalvingSearchCV(
        _sgd(), PARAMS, n_initial_parameters=20, max_iter=27, patience=2,
        tol=0.002, random_state=0, client=c,
    )  # fmt: skip
    await asyncio.to_thread(search.fit, X, Y)
    plateaus = 0
    for i, history in search.model_history_.items():
        calls = [r["partial_fit_calls"] for r in history]
        # scored at least every 2 calls
        assert np.diff([0, *calls]).max() <= 2
        # every score: stopped here by a plateau exactly when dask-ml's rule says
        for k, record in enumerate(history):
            if record["partial_fit_calls"] == 27:
                continue
            ends = k == len(history) - 1
            flat = ends and search.decisions_[i].endswith("plateau")
            plateaus += flat
            if not ends or flat:  # (a model stopped by ASHA is not asked)
                assert flat == _dask_ml_stops(history[: k + 1], 2, 0.002), (i, k)
    assert plateaus >= 1


@gen_cluster(client=True, timeout=180)
async def test_patience_with_tol_none_only_scores_more_often(c, s, a, b):
    search = SuccessiveHalvingSearchCV(
        _sgd(), PARAMS, n_initial_parameters=10, max_iter=9, patience=2, tol=None,
        random_state=0, client=c,
    )  # fmt: skip
    await asyncio.to_thread(search.fit, X, Y)
    assert not any(d.endswith("plateau") for d in search.decisions_.values())
    reached = [
        h for h in search.model_history_.values() if h[-1]["partial_fit_calls"] == 9
    ]
    assert reached and all(
        [r["partial_fit_calls"] for r in h] == [1, 3, 5, 7, 9] for h in reached
    )


def test_patience_true_is_dask_mls_choice():
    search = HyperbandSearchCV(_sgd(), PARAMS, max_iter=81, patience=True)
    assert search._patience() == 27
    assert HyperbandSearchCV(_sgd(), PARAMS, max_iter=3, patience=True)._patience() == 2
    assert HyperbandSearchCV(_sgd(), PARAMS, patience=False)._patience() == 0


# -- several scorers, refit="name" -------------------------------------------------


@gen_cluster(client=True, timeout=240)
async def test_several_scorers_rank_and_prune_by_refit(c, s, a, b, tmp_path_factory):
    from sklearn.metrics import f1_score

    url = f"sqlite:///{tmp_path_factory.mktemp('store')}/multi.db"

    def search():
        return SuccessiveHalvingSearchCV(
            _sgd(), PARAMS, n_initial_parameters=20, max_iter=27, random_state=0,
            scoring=["accuracy", "f1_macro"], refit="f1_macro", store=url, client=c,
        )  # fmt: skip

    first = await asyncio.to_thread(search().fit, X, Y)
    results = first.cv_results_
    assert "mean_test_score" not in results and first.multimetric_
    for metric in ("accuracy", "f1_macro"):
        assert len(results[f"mean_test_{metric}"]) == 20
        best = results[f"mean_test_{metric}"].max()
        assert (
            results[f"rank_test_{metric}"][results[f"mean_test_{metric}"] == best][0]
            == 1
        )
    # best_* by f1_macro, the model's f1 on the held-out split
    f1 = results["mean_test_f1_macro"]
    assert first.best_score_ == f1.max() == f1[first.best_index_]
    assert results["rank_test_f1_macro"][first.best_index_] == 1
    _, test = train_test_split(np.arange(len(X)), test_size=0.15, random_state=0)
    model = first.best_estimator_
    assert (
        f1_score(Y[test], model.predict(X[test]), average="macro") == first.best_score_
    )
    assert first.score(X[test], Y[test]) == first.best_score_  # refit's scorer
    assert set(first.scorer_) == {"accuracy", "f1_macro"}
    # each record's accuracy too; the pruner decided by f1_macro: ASHA on the
    # f1 scores, in the order they came, takes every decision taken
    for record in first.history_:
        assert set(record["scores"]) == {"accuracy", "f1_macro"}
        assert record["score"] == record["scores"]["f1_macro"]
    asha = SuccessiveHalvingPruner(1, 3, max_resource=27, direction="maximize")
    for record in first.history_:
        i, calls = record["model_id"], record["partial_fit_calls"]
        if calls < 27:
            verdict = asha.report(i, calls, record["score"])
            if verdict:
                assert first.decisions_[i] == verdict.reason
    # from the store: every scorer's column comes back
    again = await asyncio.to_thread(search().fit, X, Y)
    assert again.n_models_reused_ == 20
    for key in ("mean_test_accuracy", "mean_test_f1_macro", "rank_test_accuracy"):
        np.testing.assert_array_equal(again.cv_results_[key], results[key])


@gen_cluster(client=True, timeout=180)
async def test_a_dict_of_scorers_and_refit_false(c, s, a, b):
    search = HyperbandSearchCV(
        _sgd(), PARAMS, max_iter=9, random_state=0, client=c,
        scoring={"acc": "accuracy", "bal": "balanced_accuracy"}, refit=False,
    )  # fmt: skip
    with pytest.raises(ValueError, match="give refit= the name"):
        await asyncio.to_thread(search.fit, X, Y)
    search.set_params(refit="acc")
    await asyncio.to_thread(search.fit, X, Y)
    assert search.best_score_ == search.cv_results_["mean_test_acc"].max()
    assert "mean_test_bal" in search.cv_results_
    single = HyperbandSearchCV(
        _sgd(), PARAMS, max_iter=9, random_state=0, client=c, refit=False
    )
    await asyncio.to_thread(single.fit, X, Y)
    assert not hasattr(single, "best_estimator_")
    assert single.best_score_ == single.cv_results_["mean_test_score"].max()
