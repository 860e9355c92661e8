"""Where a store is: a SQLAlchemy URL from a URL, ``:memory:`` or a path.

What ``Search(store=...)``, ``minimize(store=...)`` and ``dasktune run
--store`` take, turned into the URL :class:`~dasktune.store.sql.TrialStore`
opens; and back, the file a SQLite URL names.
"""

from __future__ import annotations

import os
import re
import urllib.parse

from dasktune._checks import redact

__all__ = ["sqlite_file", "store_url"]


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
