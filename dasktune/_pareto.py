"""The best trials: the Pareto front, and the one rule that ranks trials.

:func:`best_order` is the rule every reader of a search applies (the store's
front, ``dasktune show``, the plots): only feasible trials with every
objective's value count; with one objective they rank by value, with several
the front ranks by its first objective; ties go to the earlier trial.

NumPy only, no Dask: the store, the search and the plots use it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from dasktune.direction import Direction

__all__ = ["best_order", "hypervolume_2d", "pareto_front"]


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
        values = values * np.array([Direction(d).sign for d in directions])
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


def best_order(
    points: ArrayLike, directions: Sequence[str], feasible: ArrayLike | None = None
) -> NDArray[np.intp]:
    """The positions of the best rows of ``points``, best first.

    Rows that are infeasible or lack an objective's value (NaN) never count.
    With one objective every other row is ranked, by value; with several only
    the Pareto front is, by its first objective. Ties keep the rows' order
    (give rows by trial number: the earlier trial first).

    Parameters
    ----------
    points : array_like of shape (n, k)
        One row per trial, one column per objective.
    directions : sequence of {"minimize", "maximize"}
        Each column's direction (``k`` of them).
    feasible : array_like of bool, optional
        Which rows satisfy their constraints (default: all).

    Returns
    -------
    ndarray of int
        The ranked rows' positions.

    Examples
    --------
    >>> best_order([[3.0], [1.0], [2.0], [1.0]], ["minimize"]).tolist()
    [1, 3, 2, 0]
    >>> best_order([[3.0], [1.0], [2.0]], ["maximize"], [True, False, True]).tolist()
    [0, 2]
    >>> best_order([[1, 4], [2, 2], [3, 3], [4, 1]], ["minimize", "minimize"]).tolist()
    [0, 1, 3]
    """
    values = np.asarray(points, dtype=float).reshape(-1, len(directions))
    keep = ~np.isnan(values).any(axis=1)
    if feasible is not None:
        keep &= np.asarray(feasible, dtype=bool)
    rows = np.flatnonzero(keep)
    if len(directions) > 1:
        rows = rows[pareto_front(values[rows], directions)]
    first = Direction(directions[0]).sign * values[rows, 0]
    return rows[np.lexsort((rows, first))].astype(np.intp)


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
