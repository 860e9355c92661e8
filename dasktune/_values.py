"""What counts as an objective's value: one rule, read everywhere a value is read.

scipy and noisyopt take a Python number, a NumPy scalar, or an array holding one
number (``np.array(0.3)``, ``np.array([0.3])``, ``np.array([[0.3]])``: what
``norm.rvs(size=1)`` or ``x @ A @ x`` with a column gives). ``float()`` of an
array of shape ``(1,)`` is an error from NumPy 2.4 on, so every value goes
through :func:`as_value` instead. No Dask import here: the ask/tell optimizers
use it too.
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "CONSTRAINTS_KEY",
    "as_constraints",
    "as_value",
    "as_values",
    "check_not_nan",
    "feasible",
    "normalize_result",
    "read_result",
    "violation",
]

_NUMERIC_KINDS = "biuf"  # bool, signed and unsigned integers, floats
_EXPECTED = (
    "a real number: a Python int or float, a NumPy scalar, or an array of size 1 "
    "(0-d, shape (1,), (1, 1), ...)"
)


def as_value(raw: Any, what: str = "the objective's value") -> float:
    """``raw`` as a ``float``, when it holds exactly one real number.

    Parameters
    ----------
    raw : object
        A Python number, a NumPy scalar, or an array-like of size 1.
    what : str
        Names ``raw`` in the error message.

    Returns
    -------
    float

    Raises
    ------
    TypeError
        For anything else (a longer array, a string, ``None``, a complex
        number), saying what came (its type, and shape for an array).

    Examples
    --------
    >>> import numpy as np
    >>> as_value(2), as_value(np.float32(0.5)), as_value(np.array([[0.25]]))
    (2.0, 0.5, 0.25)
    >>> as_value(np.zeros(3))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    TypeError: the objective's value must be a real number: ...; got ndarray of shape (3,) and dtype float64: array([0., 0., 0.]); ...
    """
    if isinstance(raw, bool | int | float):
        return float(raw)
    if not isinstance(raw, str | bytes) and raw is not None:
        try:
            array = np.asarray(raw)
        except (TypeError, ValueError):  # ragged nesting: described below
            array = None
        if array is not None and array.size == 1 and array.dtype.kind in _NUMERIC_KINDS:
            return float(array.reshape(-1)[0])
    if isinstance(raw, np.ndarray | np.generic):
        came = f"{type(raw).__name__} of shape {raw.shape} and dtype {raw.dtype}"
    elif hasattr(raw, "__len__") and not isinstance(raw, str | bytes):
        came = f"{type(raw).__name__} of length {len(raw)}"
    else:
        came = type(raw).__name__
    msg = (
        f"{what} must be {_EXPECTED}; got {came}: {reprlib.repr(raw)}; return one "
        "number, e.g. float(np.sum(...)) or value.item()"
    )
    raise TypeError(msg)


def _elements(raw: Any) -> list[Any] | None:
    """The elements of a flat sequence or 1-D array, else ``None``."""
    if isinstance(raw, str | bytes | dict) or raw is None:
        return None
    if isinstance(raw, np.ndarray):
        return list(raw) if raw.ndim == 1 else None
    if isinstance(raw, list | tuple):
        return list(raw)
    return None


def as_values(
    raw: Any, n: int, what: str = "the objective's value"
) -> tuple[float, ...]:
    """``raw`` as ``n`` floats: one per objective of a search.

    With ``n == 1`` this is ``(as_value(raw, what),)``; with more, ``raw`` must
    be a sequence (or 1-D array) of exactly ``n`` real numbers.

    Raises
    ------
    TypeError
        For anything else, saying how many values were expected and what came.

    Examples
    --------
    >>> as_values(0.5, 1), as_values((1, np.float64(2.5)), 2)
    ((0.5,), (1.0, 2.5))
    >>> as_values([1.0], 2)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    TypeError: the objective's value must be 2 real numbers (one per objective...); got list of length 1: [1.0]
    """
    if n == 1:
        return (as_value(raw, what),)
    elements = _elements(raw)
    if elements is not None and len(elements) == n:
        return tuple(
            as_value(e, f"objective {i} of {what}") for i, e in enumerate(elements)
        )
    came = (
        f"{type(raw).__name__} of length {len(elements)}"
        if elements is not None
        else f"{type(raw).__name__}"
        + (f" of shape {raw.shape}" if isinstance(raw, np.ndarray) else "")
    )
    msg = (
        f"{what} must be {n} real numbers (one per objective, in the order of "
        f"the search's directions); got {came}: {reprlib.repr(raw)}"
    )
    raise TypeError(msg)


def as_constraints(raw: Any) -> tuple[float, ...]:
    """Constraint values as floats: ``c <= 0`` is satisfied, ``c > 0`` violated.

    ``raw`` is one number or a flat sequence of them (what an objective puts
    under its ``"constraints"`` key); ``NaN`` is refused, as Optuna refuses it.

    >>> as_constraints(-1), as_constraints([0.0, np.float32(2)])
    ((-1.0,), (0.0, 2.0))
    """
    elements = _elements(raw)
    if elements is None:
        elements = [raw]
    values = tuple(
        as_value(e, f"constraint {i} (the objective's 'constraints')")
        for i, e in enumerate(elements)
    )
    if any(v != v for v in values):
        msg = (
            f"the objective's 'constraints' must be real numbers (<= 0 satisfied), "
            f"got NaN in {values!r}"
        )
        raise ValueError(msg)
    return values


def feasible(constraints: Sequence[float] | None) -> bool:
    """Whether a trial satisfies its constraints (every ``c <= 0``; a trial
    without constraints does).

    >>> feasible(None), feasible((0.0, -1.0)), feasible([0.5])
    (True, True, False)
    """
    return constraints is None or all(c <= 0 for c in constraints)


def violation(constraints: tuple[float, ...] | None) -> float | None:
    """How far constraints are violated: the sum of their positive parts
    (0: feasible), ``None`` for a trial without constraints.

    >>> violation((-1.0, 0.5, 2.0)), violation((0.0,)), violation(None)
    (2.5, 0.0, None)
    """
    if constraints is None:
        return None
    return float(sum(c for c in constraints if c > 0))


#: the key of an objective's dict (or auxiliary dict) holding its constraint
#: values, ``c <= 0`` satisfied: stored apart from the auxiliary data
CONSTRAINTS_KEY = "constraints"


def normalize_result(raw: Any) -> tuple[float, dict[str, Any]]:
    """An objective's return value as ``(value, auxiliary data)``.

    The value is read by :func:`dasktune._values.as_value`: a number, a NumPy
    scalar or an array of size 1.

    >>> normalize_result(1.5)
    (1.5, {})
    >>> normalize_result((2, {"n": 3}))
    (2.0, {'n': 3})
    >>> import numpy as np
    >>> normalize_result({"loss": np.array([0.5]), "acc": 0.9})
    (0.5, {'acc': 0.9})
    """
    values, aux = _split(raw, 1)
    return values[0], aux


def _split(raw: Any, objectives: int) -> tuple[tuple[float, ...], dict[str, Any]]:
    if isinstance(raw, dict):
        if "loss" not in raw:
            msg = f"an objective returning a dict must give a 'loss' key, got {raw!r}"
            raise TypeError(msg)
        aux = {k: v for k, v in raw.items() if k != "loss"}
        return as_values(
            raw["loss"], objectives, "the 'loss' of the objective's dict"
        ), aux
    if isinstance(raw, tuple) and len(raw) == 2 and isinstance(raw[1], dict):
        values = as_values(
            raw[0], objectives, "the value in the objective's (value, dict)"
        )
        return values, dict(raw[1])
    what = "the objective's value (or the 'loss' of a dict, or (value, dict))"
    return as_values(raw, objectives, what), {}


def check_not_nan(values: tuple[float, ...], params: Any) -> None:
    """Refuse a NaN objective value, naming the parameters that gave it."""
    if any(math.isnan(v) for v in values):
        shown = values[0] if len(values) == 1 else values
        msg = (
            f"the objective returned NaN for {params!r}: {shown!r}; return a "
            "number (inf ranks a point worst) or raise an error saying why it "
            "has none (either way the rest of the search goes on)"
        )
        raise ValueError(msg)


def read_result(
    raw: Any, objectives: int = 1
) -> tuple[tuple[float, ...], dict[str, Any], tuple[float, ...] | None]:
    """An objective's return value as ``(values, auxiliary data, constraints)``.

    ``values`` holds one float per objective: a number (one objective), or a
    sequence of ``objectives`` numbers — returned as they are, as the
    ``"loss"`` of a dict, or first in a ``(values, dict)`` pair. Constraint
    values (``c <= 0`` satisfied) come under the dict's ``"constraints"`` key
    and are taken out of the auxiliary data.

    Raises
    ------
    TypeError
        For a value that is not ``objectives`` real numbers, or constraints
        that are not real numbers.
    ValueError
        For a NaN constraint (a NaN value is the caller's to refuse, naming
        the parameters: :func:`check_not_nan`).

    >>> read_result(((1, 2), {"constraints": [0.5], "n": 3}), 2)
    ((1.0, 2.0), {'n': 3}, (0.5,))
    """
    values, aux = _split(raw, objectives)
    constraints = None
    if CONSTRAINTS_KEY in aux:
        constraints = as_constraints(aux.pop(CONSTRAINTS_KEY))
    return values, aux, constraints
