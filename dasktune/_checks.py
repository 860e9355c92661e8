"""Argument checks shared by the public functions (raised before any work)."""

from __future__ import annotations

import reprlib
from collections.abc import Callable
from functools import partial
from typing import Any

__all__ = ["check_callable", "check_int", "check_timeout", "func_name", "short_repr"]

_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 60


def short_repr(value: Any) -> str:
    """A repr cut to about 60 characters, for error messages and notes."""
    return _repr.repr(value)


def check_callable(name: str, fun: object) -> None:
    """Raise ``TypeError`` unless ``fun`` is callable."""
    if not callable(fun):
        msg = f"{name} must be callable, got {type(fun).__name__}: {short_repr(fun)}"
        raise TypeError(msg)


def check_int(
    name: str, value: object, minimum: int, *, optional: bool = False
) -> None:
    """Raise ``ValueError`` unless ``value`` is an integer >= ``minimum``
    (or ``None`` when ``optional``)."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        msg = f"{name} must be an integer >= {minimum}, got {value!r}"
        raise ValueError(msg)


def check_timeout(timeout: object, name: str = "timeout") -> None:
    """Raise ``ValueError`` unless ``timeout`` is ``None`` or a positive number."""
    if timeout is None:
        return
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not timeout > 0
    ):
        msg = f"{name} must be a positive number of seconds or None, got {timeout!r}"
        raise ValueError(msg)


def func_name(fun: Callable[..., Any]) -> str:
    """A short readable name for ``fun``, for task keys on the dashboard."""
    while isinstance(fun, partial):
        fun = fun.func
    name = getattr(fun, "__name__", None) or type(fun).__name__
    return "lambda" if name == "<lambda>" else name
