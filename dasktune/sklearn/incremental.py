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
models stay on the workers between steps, a step being a task that takes the
model's future (a copy is trained, so a task run again gives the same model);
only scores travel to the driver, and the best model at the end.
"""

from __future__ import annotations

import copy
import math
import time
import uuid
from collections.abc import Mapping
from typing import Any

import cloudpickle
import distributed
import numpy as np
from sklearn.base import BaseEstimator, MetaEstimatorMixin, clone, is_classifier
from sklearn.metrics import check_scoring
from sklearn.model_selection import ParameterGrid, ParameterSampler, train_test_split
from sklearn.utils import _safe_indexing
from sklearn.utils._available_if import available_if
from sklearn.utils.validation import _check_method_params, indexable

from dasktune.optim.pruners import HyperbandPruner, Pruner, SuccessiveHalvingPruner
from dasktune.run.cluster import get_client
from dasktune.run.submit import Window
from dasktune.sklearn.placement import Resident, computed, place

__all__ = ["_IncrementalSearchCV"]


class _Trained:
    """A model on a worker, with the ``partial_fit`` calls and time it took."""

    __slots__ = ("calls", "fit_time", "model")

    def __init__(self, model: Any, calls: int, fit_time: float) -> None:
        self.model, self.calls, self.fit_time = model, calls, fit_time

    def __getstate__(self) -> tuple[Any, int, float]:
        return self.model, self.calls, self.fit_time

    def __setstate__(self, state: tuple[Any, int, float]) -> None:
        self.model, self.calls, self.fit_time = state


def _part(data: Resident, which: int) -> tuple[Any, Any]:
    index = data.splits[0][which]
    y = None if data.y is None else _safe_indexing(data.y, index)
    return _safe_indexing(data.X, index), y


def _train(previous: Any, data: Resident, calls: int) -> _Trained:
    """``calls`` more ``partial_fit`` calls on the training part, on a copy
    of the previous model (an unfitted estimator, or a :class:`_Trained`)."""
    done = previous.calls if isinstance(previous, _Trained) else 0
    model = copy.deepcopy(
        previous.model if isinstance(previous, _Trained) else previous
    )
    X, y = _part(data, 0)
    # sample-aligned parameters (sample_weight) indexed as X; others as given
    params = _check_method_params(data.X, data.fit_params, data.splits[0][0])
    start = time.perf_counter()
    for _ in range(calls):
        model.partial_fit(X, y, **params)
    return _Trained(model, done + calls, time.perf_counter() - start)


def _score(trained: _Trained, data: Resident, scorer: Any) -> dict[str, Any]:
    """The score of ``trained`` on the held-out part, and what it cost."""
    X, y = _part(data, 1)
    start = time.perf_counter()
    score = float(scorer(trained.model, X, y))
    return {
        "score": score,
        "partial_fit_calls": trained.calls,
        "partial_fit_time": trained.fit_time,
        "score_time": time.perf_counter() - start,
    }


def _positive(label: str, value: Any, low: int = 1) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | np.integer)
        or value < low
    ):
        msg = f"{label} must be an int >= {low}, got {value!r}"
        raise ValueError(msg)
    return int(value)


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

    def _check(self) -> tuple[list[dict[str, Any]], Pruner, Any]:
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
        if isinstance(self.scoring, list | tuple | set | dict):
            msg = (
                f"{type(self).__name__} ranks its models by one score; give one "
                f"scorer (a name or a callable), got scoring={self.scoring!r}"
            )
            raise ValueError(msg)
        _positive("max_iter", self.max_iter)
        _positive("aggressiveness", self.aggressiveness, 2)
        if not isinstance(self.test_size, float) or not 0 < self.test_size < 1:
            msg = f"test_size must be a float in (0, 1), got {self.test_size!r}"
            raise ValueError(msg)
        if isinstance(self.parameters, Mapping) and not self.parameters:
            msg = "parameters is empty; give the values to search, {'alpha': [...]}"
            raise ValueError(msg)
        candidates = self._candidates()  # scikit-learn's errors for empty lists
        for candidate in candidates:
            clone(self.estimator).set_params(**candidate)  # an unknown name raises
        return candidates, self._pruner(), check_scoring(self.estimator, self.scoring)

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
        split = train_test_split(
            np.arange(len(X)),
            test_size=self.test_size,
            random_state=self.random_state,
        )
        data = place(client, Resident(X, y, fit_params, {}, [tuple(split)]))
        try:
            run = _Run(self, client, data, scorer, pruner, candidates)
            run.go()
        finally:
            data.release()
        self._results(run, candidates)
        self.scorer_ = scorer
        self.n_splits_ = 1
        self.multimetric_ = False
        return self

    def _results(self, run: _Run, candidates: list[dict[str, Any]]) -> None:
        n = len(candidates)
        last = [run.models[i][-1] for i in range(n)]
        scores = np.array([r["score"] for r in last])
        calls = np.array([r["partial_fit_calls"] for r in last])
        fit_time = np.array(
            [sum(r["partial_fit_time"] for r in run.models[i]) for i in range(n)]
        )
        score_time = np.array(
            [np.mean([r["score_time"] for r in run.models[i]]) for i in range(n)]
        )
        order = np.argsort(-scores, kind="stable")
        rank = np.empty(n, dtype=np.int32)
        for position, i in enumerate(order):
            ahead = order[position - 1] if position else None
            same = ahead is not None and scores[ahead] == scores[i]
            rank[i] = rank[ahead] if same else position + 1
        results: dict[str, Any] = {
            "params": candidates,
            "model_id": np.arange(n),
            "test_score": scores,
            "mean_test_score": scores,
            "rank_test_score": rank,
            "partial_fit_calls": calls,
            "mean_partial_fit_time": fit_time / np.maximum(calls, 1),
            "mean_score_time": score_time,
        }
        if isinstance(run.pruner, HyperbandPruner):
            results["bracket"] = np.array([run.pruner.bracket_of(i) for i in range(n)])
        for key in sorted({k for c in candidates for k in c}):
            column = np.ma.masked_all(n, dtype=object)
            for i, c in enumerate(candidates):
                if key in c:
                    column[i] = c[key]
            results[f"param_{key}"] = column
        self.cv_results_ = results
        self.best_index_ = int(order[0])
        self.best_score_ = float(scores[self.best_index_])
        self.best_params_ = candidates[self.best_index_]
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
        """The best model's score on ``X``, ``y`` by the search's scorer."""
        return float(self.scorer_(self.best_estimator_, X, y))

    @property
    def classes_(self) -> Any:
        return self.best_estimator_.classes_


def _next_target(pruner: Pruner, number: int, calls: int, max_iter: int) -> int:
    """The ``partial_fit`` calls model ``number`` trains to next: its next
    rung (of its bracket under Hyperband), else ``max_iter``."""
    rungs = pruner
    if isinstance(pruner, HyperbandPruner):
        rungs = pruner.brackets[pruner.bracket_of(number)]
    assert isinstance(rungs, SuccessiveHalvingPruner)
    k = 0
    while (resource := rungs.rung_resource(k)) < max_iter:
        if resource > calls:
            return resource
        k += 1
    return max_iter


class _Run:
    """One ``fit``'s loop: models stepped to their rungs as scores come back."""

    def __init__(
        self,
        owner: _IncrementalSearchCV,
        client: distributed.Client,
        data: distributed.Future,
        scorer: Any,
        pruner: Pruner,
        candidates: list[dict[str, Any]],
    ) -> None:
        self.owner, self.client, self.data = owner, client, data
        self.scorer, self.pruner = scorer, pruner
        self.candidates = candidates
        self.max_iter = int(owner.max_iter)
        self.token = uuid.uuid4().hex[:8]
        self.name = type(owner.estimator).__name__
        self.models: dict[int, list[dict[str, Any]]] = {}
        self.history: list[dict[str, Any]] = []
        self.decisions: dict[int, str] = {}
        self.trained: dict[int, distributed.Future] = {}
        self.best: tuple[float, int, distributed.Future] | None = None
        self.best_model: Any = None
        self.start = time.monotonic()

    def _step(self, window: Window[int], number: int, previous: Any) -> None:
        done = (
            self.models[number][-1]["partial_fit_calls"] if number in self.models else 0
        )
        target = _next_target(self.pruner, number, done, self.max_iter)
        key = f"{self.name}-{number}-{target}-{self.token}"
        trained = self.client.submit(
            _train,
            previous,
            self.data,
            target - done,
            key=f"partial_fit-{key}",
            pure=False,
        )
        scored = self.client.submit(
            _score, trained, self.data, self.scorer, key=f"score-{key}", pure=False
        )
        self.trained[number] = trained
        window.add([scored], [number])

    def _finish(self, number: int, score: float) -> None:
        """Model ``number`` trains no more: kept if it is the best so far."""
        trained = self.trained.pop(number)
        if self.best is None or score > self.best[0]:
            if self.best is not None:
                self.best[2].release()
            self.best = (score, number, trained)
        else:
            trained.release()

    def go(self) -> None:
        what = f"the partial_fit steps of {len(self.candidates)} {self.name} models"
        try:
            with Window[int](self.client, what=what) as window:
                for number, params in enumerate(self.candidates):
                    model = clone(self.owner.estimator).set_params(**params)
                    self._step(window, number, model)
                while len(window):
                    for future, result, number in window.next_batch():
                        if future.status != "finished":
                            raise result[1].with_traceback(result[2])
                        self._record(window, number, result)
            assert self.best is not None
            self.best_model = self.best[2].result().model
        finally:
            for future in self.trained.values():
                future.release()
            if self.best is not None:
                self.best[2].release()

    def _record(self, window: Window[int], number: int, result: dict[str, Any]) -> None:
        calls, score = result["partial_fit_calls"], result["score"]
        record = {
            "model_id": number,
            "params": self.candidates[number],
            **result,
            "elapsed_wall_time": time.monotonic() - self.start,
        }
        self.models.setdefault(number, []).append(record)
        self.history.append(record)
        if calls >= self.max_iter:
            self.pruner.complete(number, score)
            self.decisions[number] = f"trained to max_iter={self.max_iter}"
            self._finish(number, score)
            return
        if not math.isfinite(score):
            self.decisions[number] = f"score {score} after {calls} calls: stopped"
            self._finish(number, -math.inf)
            return
        verdict = self.pruner.report(number, calls, score)
        if verdict:
            self.decisions[number] = verdict.reason
            self._finish(number, score)
        else:
            self._step(window, number, self.trained[number])
