"""Argument checks shared by the public functions (raised before any work)."""

from __future__ import annotations

import math
import os
import re
import reprlib
from collections.abc import Callable
from functools import partial
from typing import Any

__all__ = [
    "check_callable",
    "check_int",
    "check_store",
    "check_timeout",
    "func_name",
    "key_part",
    "short_repr",
    "store_url",
]

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


def check_store(store: object) -> None:
    """Raise ``TypeError`` unless ``store`` is a URL, a path or an open store."""
    from dasktune.store.sql import TrialStore

    if not isinstance(store, str | os.PathLike | TrialStore):
        msg = (
            "store must be a SQLAlchemy URL string such as 'sqlite:///trials.db' or "
            "'postgresql://user@host/db', the path of a SQLite file, or an open "
            "dasktune.store.sql.TrialStore, "
            f"got {type(store).__name__}: {short_repr(store)}"
        )
        raise TypeError(msg)


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:")  # not "C:"


def store_url(store: str | os.PathLike[str]) -> str:
    """The SQLAlchemy URL of ``store``: a URL as it is, a path as a SQLite file.

    ``"trials.db"`` and ``pathlib.Path("trials.db")`` become
    ``"sqlite:////abs/dir/trials.db"`` (the file, made if missing, as
    ``dasktune run --store`` takes it); ``":memory:"`` becomes ``"sqlite://"``.
    A string that starts like a URL but lacks its ``//`` (``"postgresql:host"``)
    is refused rather than taken as a file name.
    """
    if isinstance(store, os.PathLike):
        path = os.fspath(store)
        if isinstance(path, str) and path:
            return f"sqlite:///{os.path.abspath(path)}"
    elif isinstance(store, str) and store.strip():
        if "://" in store:
            return store
        if store == ":memory:":
            return "sqlite://"
        if not _SCHEME.match(store):
            return f"sqlite:///{os.path.abspath(store)}"
        msg = (
            f"store {store!r} starts like a URL but is not one: write "
            "'scheme://...' ('postgresql://user@host/db', 'sqlite:///trials.db'), "
            "or give the path of a SQLite file"
        )
        raise ValueError(msg)
    msg = (
        "store must be a database URL such as 'sqlite:///trials.db' or "
        "'postgresql://user@host/db', or the path of a SQLite file, got "
        f"{type(store).__name__}: {store!r}"
    )
    raise ValueError(msg)


def func_name(fun: Callable[..., Any]) -> str:
    """A short readable name for ``fun``, for task keys on the dashboard."""
    while isinstance(fun, partial):
        fun = fun.func
    name = getattr(fun, "__name__", None) or type(fun).__name__
    return "lambda" if name == "<lambda>" else name


def key_part(name: str) -> str:
    """``name`` as it survives in a Dask task group's name.

    Dask names a task group by ``dask.utils.key_split``, which keeps the words of a
    key up to the first one that is not purely alphabetic: ``map-neg_loglike-...``
    would show as ``map``. Runs of other characters become one ``-``.

    >>> key_part("neg_loglike")
    'neg-loglike'
    >>> key_part("svm grid 2")
    'svm-grid'
    """
    return re.sub(r"[^A-Za-z]+", "-", name).strip("-") or "x"
