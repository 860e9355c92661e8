"""Argument checks shared by the public functions (raised before any work)."""

from __future__ import annotations

import math
import os
import re
import reprlib
import urllib.parse
from collections.abc import Callable
from functools import partial
from typing import Any

__all__ = [
    "check_bool",
    "check_callable",
    "check_int",
    "check_store",
    "check_timeout",
    "func_name",
    "key_part",
    "redact",
    "short_repr",
    "sqlite_file",
    "store_url",
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


#: a name that starts like a URL of a database SQLAlchemy knows, missing its
#: ``//`` (``postgresql:host/db``): refused rather than taken for a file name
_SCHEME = re.compile(
    r"(sqlite|postgres|postgresql|mysql|mariadb|oracle|mssql|cockroachdb)"
    r"(\+\w+)?:",
    re.IGNORECASE,
)


def store_url(store: str | os.PathLike[str]) -> str:
    """The SQLAlchemy URL of ``store``: a URL as it is, a path as a SQLite file.

    Parameters
    ----------
    store : str or path-like
        A URL (``"postgresql://user@host/db"``, ``"sqlite:///trials.db"``),
        ``":memory:"``, or the path of a SQLite file (``"trials.db"``,
        ``"~/runs/trials.db"``, ``pathlib.Path(...)``), made if missing.

    Returns
    -------
    str
        The URL; a path becomes ``"sqlite:////abs/dir/trials.db"``, resolved
        against the current directory now (as ``dasktune run --store`` takes
        it), ``~`` expanded and the characters a URL reserves escaped.

    Raises
    ------
    ValueError
        For an empty store, or a name that starts like a database URL but
        lacks its ``//`` (``"postgresql:host/db"``).
    """
    if isinstance(store, os.PathLike):
        path = os.fspath(store)
        if isinstance(path, str) and path:
            return _sqlite_url(path)
    elif isinstance(store, str) and store.strip():
        if "://" in store:
            return store
        if store == ":memory:":
            return "sqlite://"
        if not _SCHEME.match(store):
            return _sqlite_url(store)
        shown = redact(re.sub(r"^([^:]*:)[^@]*@", r"\1***@", store))
        msg = (
            f"store {shown!r} starts like a database URL but is not one: write "
            "'scheme://...' ('postgresql://user@host/db', 'sqlite:///trials.db'), "
            f"or './{shown}' for a SQLite file of that name"
        )
        raise ValueError(msg)
    msg = (
        "store must be a database URL such as 'sqlite:///trials.db' or "
        "'postgresql://user@host/db', or the path of a SQLite file, got "
        f"{type(store).__name__}: {store!r}"
    )
    raise ValueError(msg)


def _sqlite_url(path: str) -> str:
    full = os.path.abspath(os.path.expanduser(path))
    # "?", "#" and "%" would be read as the URL's query, fragment and escapes
    return "sqlite:///" + urllib.parse.quote(full, safe="/\\:")


def sqlite_file(url: str) -> str | None:
    """The file a ``sqlite:///`` URL names (unescaped), or ``None`` for any
    other URL (another database, SQLite in memory)."""
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///") :].split("?", 1)[0]
    return urllib.parse.unquote(path) or None


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
