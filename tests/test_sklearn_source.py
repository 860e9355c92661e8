"""dasktune.sklearn.SearchCV: candidates asked from dasktune's sources."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
from clusters import local_client
from sklearn import model_selection as skms
from sklearn.base import clone
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold

from dasktune import (
    Float,
    HyperScipySampler,
    NevergradOptimizer,
    OptunaSampler,
    Space,
)
from dasktune.optim.base import RandomSampler
from dasktune.sklearn import SearchCV

# scikit-learn's fits on a shared 2-core machine: slower than the default bound
pytestmark = pytest.mark.timeout(300)

SPACE = {"C": Float(1e-3, 1e2, log=True)}
CV = KFold(3, shuffle=True, random_state=0)


@pytest.fixture(scope="module")
def client():
    with local_client(2, 1, processes=False) as c:
        yield c


@pytest.fixture(scope="module")
def iris():
    return load_iris(return_X_y=True)


def _check_scores_are_scikit_learns(search, X, y):
    """The candidates' scores equal scikit-learn's GridSearchCV over them."""
    grid = [{k: [v] for k, v in p.items()} for p in search.cv_results_["params"]]
    theirs = skms.GridSearchCV(LogisticRegression(max_iter=300), grid, cv=CV)
    theirs.fit(X, y)
    np.testing.assert_array_equal(
        search.cv_results_["mean_test_score"], theirs.cv_results_["mean_test_score"]
    )


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: OptunaSampler(space=SPACE, seed=0), id="optuna"),
        pytest.param(
            lambda: NevergradOptimizer("OnePlusOne", SPACE, budget=6, seed=0),
            id="nevergrad",
        ),
        pytest.param(
            lambda: HyperScipySampler(SPACE, method="differential_evolution", seed=0),
            id="scipy-de",
        ),
        pytest.param(lambda: SPACE, id="space-at-random"),
    ],
)
def test_each_source_is_asked_and_told(client, iris, make):
    X, y = iris
    source = make()
    try:
        search = SearchCV(
            LogisticRegression(max_iter=300),
            source,
            n_trials=6,
            batch_size=2,
            cv=CV,
            random_state=0,
            client=client,
        ).fit(X, y)
    finally:  # given as itself, the source is the caller's to close
        if hasattr(source, "close"):
            source.close()
    assert len(search.cv_results_["params"]) == 6
    assert all(1e-3 <= p["C"] <= 1e2 for p in search.cv_results_["params"])
    assert search.best_score_ == max(search.cv_results_["mean_test_score"])
    _check_scores_are_scikit_learns(search, X, y)


def test_a_factory_makes_each_fit_fresh_and_the_search_clonable(client, iris):
    X, y = iris

    def make():
        return OptunaSampler(space=SPACE, seed=3)

    search = SearchCV(
        LogisticRegression(max_iter=300), make, n_trials=4, batch_size=2, cv=CV
    )
    with (
        client.as_current()
    ):  # client=None: the current one (a Client cannot be cloned)
        first = search.fit(X, y).cv_results_["params"]
        assert clone(search).fit(X, y).cv_results_["params"] == first
        assert search.fit(X, y).cv_results_["params"] == first


class Recording(RandomSampler):
    """A random sampler that keeps what it is told (in the class: each fit
    works on a copy of the source)."""

    told: ClassVar[list[tuple[dict, float]]] = []

    def _tell(self, number, params, value):
        Recording.told.append((params, value))


def test_the_source_is_told_each_candidates_negated_mean_score(client, iris):
    X, y = iris
    search = SearchCV(
        LogisticRegression(max_iter=300),
        Recording(Space(SPACE), seed=0),
        n_trials=4,
        batch_size=2,
        cv=CV,
        client=client,
    ).fit(X, y)
    told = {params["C"]: value for params, value in Recording.told}
    assert len(told) == 4
    for params, score in zip(
        search.cv_results_["params"], search.cv_results_["mean_test_score"], strict=True
    ):
        assert told[params["C"]] == -score


def test_bad_arguments(iris):
    X, y = iris
    with pytest.raises(
        TypeError, match="source must be a dasktune source.*got object, which lacks ask"
    ):
        SearchCV(LogisticRegression(), object()).fit(X, y)
    with pytest.raises(ValueError, match="n_trials must be a positive int, got 0"):
        SearchCV(LogisticRegression(), SPACE, n_trials=0).fit(X, y)
    with pytest.raises(ValueError, match="give refit='<one of them>'"):
        SearchCV(LogisticRegression(), SPACE, scoring=["accuracy", "f1_macro"],
                 refit=False).fit(X, y)  # fmt: skip
