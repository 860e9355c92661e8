"""``SearchCV``: a search estimator whose candidates come from a dasktune source.

The source — ``OptunaSampler``, ``NevergradOptimizer``, ``HyperScipySampler``
(scipy's methods), any ask/tell optimizer, or a space (a ``Space`` or a dict
of ``Float``/``Int``/``Categorical``) sampled at random — is asked a round of
candidates, each is fitted on every split on the cluster, and the source is
told each candidate's mean test score (negated: sources minimise). Then the
next round, until ``n_trials`` candidates. Everything else is
scikit-learn's ``BaseSearchCV``: ``cv_results_``, ``best_*``, refit.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import distributed
import numpy as np
from sklearn.model_selection._search import BaseSearchCV

from dasktune.optim.base import AskTell, RandomSampler, missing_members
from dasktune.records import Trial
from dasktune.run.cluster import get_client
from dasktune.sklearn.base import DaskSearchMixin
from dasktune.space import Space
from dasktune.store.sql import TrialStore

__all__ = ["SearchCV"]


def _optimizer(source: Any, seed: Any) -> tuple[AskTell, bool]:
    """``source`` as an ask/tell optimizer, and whether this fit made it (a
    space, sampled at random with ``seed``; a factory's product) and closes it."""
    if isinstance(source, Space) or (
        isinstance(source, Mapping) and missing_members(source)
    ):
        return RandomSampler(Space(source), seed=seed), True
    made = callable(source) and bool(missing_members(source))
    optimizer = source() if made else source
    missing = missing_members(optimizer)
    if missing:
        what = f"{type(source).__name__}() returned" if made else "got"
        msg = (
            "source must be a dasktune source (OptunaSampler, NevergradOptimizer, "
            "HyperScipySampler, an ask/tell optimizer), a function making one, or "
            "a space (a Space or a dict of Float/Int/Categorical); "
            f"{what} {type(optimizer).__name__}, which lacks {', '.join(missing)}"
        )
        raise TypeError(msg)
    return optimizer, made


class SearchCV(DaskSearchMixin, BaseSearchCV):
    """A search estimator asking its candidates from a dasktune source.

    Parameters
    ----------
    estimator : estimator
        The scikit-learn estimator (or pipeline) to tune.
    source : ask/tell optimizer, function, Space or dict
        ``OptunaSampler(space=..., seed=...)``, ``NevergradOptimizer(...)``,
        ``HyperScipySampler(space, method=...)``, any dasktune ``AskTell``; a
        function of no arguments returning one (called at each ``fit``: each
        fit starts afresh, and ``clone`` works, which cannot copy an
        optimizer); or a space, sampled at random (``random_state``). An
        optimizer given as such is used as it is: a second ``fit`` continues
        it. The parameter names are the estimator's (``svc__C`` in a
        pipeline).
    n_trials : int, default 10
        Candidates asked from the source.
    batch_size : int, optional
        Candidates asked per round, each round told before the next is asked
        (default: enough to give each worker thread a fit, at least one).
    scoring, refit, cv, verbose, error_score, return_train_score
        As scikit-learn's ``GridSearchCV``. With several metrics, ``refit``
        names the one told to the source.
    random_state : int, optional
        The seed of a space sampled at random.
    client, store, name
        As :class:`dasktune.sklearn.GridSearchCV`: the cluster, the store
        recording each (candidate, split), the search's name in it.

    Examples
    --------
    >>> from dasktune import Float, OptunaSampler
    >>> source = OptunaSampler(space={"C": Float(1e-2, 1e2, log=True)}, seed=0)
    >>> search = SearchCV(SVC(), source, n_trials=20, cv=3)  # doctest: +SKIP
    >>> search.fit(X, y).best_params_  # doctest: +SKIP
    """

    def __init__(
        self,
        estimator: Any,
        source: Any,
        *,
        n_trials: int = 10,
        batch_size: int | None = None,
        scoring: Any = None,
        refit: bool | str | Any = True,
        cv: Any = None,
        verbose: int = 0,
        error_score: str | float = np.nan,
        return_train_score: bool = False,
        n_jobs: int | None = None,
        random_state: int | None = None,
        client: distributed.Client | None = None,
        store: str | os.PathLike[str] | TrialStore | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(
            estimator=estimator,
            scoring=scoring,
            refit=refit,
            cv=cv,
            verbose=verbose,
            error_score=error_score,
            return_train_score=return_train_score,
        )
        self.source = source
        self.n_trials = n_trials
        self.batch_size = batch_size
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.client = client
        self.store = store
        self.name = name

    def fit(self, X: Any, y: Any = None, **params: Any) -> Any:
        """Fit ``n_trials`` candidates asked from the source on every split."""
        for label, value in (
            ("n_trials", self.n_trials),
            ("batch_size", self.batch_size),
        ):
            if value is None and label == "batch_size":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                msg = f"{label} must be a positive int, got {value!r}"
                raise ValueError(msg)
        several = isinstance(self.scoring, list | tuple | set | dict)
        if several and not isinstance(self.refit, str):
            msg = (
                f"SearchCV tells its source one score per candidate; with several "
                f"metrics ({self.scoring!r}) give refit='<one of them>', got "
                f"refit={self.refit!r}"
            )
            raise ValueError(msg)
        self._dasktune_source, made = _optimizer(self.source, self.random_state)
        try:
            return super().fit(X, y, **params)
        finally:
            if made:
                self._dasktune_source.close()
            del self._dasktune_source

    def _round(self) -> int:
        if self.batch_size is not None:
            return self.batch_size
        threads = sum(get_client(self.client).nthreads().values())
        return max(1, math.ceil(threads / max(1, self.n_splits_)))

    def _run_search(
        self, evaluate_candidates: Any, *, callback_ctx: Any = None
    ) -> None:
        evaluate = self._on_dask(evaluate_candidates)
        optimizer, metric = self._dasktune_source, self._get_scorers()[1]
        size, asked = self._round(), 0
        while asked < self.n_trials:
            trials: list[Trial] = []
            while len(trials) < min(size, self.n_trials - asked):
                trial = optimizer.ask()
                if trial is None:
                    break
                trials.append(trial)
            if not trials:
                break  # the source is finished (an exhausted grid of a space)
            asked += len(trials)
            candidates = [self._decoded(optimizer, t.params) for t in trials]
            results = evaluate(candidates)
            scores = results[f"mean_test_{metric}"][-len(trials) :]
            for trial, score in zip(trials, scores, strict=True):
                value = -float(score)
                optimizer.tell(trial, value if math.isfinite(value) else math.inf)

    @staticmethod
    def _decoded(optimizer: Any, params: Any) -> dict[str, Any]:
        if isinstance(params, Mapping):
            return dict(params)
        space = getattr(optimizer, "space", None)
        if space is None:
            msg = (
                f"the source proposed a vector ({params!r}) and has no space to "
                "name its parameters; give a source over a named space"
            )
            raise TypeError(msg)
        return dict(space.decode(params))
