"""The store's engine: how a URL becomes connections, per database.

SQLite: a file checked writable before SQLite opens it (read-only stores on a
``query_only`` connection), WAL with ``synchronous=NORMAL``, a 60 s busy
timeout, the write lock taken at ``BEGIN`` (``BEGIN IMMEDIATE``: claims are
read-then-write); in memory, one connection shared by every thread.
PostgreSQL: psycopg 3 else psycopg2, a 10 s connection timeout, a plan per
statement's own parameters.
"""

from __future__ import annotations

import importlib.util
import os
import sqlite3
import time
import urllib.parse
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool, StaticPool

from dasktune.exceptions import StoreError

__all__ = ["make_engine", "wal"]


_WAL_PAGES = 20_000  # pages of the WAL a SQLite writer lets grow between checkpoints


_WAL_BYTES_KEPT = 16 * 2**20  # the size a SQLite WAL is cut back to once copied


#: how long a PostgreSQL connection may take (the URL's ``?connect_timeout=``
#: overrides it)
_PG_CONNECT = {"connect_timeout": 10}


def _postgres_driver(parsed: sa.engine.URL, display: str) -> sa.engine.URL:
    """``postgresql://`` with an installed driver: psycopg 3, else psycopg2."""
    if parsed.drivername != "postgresql":
        return parsed
    for module, driver in (("psycopg", "postgresql+psycopg"),
                           ("psycopg2", "postgresql+psycopg2")):  # fmt: skip
        if importlib.util.find_spec(module) is not None:
            return parsed.set(drivername=driver)
    msg = (
        f"the store {display} needs a PostgreSQL driver and none is installed: "
        "pip install 'psycopg[binary]' (psycopg 3; dasktune's extra: pip install -e "
        "'.[postgresql]'), or name one in the URL "
        "(postgresql+psycopg2://...)"
    )
    raise StoreError(msg)


def make_engine(parsed: sa.engine.URL, display: str, readonly: bool) -> Engine:
    if parsed.get_backend_name() != "sqlite":
        parsed = _postgres_driver(parsed, display)
        try:
            # libpq waits for an unanswering server as long as TCP does
            waits = {} if "connect_timeout" in parsed.query else _PG_CONNECT
            engine = sa.create_engine(parsed, pool_pre_ping=True, connect_args=waits)
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as err:
            msg = f"cannot open the store {display}: {err}"
            raise StoreError(msg) from err
        except ImportError as err:
            msg = (
                f"cannot open the store {display}: its driver is not installed "
                f"({err}); for PostgreSQL: pip install 'psycopg[binary]'"
            )
            raise StoreError(msg) from err
        if engine.dialect.name == "postgresql":
            event.listen(engine, "connect", _custom_plans)
        return engine
    in_memory = parsed.database in (None, "", ":memory:")
    if in_memory:
        engine = sa.create_engine(
            parsed,
            poolclass=StaticPool,
            connect_args={"check_same_thread": False},
        )
    else:
        path = os.path.abspath(parsed.database or "")
        if os.path.isdir(path):
            msg = f"the store {display} is a directory; give a SQLite file's path"
            raise StoreError(msg)
        if readonly:
            if not os.path.isfile(path):
                msg = f"no store at {path}"
                raise StoreError(msg)
            # nothing can be written: SQLite refuses writes on a query_only
            # connection; opened read-write (where the file and its folder
            # are writable) so that the last reader to close removes the
            # -wal and -shm files opening a WAL store makes (a mode=ro
            # connection cannot, and left them beside the store)
            writable = os.access(path, os.W_OK) and os.access(
                os.path.dirname(path), os.W_OK
            )
            uri = f"file:{urllib.parse.quote(path)}?mode={'rw' if writable else 'ro'}"
            engine = sa.create_engine(
                "sqlite://",
                creator=lambda: sqlite3.connect(uri, uri=True, timeout=60),
                poolclass=NullPool,
            )
        else:
            _check_writable(path, display)
            engine = sa.create_engine(parsed, connect_args={"timeout": 60})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # let SQLAlchemy, not the sqlite3 module, decide where transactions begin
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if readonly:
            cursor.execute("PRAGMA query_only=ON")
        if not in_memory and not readonly:
            cursor.execute("PRAGMA synchronous=NORMAL")
            # a big search's writes each dirty a random page of the hash index;
            # a checkpoint copies (and syncs) them all: every 20,000 pages of
            # the WAL, not 1,000, it copies a page written many times once
            cursor.execute(f"PRAGMA wal_autocheckpoint={_WAL_PAGES}")
            # and the WAL is cut back to 16 MB when it starts over after a burst
            cursor.execute(f"PRAGMA journal_size_limit={_WAL_BYTES_KEPT}")
        # a search of a million trials has ~100 MB of indexes: keep them cached
        cursor.execute("PRAGMA cache_size=-65536")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # take the write lock at the start: claims are read-then-write
        read = readonly or conn.get_execution_options().get("dasktune_read", False)
        sql = "BEGIN" if read else "BEGIN IMMEDIATE"
        try:  # on sqlite3 itself: SQLAlchemy's execution costs a turn more
            conn.connection.driver_connection.execute(sql)  # type: ignore[union-attr]
        except sqlite3.Error as err:
            raise sa.exc.DBAPIError.instance(sql, (), err, sqlite3.Error) from err

    return engine


def _check_writable(path: str, display: str) -> None:
    """Refuse a SQLite file (or its folder) this user may not write, before
    SQLite opens it: it would open the file read-only, fail at the first
    write, and leave ``-wal``/``-shm`` files it cannot remove."""
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        msg = (
            f"cannot open the store {display}: its folder {folder} does not "
            "exist (or this user may not enter it); make it first, or give a "
            "path in an existing folder"
        )
        raise StoreError(msg)
    if os.path.exists(path) and not os.access(path, os.W_OK):
        problem = "the file is read-only for this user"
    elif not os.access(folder, os.W_OK | os.X_OK):
        # SQLite writes its journal (and WAL) beside the file
        problem = f"this user may not write in its folder {folder}"
    else:
        return
    msg = (
        f"cannot write the store {display}: {problem}; a search writes its "
        "store: give a file this user may write (dasktune show reads one "
        "without writing)"
    )
    raise StoreError(msg)


def _custom_plans(dbapi_connection: Any, _record: Any) -> None:
    """Plan each of the store's statements for its own parameters.

    The driver's lookups by hash (``param_hash IN (...)``, one statement per
    batch size) are prepared by psycopg after a few runs, and PostgreSQL then
    switches to one generic plan for all parameters: measured on a store of
    11,000 trials, every lookup of 256 hashes went from 8-15 ms to 130-230 ms
    from the eleventh on. ``force_custom_plan`` (PostgreSQL 12+) keeps the
    index; older servers keep their default.
    """
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SET plan_cache_mode = force_custom_plan")
    except Exception:  # a server before 12 has no such setting
        dbapi_connection.rollback()
    else:
        dbapi_connection.commit()
    finally:
        cursor.close()


def wal(engine: Engine, patience: float = 60.0) -> None:
    """Switch a SQLite file to WAL (persistent; once its schema is checked).

    The switch needs the file to itself, and SQLite answers "database is
    locked" at once, without its busy timeout, while another process holds it
    (drivers opening a new store together): tried again until one of them has
    switched it (read without a lock), for ``patience`` seconds at most.
    """
    deadline = time.monotonic() + patience
    delay = 0.005
    raw = engine.raw_connection()
    try:
        sqlite = raw.driver_connection
        while True:
            try:
                mode = sqlite.execute("PRAGMA journal_mode").fetchone()[0]  # type: ignore[union-attr]
                if str(mode).lower() != "wal":
                    sqlite.execute("PRAGMA journal_mode=WAL")  # type: ignore[union-attr]
                return
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or time.monotonic() > deadline:
                    raise
            time.sleep(delay)
            delay = min(2 * delay, 0.1)
    finally:
        raw.close()
