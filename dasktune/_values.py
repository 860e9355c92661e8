"""What counts as an objective's value: one rule, read everywhere a value is read.

scipy and noisyopt take a Python number, a NumPy scalar, or an array holding one
number (``np.array(0.3)``, ``np.array([0.3])``, ``np.array([[0.3]])``: what
``norm.rvs(size=1)`` or ``x @ A @ x`` with a column gives). ``float()`` of an
array of shape ``(1,)`` is an error from NumPy 2.4 on, so every value goes
through :func:`as_value` instead. No Dask import here: the ask/tell optimizers
use it too.
"""

from __future__ import annotations

import reprlib
from typing import Any

import numpy as np

__all__ = ["as_value"]

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
