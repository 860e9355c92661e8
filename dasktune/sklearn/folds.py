"""One (candidate, split) fit, as a dasktune trial evaluated on a worker.

A trial's parameters are ``{"candidate": <the candidate's parameters as
canonical JSON>, "cv_split": k}``: the store keys each fit by what it fits, so
a candidate asked again (by a later ``fit`` on the same data, or by another
driver) is answered from the store. The fit itself is scikit-learn's own
``_fit_and_score``, so its scores are exactly scikit-learn's; its result dict
travels back as the trial's auxiliary data.
"""

from __future__ import annotations

import json
import math
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.model_selection._validation import _fit_and_score

from dasktune.records import canonical
from dasktune.sklearn.placement import resident

__all__ = ["FoldFit", "candidate_key", "trial_params"]

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
    """The objective of a search's trials: fit one candidate on one split.

    Parameters
    ----------
    data_key : hashable
        The key of the fit's :class:`~dasktune.sklearn.placement.Resident`
        data, scattered to every worker.
    estimator : estimator
        The unfitted base estimator (cloned for each fit).
    candidates : dict
        Each candidate's parameters by :func:`candidate_key`.
    scorer : callable or dict
        scikit-learn's scorer, or a dict of them (several metrics).
    primary : str or None
        The metric whose test score is the trial's value (``None``: the only one).
    return_train_score : bool
    error_score : "raise" or float
    """

    def __init__(
        self,
        data_key: Hashable,
        estimator: Any,
        candidates: dict[str, dict[str, Any]],
        scorer: Any,
        primary: str | None,
        return_train_score: bool,
        error_score: Any,
    ) -> None:
        self.data_key = data_key
        self.estimator = estimator
        self.candidates = candidates
        self.scorer = scorer
        self.primary = primary
        self.return_train_score = return_train_score
        self.error_score = error_score

    def __call__(self, params: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        data = resident(self.data_key)
        split = int(params[SPLIT])
        train, test = data.splits[split]
        out = _fit_and_score(
            clone(self.estimator),
            data.X,
            data.y,
            scorer=self.scorer,
            train=train,
            test=test,
            verbose=0,
            parameters=self.candidates[params["candidate"]],
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
