"""The store's connection policy: transactions, reads, compiled statements."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from dasktune.exceptions import StoreError

__all__ = ["IN_CHUNK", "StoreConnection"]

IN_CHUNK = 512  # parameters per IN (...) clause, under SQLite's variable limit


#: compiled SQL by (dialect, paramstyle, schema version, statement name)
_COMPILED: dict[
    tuple[Any, ...], tuple[str, tuple[str, ...] | None, dict[str, Any]]
] = {}


class _CursorResult:
    """What :meth:`TrialStore._run` callers read of a statement run on the
    sqlite3 cursor: ``rowcount``, ``scalar_one()`` and ``cursor.fetchall()``,
    as SQLAlchemy's result gives them."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self.cursor = cursor
        self.rowcount = cursor.rowcount

    def one(self) -> tuple[Any, ...]:
        rows = self.cursor.fetchall()
        if len(rows) != 1:
            msg = f"expected one row, got {len(rows)}"
            raise (
                sa.exc.NoResultFound(msg)
                if not rows
                else sa.exc.MultipleResultsFound(msg)
            )
        return tuple(rows[0])

    def scalar_one(self) -> Any:
        return self.one()[0]


class StoreConnection:
    """How a :class:`~dasktune.store.sql.TrialStore` talks to its database.

    One transaction at a time per process; on SQLite one connection kept for
    every write and the turn's statements run on the sqlite3 cursor itself,
    compiled once per process; reads in deferred transactions that never take
    the write lock; a failure to reach or read the database as one line.
    """

    url: str
    readonly: bool
    display_url: str
    engine: Engine
    schema_version: int
    _lock: threading.RLock
    _writer: Connection | None
    _sql_key: tuple[str, str]

    @contextlib.contextmanager
    def _connection_errors(self) -> Iterator[None]:
        """Turn a failure to reach or read the database into a one-line error."""
        try:
            yield
        except sa.exc.OperationalError as err:
            reason = str(err.orig).strip().splitlines()[0] if err.orig else str(err)
            msg = f"cannot use the store {self.display_url}: {reason}"
            if reason == "unable to open database file":  # SQLite's only word
                msg += " (does its directory exist, and may this user write there?)"
            elif "readonly database" in reason:
                msg += (
                    " (may this user write the file and its folder? dasktune "
                    "show reads a store without writing)"
                )
            raise StoreError(msg) from err
        except sa.exc.DatabaseError as err:
            reason = str(err.orig).strip().splitlines()[0] if err.orig else str(err)
            msg = (
                f"cannot use the store {self.display_url}: {reason} "
                "(is it a database dasktune can read?)"
            )
            raise StoreError(msg) from err

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Connection]:
        # one transaction at a time per process: an in-memory store shares a
        # single connection between the driver and its heartbeat thread
        if self.readonly:
            msg = f"the store {self.display_url} was opened read-only"
            raise StoreError(msg)
        with self._lock:
            if self._sql_key[0] != "sqlite":
                with self.engine.begin() as conn:
                    yield conn
                return
            # SQLite: one connection kept for the writes (a pool's checkout and
            # return per transaction cost more than a turn's own statements)
            writer = self._writer
            if writer is None or writer.closed:
                writer = self._writer = self.engine.connect()
            with writer.begin():
                yield writer

    @property
    def _in_memory(self) -> bool:
        # the store's own URL: a read-only file store's engine is "sqlite://"
        url = sa.engine.make_url(self.url)
        return url.get_backend_name() == "sqlite" and url.database in (
            None, "", ":memory:",
        )  # fmt: skip

    def _run(
        self,
        conn: Connection,
        name: str,
        build: Callable[[], Any],
        params: dict[str, Any] | list[dict[str, Any]],
    ) -> Any:
        """Execute the statement ``build()`` makes, compiled once per store
        under ``name``, as the driver's own SQL (no expression built, no
        compilation looked up per call); a list of ``params`` runs it once
        for each. Every value that changes between calls must be a named bind
        parameter; others (a ``LIMIT 1``) keep the value they were compiled
        with."""
        sql, order, fixed = self._compiled(name, build)
        args: Any
        if fixed:
            params = (
                [{**fixed, **p} for p in params]
                if isinstance(params, list)
                else {**fixed, **params}
            )
        if order is None:
            args = params
        elif isinstance(params, list):
            args = [tuple(p[k] for k in order) for p in params]
        else:
            args = tuple(params[k] for k in order)
        if self._sql_key[0] != "sqlite":
            return conn.exec_driver_sql(sql, args)
        # SQLite: straight to the sqlite3 cursor, in the transaction the
        # connection holds (SQLAlchemy's execution context per statement costs
        # more than SQLite's own work for a turn's few rows)
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            if isinstance(args, list):
                cursor.executemany(sql, args)
            else:
                cursor.execute(sql, args)
        except sqlite3.Error as err:
            raise sa.exc.DBAPIError.instance(sql, args, err, sqlite3.Error) from err
        return _CursorResult(cast("sqlite3.Cursor", cursor))

    def _compiled(
        self, name: str, build: Callable[[], Any]
    ) -> tuple[str, tuple[str, ...] | None, dict[str, Any]]:
        """The SQL of the statement ``build()`` makes, for a positional
        parameter style the order of its parameters, and the values of the
        parameters it fixed itself (a ``LIMIT``'s): compiled once per process
        for this dialect, paramstyle and schema version."""
        key = (*self._sql_key, self.schema_version, name)
        known = _COMPILED.get(key)
        if known is None:
            compiled = build().compile(dialect=self.engine.dialect)
            order = compiled.positiontup
            named = {b.key for b in compiled.binds.values() if not b.unique}
            fixed = {
                k: v for k, v in compiled.params.items()
                if k not in named and v is not None
            }  # fmt: skip
            known = _COMPILED[key] = (
                compiled.string,
                None if order is None else tuple(order),
                fixed,
            )
        return known

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection]:
        # a deferred BEGIN on SQLite: a read never takes the write lock
        with self._lock, self.engine.connect() as conn:
            yield conn.execution_options(dasktune_read=True)

    def close(self) -> None:
        """Release the store's connections."""
        with self._lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        self.engine.dispose()
