"""Pareto fronts: the trials no other trial beats on every objective.

NumPy only, no Dask: the store, the search and the plots use it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["hypervolume_2d", "pareto_front"]


def pareto_front(
    points: ArrayLike, directions: Sequence[str] | None = None
) -> NDArray[np.intp]:
    """The positions of the non-dominated rows of ``points``.

    A row is dominated when another row is no worse on every objective and
    better on one. Rows repeating a front row all stay on the front, as in
    Optuna's ``study.best_trials``.

    Parameters
    ----------
    points : array_like of shape (n, k)
        One row per trial, one column per objective.
    directions : sequence of {"minimize", "maximize"}, optional
        Each column's direction (default: every column minimised).

    Returns
    -------
    ndarray of int
        The front's row positions, in increasing order.

    Examples
    --------
    >>> pareto_front([[1, 4], [2, 2], [3, 3], [4, 1], [2, 2]]).tolist()
    [0, 1, 3, 4]
    >>> pareto_front([[1, 4], [2, 2], [3, 3]], ["minimize", "maximize"]).tolist()
    [0]
    """
    values = np.asarray(points, dtype=float)
    if directions is not None:
        values = values * np.array(
            [-1.0 if d == "maximize" else 1.0 for d in directions]
        )
    if values.ndim != 2:
        msg = f"points must be a 2-D array (trials × objectives), got shape {values.shape}"
        raise ValueError(msg)
    n = len(values)
    if n == 0:
        return np.zeros(0, dtype=np.intp)
    # each pass keeps a front row (the first left, lexicographically smallest)
    # and drops what it dominates: O(n × front size), vectorised
    order = np.lexsort(values.T[::-1])
    candidates, left = order, values[order]
    i = 0
    while i < len(left):
        row = left[i]
        keep = np.any(left < row, axis=1) | np.all(left == row, axis=1)
        candidates, left = candidates[keep], left[keep]
        i = int(np.count_nonzero(keep[:i])) + 1
    return np.sort(candidates).astype(np.intp)


def hypervolume_2d(points: ArrayLike, reference: ArrayLike) -> float:
    """The area that two minimised objectives' ``points`` dominate, up to
    ``reference`` (points beyond it count for nothing).

    >>> hypervolume_2d([[1, 3], [2, 2], [3, 1]], [4, 4])
    6.0
    """
    values = np.asarray(points, dtype=float).reshape(-1, 2)
    ref = np.asarray(reference, dtype=float)
    inside = values[np.all(values < ref, axis=1)]
    if not len(inside):
        return 0.0
    front = inside[pareto_front(inside)]
    front = front[np.argsort(front[:, 0])]
    area, ceiling = 0.0, ref[1]
    for x, y in front:
        if y < ceiling:
            area += (ref[0] - x) * (ceiling - y)
            ceiling = y
    return float(area)
