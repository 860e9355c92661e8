"""Argument checks shared by the public functions (raised before any work)."""

from __future__ import annotations

import math
import re
import reprlib
from collections.abc import Callable
from functools import partial
from typing import Any

__all__ = [
    "check_bool",
    "check_callable",
    "check_int",
    "check_timeout",
    "func_name",
    "redact",
    "short_repr",
]

_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 60


# a URL's password where SQLAlchemy reads it: "scheme://user:PASSWORD@" (up to
# the first "@"), and a password given as a query or conninfo parameter
# ("?password=...", "&sslpassword=...", "password='...'" of a libpq DSN)
_URL_PASSWORD = re.compile(r"(\b[\w+.-]+://[^:/@\s'\"]*:)[^@]*?@")
_KEY_PASSWORD = re.compile(
    r"(?i)(\b(?:password|passwd|pwd|sslpassword)\s*=\s*)('[^']*'|[^&;#\s'\"]*)"
)


def redact(text: str) -> str:
    """``text`` with every password of a database URL in it hidden as ``***``:
    ``user:pw@``, a ``?password=`` (or ``passwd``, ``pwd``, ``sslpassword``)
    parameter, a libpq ``password=...`` — what every message, ``repr``, hint
    and log line shows of a store's URL.

    >>> redact("postgresql://me:s3cret@db.lan:5432/x?password=p2&sslmode=require")
    'postgresql://me:***@db.lan:5432/x?password=***&sslmode=require'
    >>> redact("cannot open 'postgresql://me@h/x?sslpassword=k': bad")
    "cannot open 'postgresql://me@h/x?sslpassword=***': bad"
    >>> redact("host=h password='a b' user=u")
    'host=h password=*** user=u'
    """
    text = _URL_PASSWORD.sub(r"\1***@", text)
    return _KEY_PASSWORD.sub(r"\1***", text)


def short_repr(value: Any) -> str:
    """A repr cut to about 60 characters, for error messages and notes."""
    return _repr.repr(value)


def check_callable(name: str, fun: object) -> None:
    """Raise ``TypeError`` unless ``fun`` is callable."""
    if not callable(fun):
        msg = f"{name} must be callable, got {type(fun).__name__}: {short_repr(fun)}"
        raise TypeError(msg)


def check_bool(name: str, value: object) -> None:
    """Raise ``TypeError`` unless ``value`` is ``True`` or ``False`` (a string
    such as ``"no"`` is truthy: taken as a flag, it would mean yes).

    >>> check_bool("progress", "no")
    Traceback (most recent call last):
    ...
    TypeError: progress must be True or False, got str: 'no'
    """
    if isinstance(value, bool) or type(value).__name__ == "bool_":  # numpy's too
        return
    msg = f"{name} must be True or False, got {type(value).__name__}: {value!r:.60}"
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
    """Raise ``ValueError`` unless ``timeout`` is ``None`` or a positive, finite
    number (Dask cannot wait ``inf`` seconds; ``None`` is no limit).

    >>> check_timeout(float("inf"))
    Traceback (most recent call last):
    ...
    ValueError: timeout must be a positive, finite number of seconds, or None for no limit, got inf
    """
    if timeout is None:
        return
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 < timeout < math.inf
    ):
        msg = (
            f"{name} must be a positive, finite number of seconds, or None for no "
            f"limit, got {timeout!r}"
        )
        raise ValueError(msg)


def func_name(fun: Callable[..., Any]) -> str:
    """A short readable name for ``fun``, for task keys on the dashboard."""
    while isinstance(fun, partial):
        fun = fun.func
    name = getattr(fun, "__name__", None) or type(fun).__name__
    return "lambda" if name == "<lambda>" else name
