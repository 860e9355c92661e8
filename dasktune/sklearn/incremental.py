"""Adaptive searches over estimators that learn incrementally (``partial_fit``).

:class:`SuccessiveHalvingSearchCV` and :class:`HyperbandSearchCV`, shaped as
dask-ml's: the budget is ``partial_fit`` calls. Every candidate starts; each
model is trained up to a rung of a dasktune pruner (``min_resource *
eta**k`` calls), scored on a held-out set, and the score is reported to the
pruner, which says whether it trains on to the next rung or stops:
:class:`~dasktune.optim.pruners.SuccessiveHalvingPruner` (ASHA: decided at
once, never waiting for a rung to fill) or
:class:`~dasktune.optim.pruners.HyperbandPruner` (its brackets).

The data go to every worker once (as the other search estimators'); the
models stay on the workers between steps (:mod:`dasktune.sklearn.steps`);
only scores travel to the driver, and the best model at the end. Every score
and every model's end is recorded in a dasktune store, so that a fit
interrupted resumes (:mod:`dasktune.sklearn.ledger`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import cloudpickle
import numpy as np
from sklearn.base import BaseEstimator, MetaEstimatorMixin, clone, is_classifier
from sklearn.metrics import check_scoring
from sklearn.metrics._scorer import _check_multimetric_scoring, _MultimetricScorer
from sklearn.model_selection import ParameterGrid, ParameterSampler, train_test_split
from sklearn.utils._available_if import available_if
from sklearn.utils.validation import indexable

from dasktune.optim.pruners import HyperbandPruner, Pruner
from dasktune.run.cluster import get_client
from dasktune.sklearn.ledger import Ledger
from dasktune.sklearn.placement import Resident, computed, fingerprint, place
from dasktune.sklearn.steps import Run, Scoring
from dasktune.store.sql import TrialStore, check_store

__all__ = ["_IncrementalSearchCV"]


def _positive(label: str, value: Any, low: int = 1) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | np.integer)
        or value < low
    ):
        msg = f"{label} must be an int >= {low}, got {value!r}"
        raise ValueError(msg)
    return int(value)


def _mean(values: Any) -> float:
    """The mean of the finite ``values`` (NaN: none known).

    >>> _mean([1.0, float("nan"), 3.0])
    2.0
    """
    known = [v for v in values if math.isfinite(v)]
    return float(np.mean(known)) if known else math.nan


def _rank(scores: np.ndarray) -> np.ndarray:
    """scikit-learn's ``rank_test_*``: 1 for the best, ties share a rank.

    >>> _rank(np.array([0.5, 0.9, 0.5])).tolist()
    [2, 1, 2]
    """
    order = np.argsort(-scores, kind="stable")
    rank = np.empty(len(scores), dtype=np.int32)
    for position, i in enumerate(order):
        ahead = order[position - 1] if position else None
        same = ahead is not None and scores[ahead] == scores[i]
        rank[i] = rank[ahead] if same else position + 1
    return rank


def _best_has(attr: str) -> Any:
    def check(self: Any) -> bool:
        model = getattr(self, "best_estimator_", self.estimator)
        return hasattr(model, attr)

    return check


class _IncrementalSearchCV(MetaEstimatorMixin, BaseEstimator):
    """What both adaptive searches share: the loop over the pruner's rungs."""

    estimator: Any
    parameters: Any
    max_iter: int
    aggressiveness: int
    test_size: float
    random_state: Any
    scoring: Any
    client: Any
    patience: int | bool
    tol: float | None
    refit: bool | str
    store: str | os.PathLike[str] | TrialStore | None
    name: str | None

    def _n_candidates(self) -> int | str:
        raise NotImplementedError

    def _pruner(self) -> Pruner:
        raise NotImplementedError

    def _candidates(self) -> list[dict[str, Any]]:
        n = self._n_candidates()
        if n == "grid":
            return list(ParameterGrid(self.parameters))
        return list(
            ParameterSampler(
                self.parameters,
                _positive("n_initial_parameters", n),
                random_state=self.random_state,
            )
        )

    def _patience(self) -> int:
        """``patience`` as a number of calls (0: off), checked as dask-ml does.

        ``True`` is dask-ml's Hyperband choice, ``max_iter // aggressiveness``
        (at least 2).
        """
        patience, tol = self.patience, self.tol
        if tol is not None and (
            isinstance(tol, bool)
            or not isinstance(tol, int | float | np.number)
            or not math.isfinite(tol)
        ):
            msg = f"tol must be a finite number or None, got {tol!r}"
            raise TypeError(msg)
        if isinstance(patience, bool):
            if not patience:
                return 0
            return max(int(self.max_iter) // int(self.aggressiveness), 2)
        if not isinstance(patience, int | np.integer):
            msg = (
                f"patience must be an int >= 2, True or False, got "
                f"{type(patience).__name__}: {patience!r}"
            )
            raise TypeError(msg)
        if patience == 1 or patience < 0:
            msg = (
                f"patience must be an int >= 2 (or False: off), got {patience} "
                "(with 1, every model would stop at its second score)"
            )
            raise ValueError(msg)
        return int(patience)

    def _check(self) -> tuple[list[dict[str, Any]], Pruner, Scoring]:
        """Everything refused before any fit: the candidates, the pruner, the scorer."""
        name = type(self.estimator).__name__
        if not callable(getattr(self.estimator, "partial_fit", None)):
            msg = (
                f"{type(self).__name__} trains its models step by step with "
                f"partial_fit, and {name} has none; give an estimator that learns "
                "incrementally (SGDClassifier, MLPClassifier, MultinomialNB, ...) "
                "or use GridSearchCV / RandomizedSearchCV, which fit each candidate "
                "once"
            )
            raise TypeError(msg)
        try:
            cloudpickle.dumps(clone(self.estimator))
        except Exception as err:
            msg = (
                f"the estimator {name} cannot be pickled to be sent to the Dask "
                f"workers: {err}; keep what it holds (locks, open files, clients) "
                "out of its parameters, or make it picklable"
            )
            raise TypeError(msg) from err
        if self.store is not None:
            check_store(self.store)
        if self.name is not None and not isinstance(self.name, str):
            msg = f"name must be a str (or None), got {type(self.name).__name__}"
            raise TypeError(msg)
        _positive("max_iter", self.max_iter)
        _positive("aggressiveness", self.aggressiveness, 2)
        self._patience()
        if not isinstance(self.test_size, float) or not 0 < self.test_size < 1:
            msg = f"test_size must be a float in (0, 1), got {self.test_size!r}"
            raise ValueError(msg)
        if isinstance(self.parameters, Mapping) and not self.parameters:
            msg = "parameters is empty; give the values to search, {'alpha': [...]}"
            raise ValueError(msg)
        candidates = self._candidates()  # scikit-learn's errors for empty lists
        for candidate in candidates:
            clone(self.estimator).set_params(**candidate)  # an unknown name raises
        return candidates, self._pruner(), self._scoring()

    def _scoring(self) -> Scoring:
        """The scorer(s), and the one that ranks and prunes (``refit``), as
        scikit-learn's searches take them."""
        name, refit = type(self).__name__, self.refit
        if not isinstance(self.scoring, list | tuple | set | dict):
            if not isinstance(refit, bool):
                msg = (
                    f"refit={refit!r} names a scorer, and {name} has one "
                    f"(scoring={self.scoring!r}); give refit=True or False, or "
                    "several scorers (scoring=['accuracy', 'f1_macro'])"
                )
                raise ValueError(msg)
            return Scoring(check_scoring(self.estimator, self.scoring), None)
        scorers = _check_multimetric_scoring(self.estimator, self.scoring)
        if not isinstance(refit, str) or refit not in scorers:
            msg = (
                f"{name} ranks and prunes its models by one score: with several "
                f"scorers ({', '.join(scorers)}), give refit= the name of one of "
                f"them, got refit={refit!r}"
            )
            raise ValueError(msg)
        return Scoring(_MultimetricScorer(scorers=scorers, raise_exc=True), refit)

    def fit(self, X: Any, y: Any = None, **fit_params: Any) -> Any:
        """Train the candidates rung by rung on the Dask cluster.

        ``fit_params`` go to every ``partial_fit`` call (those aligned with
        the samples, such as ``sample_weight``, indexed as the training part of
        ``X``); for a classifier, ``classes`` defaults to the labels in ``y``.
        """
        candidates, pruner, scorer = self._check()
        client = get_client(self.client)
        X, y = indexable(*computed(X, y, client))
        if is_classifier(self.estimator) and "classes" not in fit_params:
            fit_params = {**fit_params, "classes": np.unique(y)}
        split = tuple(
            train_test_split(
                np.arange(len(X)),
                test_size=self.test_size,
                random_state=self.random_state,
            )
        )
        key = fingerprint(
            X,
            y,
            fit_params,
            split,
            clone(self.estimator),
            self.scoring,
            self.refit if isinstance(self.refit, str) else None,
            type(self).__name__,
            pruner.describe(),
            candidates,
            self._patience(),
            self.tol if self._patience() else None,
        )
        name = f"{self.name or type(self.estimator).__name__}@{key}"
        info = {
            "search": type(self).__name__,
            "estimator": repr(self.estimator),
            "pruner": pruner.describe(),
            "max_iter": self.max_iter,
            "patience": self._patience(),
            "tol": self.tol,
        }
        ledger = Ledger(self.store, name, candidates, info)
        try:
            data = place(client, Resident(X, y, fit_params, {}, [split]))
            try:
                run = Run(
                    self, client, data, scorer, pruner, candidates, ledger,
                    self._patience(), keep_best=self.refit is not False,
                )  # fmt: skip
                run.go()
            finally:
                data.release()
        finally:
            ledger.close()
        self._results(run, candidates, scorer)
        if scorer.primary is None:
            self.scorer_ = scorer.scorer
        else:
            self.scorer_ = dict(scorer.scorer._scorers)
        self.n_splits_ = 1
        self.multimetric_ = scorer.primary is not None
        self.search_name_ = name
        self.n_models_reused_ = run.reused
        self.n_partial_fit_calls_run_ = run.calls_run
        return self

    def _results(
        self, run: Run, candidates: list[dict[str, Any]], scoring: Scoring
    ) -> None:
        n, primary = len(candidates), scoring.primary
        last = [run.models[i][-1] for i in range(n)]
        scores = np.array([r["score"] for r in last])
        calls = np.array([r["partial_fit_calls"] for r in last])
        # times lost with an interrupted fit are NaN: the others count
        fit_time = np.array(
            [
                np.nansum([r["partial_fit_time"] for r in run.models[i]])
                for i in range(n)
            ]
        )
        score_time = np.array(
            [_mean(r["score_time"] for r in run.models[i]) for i in range(n)]
        )
        results: dict[str, Any] = {"params": candidates, "model_id": np.arange(n)}
        if primary is None:
            results["test_score"] = results["mean_test_score"] = scores
            results["rank_test_score"] = _rank(scores)
        else:  # each scorer's, as scikit-learn names them (a record replayed
            # from an interrupted fit keeps only the ranking score: NaN)
            for metric in scoring.scorer._scorers:
                column = np.array(
                    [r.get("scores", {}).get(metric, math.nan) for r in last]
                )
                if metric == primary:
                    column = scores
                results[f"test_{metric}"] = results[f"mean_test_{metric}"] = column
                results[f"rank_test_{metric}"] = _rank(column)
        results["partial_fit_calls"] = calls
        results["mean_partial_fit_time"] = fit_time / np.maximum(calls, 1)
        results["mean_score_time"] = score_time
        if isinstance(run.pruner, HyperbandPruner):
            results["bracket"] = np.array([run.pruner.bracket_of(i) for i in range(n)])
        for key in sorted({k for c in candidates for k in c}):
            column = np.ma.masked_all(n, dtype=object)
            for i, c in enumerate(candidates):
                if key in c:
                    column[i] = c[key]
            results[f"param_{key}"] = column
        self.cv_results_ = results
        self.best_index_ = run.best_index
        self.best_score_ = float(scores[self.best_index_])
        self.best_params_ = candidates[self.best_index_]
        if run.keep_best:
            self.best_estimator_ = run.best_model
        self.history_ = run.history
        self.model_history_ = {i: run.models[i] for i in range(n)}
        self.decisions_ = run.decisions
        self.n_partial_fit_calls_ = int(calls.sum())

    @available_if(_best_has("predict"))
    def predict(self, X: Any) -> Any:
        """The best model's ``predict``."""
        return self.best_estimator_.predict(X)

    @available_if(_best_has("predict_proba"))
    def predict_proba(self, X: Any) -> Any:
        """The best model's ``predict_proba``."""
        return self.best_estimator_.predict_proba(X)

    @available_if(_best_has("decision_function"))
    def decision_function(self, X: Any) -> Any:
        """The best model's ``decision_function``."""
        return self.best_estimator_.decision_function(X)

    @available_if(_best_has("transform"))
    def transform(self, X: Any) -> Any:
        """The best model's ``transform``."""
        return self.best_estimator_.transform(X)

    def score(self, X: Any, y: Any = None) -> float:
        """The best model's score on ``X``, ``y`` by the search's scorer
        (with several, ``refit``'s)."""
        scorer = self.scorer_[self.refit] if self.multimetric_ else self.scorer_
        return float(scorer(self.best_estimator_, X, y))

    @property
    def classes_(self) -> Any:
        return self.best_estimator_.classes_
