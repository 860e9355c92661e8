"""One (candidate, split) fit, as a dasktune trial evaluated on a worker.

A trial's parameters are ``{"candidate": <the candidate's parameters as
canonical JSON>, "cv_split": k}``: the store keys each fit by what it fits, so
a candidate asked again (by a later ``fit`` on the same data, or by another
driver) is answered from the store. The fit itself is scikit-learn's own
``_fit_and_score``, so its scores are exactly scikit-learn's; its result dict
travels back as the trial's auxiliary data.

The trials a search claims are evaluated together (:class:`FoldFits` is a
batch objective): one task per fit, each given the future of the fit's
:class:`~dasktune.sklearn.placement.Resident` data as an argument, so the
data is a dependency the scheduler knows: it keeps it while fits need it and
copies it to a worker that lacks it (none fetches it itself).
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import distributed
import numpy as np
from sklearn.base import clone
from sklearn.model_selection._validation import _fit_and_score

from dasktune.records import canonical
from dasktune.run.mapping import Shipped
from dasktune.run.submit import Window
from dasktune.sklearn.placement import Resident

__all__ = ["FoldFit", "FoldFits", "candidate_key", "trial_params"]

#: the trial parameter naming the split (the candidate's is ``candidate``)
SPLIT = "cv_split"


def candidate_key(params: Mapping[str, Any]) -> str:
    """A candidate's parameters as the canonical JSON the store keys it by.

    >>> candidate_key({"C": np.float64(1.0), "kernel": "rbf"})
    '{"C":1.0,"kernel":"rbf"}'
    """
    return json.dumps(canonical(params)[0], sort_keys=True, separators=(",", ":"))


def trial_params(key: str, split: int) -> dict[str, Any]:
    """The trial of candidate ``key`` on split ``split``."""
    return {"candidate": key, SPLIT: split}


def _plain(value: Any) -> Any:
    """Scores as JSON numbers (NumPy scalars as Python ones; dicts of them)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


class FoldFit:
    """The fit of one candidate on one split, run on a worker.

    Parameters
    ----------
    estimator : estimator
        The unfitted base estimator (cloned for each fit).
    scorer : callable or dict
        scikit-learn's scorer, or a dict of them (several metrics).
    primary : str or None
        The metric whose test score is the trial's value (``None``: the only one).
    return_train_score : bool
    error_score : "raise" or float
    """

    def __init__(
        self,
        estimator: Any,
        scorer: Any,
        primary: str | None,
        return_train_score: bool,
        error_score: Any,
    ) -> None:
        self.estimator = estimator
        self.scorer = scorer
        self.primary = primary
        self.return_train_score = return_train_score
        self.error_score = error_score

    def __call__(
        self, parameters: dict[str, Any], split: int, data: Resident
    ) -> tuple[float, dict[str, Any]]:
        """Fit ``parameters`` on split ``split`` of ``data`` (given by Dask,
        from the worker's memory): the trial's value and its auxiliary data."""
        train, test = data.splits[split]
        out = _fit_and_score(
            clone(self.estimator),
            data.X,
            data.y,
            scorer=self.scorer,
            train=train,
            test=test,
            verbose=0,
            parameters=parameters,
            fit_params=data.fit_params,
            score_params=data.score_params,
            return_train_score=self.return_train_score,
            return_n_test_samples=True,
            return_times=True,
            return_parameters=False,
            error_score=self.error_score,
        )
        out = {k: _plain(v) for k, v in out.items()}
        scores = out["test_scores"]
        if isinstance(scores, dict):  # several metrics: refit's, else the first
            value = scores.get(self.primary, next(iter(scores.values()), None))
        else:
            value = scores
        if not isinstance(value, int | float) or math.isnan(value):
            value = -math.inf  # a failed fit: the worst, never the best
        return float(value), {"out": out}


class FoldFits:
    """The batch objective of a search's trials: one task per fit.

    Parameters
    ----------
    client : distributed.Client
    data : distributed.Future
        The fit's :class:`~dasktune.sklearn.placement.Resident` data; every
        task takes it as an argument (a dependency the scheduler knows).
    fit : FoldFit
        What each task runs.
    candidates : dict
        Each candidate's parameters by :func:`candidate_key`.
    name : str
        The search's name, in the tasks' keys (the dashboard shows them).
    """

    def __init__(
        self,
        client: distributed.Client,
        data: distributed.Future,
        fit: FoldFit,
        candidates: dict[str, dict[str, Any]],
        name: str,
    ) -> None:
        self.client, self.data = client, data
        # pickled once here, unpickled once per worker process: the fits on a
        # worker share one estimator and scorer, as joblib's sequential
        # fits do (a scorer that counts its calls counts them all)
        self.fit = Shipped(fit)
        self.candidates = candidates
        self.name = name.split("@")[0]
        #: the outcomes of a batch in which a fit raised, by trial: the driver
        #: then asks for each trial alone, and is answered from here
        self._kept: dict[tuple[str, int], Any] = {}

    def evaluate_batch(self, params: Sequence[dict[str, Any]]) -> list[Any]:
        """Fit every trial of ``params`` on the cluster; their raw results in
        order. Raises the first fit's error if one raised (each trial asked
        again alone then gets its own outcome, without fitting again)."""
        trials = [(p["candidate"], int(p[SPLIT])) for p in params]
        outcomes = {t: self._kept.pop(t) for t in trials if t in self._kept}
        todo = [t for t in trials if t not in outcomes]
        if todo:
            outcomes.update(self._run(todo))
        failed = [t for t in trials if isinstance(outcomes[t], BaseException)]
        if failed:
            if len(trials) > 1:
                self._kept.update(outcomes)
            raise outcomes[failed[0]]
        return [outcomes[t] for t in trials]

    def _run(self, trials: list[tuple[str, int]]) -> dict[tuple[str, int], Any]:
        token = uuid.uuid4().hex[:8]
        futures = self.client.map(
            self.fit,
            [self.candidates[c] for c, _ in trials],
            [s for _, s in trials],
            [self.data] * len(trials),  # a dependency of each task
            key=[f"fit-{self.name}-{s}-{token}-{i}" for i, (_, s) in enumerate(trials)],
            pure=False,
        )
        outcomes: dict[tuple[str, int], Any] = {}
        what = f"the fits of {self.name} ({len(trials)} sent together)"
        with Window[tuple[str, int]](self.client, what=what) as window:
            window.add(futures, trials)
            while len(window):
                for future, result, trial in window.next_batch():
                    if future.status == "finished":
                        outcomes[trial] = result
                    elif future.status == "error":
                        outcomes[trial] = result[1].with_traceback(result[2])
                    else:
                        outcomes[trial] = distributed.client.FutureCancelledError(
                            future.key, reason=f"cancelled before {what} ended"
                        )
        return outcomes
