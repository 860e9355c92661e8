"""Where a search's data lives: on every worker, once, for the whole fit.

``X``, ``y`` and the sample-aligned fit and score parameters travel to the
workers in one ``scatter(..., broadcast=True, hash=False)`` together with the
cross-validation splits as index arrays. Each (candidate, split) task takes
the future of that object as an argument: a dependency the scheduler keeps
for as long as fits need it, and copies to any worker without it (one that
joined later, or whose copy Dask's active memory manager dropped); the
worker's task reads it from its memory. A fold is an index into the resident
data, never a copy sent with a fit.

Dask collections given to ``fit`` (a ``dask.array`` or ``dask.dataframe``) are
computed once, on the cluster, and the result is placed as above: a
scikit-learn estimator fits in one process's memory, so the data must too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import cloudpickle
import dask
import distributed
import joblib  # type: ignore[import-untyped]
import numpy as np

__all__ = ["Resident", "computed", "fingerprint", "place"]


class Resident:
    """The data of one fit, as one opaque object on every worker.

    One object, not a tuple or dict, so that Dask scatters it as a whole (it
    would scatter each element of a container separately).
    """

    __slots__ = ("X", "fit_params", "score_params", "splits", "y")

    def __init__(
        self,
        X: Any,
        y: Any,
        fit_params: Mapping[str, Any],
        score_params: Mapping[str, Any],
        splits: Sequence[tuple[np.ndarray, np.ndarray]],
    ) -> None:
        self.X, self.y = X, y
        self.fit_params, self.score_params = dict(fit_params), dict(score_params)
        self.splits = list(splits)

    def __getstate__(self) -> tuple[Any, ...]:
        return self.X, self.y, self.fit_params, self.score_params, self.splits

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.X, self.y, self.fit_params, self.score_params, self.splits = state


def computed(X: Any, y: Any, client: distributed.Client) -> tuple[Any, Any]:
    """``X`` and ``y`` with any Dask collection among them computed once on
    ``client``'s cluster (in one graph, so shared inputs are read once)."""
    lazy = [v for v in (X, y) if dask.is_dask_collection(v)]
    if not lazy:
        return X, y
    values = iter(client.compute(lazy, sync=True))
    X = next(values) if dask.is_dask_collection(X) else X
    y = next(values) if dask.is_dask_collection(y) else y
    return X, y


def place(client: distributed.Client, data: Resident) -> distributed.Future:
    """Send ``data`` to every worker once; the future keeps it there."""
    return client.scatter(data, broadcast=True, hash=False)


def _digest(value: Any) -> str:
    """A stable hash of ``value``: arrays and frames by their bytes
    (``joblib.hash``), anything else (functions, estimators) by cloudpickle."""
    try:
        return str(joblib.hash(value))
    except Exception:
        return hashlib.sha256(cloudpickle.dumps(value)).hexdigest()


def fingerprint(*parts: Any) -> str:
    """A short hash of ``parts``: what makes two fits' scores the same ones.

    >>> fingerprint(np.arange(3), "accuracy") == fingerprint(np.arange(3), "accuracy")
    True
    >>> fingerprint(np.arange(3), "accuracy") == fingerprint(np.arange(4), "accuracy")
    False
    """
    joined = "-".join(_digest(p) for p in parts)
    return hashlib.sha256(joined.encode()).hexdigest()[:16]
