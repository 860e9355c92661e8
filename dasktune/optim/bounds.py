"""Bounds as every entry point takes them: ``(low, high)`` pairs or ``scipy.optimize.Bounds``."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.optimize
from numpy.typing import NDArray

from dasktune._checks import short_repr

__all__ = ["as_pairs"]


def as_pairs(
    bounds: Any,
    *,
    finite: str | None = None,
    name: str = "bounds",
    fixed: bool = False,
) -> NDArray[np.float64]:
    """``bounds`` as an ``(n, 2)`` float array of ``(low, high)`` rows.

    Parameters
    ----------
    bounds : sequence of (low, high) or scipy.optimize.Bounds
        A ``Bounds`` with scalar ``lb`` and ``ub`` is one parameter.
    finite : str, optional
        When given, infinite bounds are refused; the string names who needs
        finite ones (for the error message).
    name : str
        The argument's name, for the error messages.
    fixed : bool
        Also take ``low == high``, a parameter held fixed (as scipy's
        ``differential_evolution`` does).

    Returns
    -------
    numpy.ndarray
        Shape ``(n, 2)``, ``n >= 1``, with ``low < high`` in every row
        (``low <= high`` with ``fixed``).

    Raises
    ------
    ValueError
        For anything else: not pairs, empty, ``low >= high``, NaN, or an
        infinite bound where ``finite`` is given.

    Examples
    --------
    >>> as_pairs(scipy.optimize.Bounds([0, -1], [1, 1])).tolist()
    [[0.0, 1.0], [-1.0, 1.0]]
    >>> as_pairs([(0, 1), (2, 3)]).tolist()
    [[0.0, 1.0], [2.0, 3.0]]
    """
    if isinstance(bounds, scipy.optimize.Bounds):
        try:
            low, high = np.broadcast_arrays(
                np.atleast_1d(np.asarray(bounds.lb, dtype=float)),
                np.atleast_1d(np.asarray(bounds.ub, dtype=float)),
            )
        except ValueError as err:
            msg = f"{name}: Bounds(lb, ub) need lb and ub of the same length, got {bounds!r}"
            raise ValueError(msg) from err
        pairs = np.column_stack([low.reshape(-1), high.reshape(-1)])
    else:
        try:
            pairs = np.asarray(bounds, dtype=float)
        except (TypeError, ValueError) as err:
            msg = (
                f"{name} must be a list of (low, high) pairs or scipy.optimize.Bounds, "
                f"got {short_repr(bounds)}"
            )
            raise ValueError(msg) from err
        if pairs.ndim != 2 or pairs.shape[1] != 2 or len(pairs) == 0:
            msg = (
                f"{name} must be a list of (low, high) pairs or scipy.optimize.Bounds, "
                f"got {short_repr(bounds)} (shape {pairs.shape}); give one pair per "
                "parameter"
            )
            raise ValueError(msg)
    if len(pairs) == 0:
        msg = f"{name} is empty; give one (low, high) pair per parameter"
        raise ValueError(msg)
    ordered = pairs[:, 0] <= pairs[:, 1] if fixed else pairs[:, 0] < pairs[:, 1]
    bad = np.flatnonzero(~ordered)
    if bad.size:
        i = int(bad[0])
        msg = (
            f"{name} need low {'<=' if fixed else '<'} high; parameter {i} has "
            f"({pairs[i, 0]:g}, {pairs[i, 1]:g})"
        )
        raise ValueError(msg)
    if finite is not None and not np.all(np.isfinite(pairs)):
        i = int(np.flatnonzero(~np.all(np.isfinite(pairs), axis=1))[0])
        msg = (
            f"{finite} needs finite {name}; parameter {i} has "
            f"({pairs[i, 0]:g}, {pairs[i, 1]:g}); give a finite (low, high) for "
            "every parameter"
        )
        raise ValueError(msg)
    return pairs
