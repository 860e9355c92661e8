"""The trial store: a durable, de-duplicated record of every trial.

The store is addressed by a SQLAlchemy URL: ``sqlite:///path.db`` (the default
file; WAL journal, ``synchronous=NORMAL``, a 60 s busy timeout), ``sqlite://``
(in memory, for one process) or ``postgresql://user:password@host/db`` (psycopg 3,
else psycopg2); a plain path (``trials.db``, ``~/runs/t.db``, a ``pathlib.Path``)
is a SQLite file, its absolute path escaped into a ``sqlite:///`` URL. The code
uses SQLAlchemy Core only. Nothing but JSON (and the raw bytes of the snapshots'
arrays of numbers) goes in: opening a store never unpickles anything, and
messages show the URL with its password hidden (:attr:`TrialStore.display_url`).

The contract (what :class:`TrialStore` guarantees):

- one row per (search, canonical parameter hash): a parameter set is claimed
  once, atomically, so two drivers never both evaluate it;
- :meth:`TrialStore.sync` writes a batch of results and claims the next trials
  in one transaction;
- a trial left ``running`` by a driver that died is taken over once that
  driver's heartbeat is older than ``stale_after`` (30 s by default; drivers beat
  every 5 s), both read on the database's own clock (no host's clock is
  compared with another's), and at once when the driver's process is missing
  from this process's own PID namespace on this boot of this machine
  (:mod:`dasktune.store.liveness`); trials that a driver releases on exit
  (timeout, Ctrl-C) go back to ``queued`` and are taken over at once;
- claims are serialised per search: SQLite's ``BEGIN IMMEDIATE`` holds the write
  lock, PostgreSQL locks the search's row (``SELECT ... FOR UPDATE``);
- the schema is created inside a write transaction (on PostgreSQL under an
  advisory lock), so drivers starting together do not race; a database with
  tables dasktune did not make under its names, a damaged schema or a newer
  one is refused before anything is written, as are a SQLite file holding
  only other tables (a file is one application's; a PostgreSQL database is
  shared, and takes dasktune's tables beside others) and a file or folder
  this user may not write; ``readonly=True`` (``dasktune show``) never
  writes, and refuses a database without dasktune's tables;
- a row damaged or written by hand is a :class:`StoreError` naming the trial
  (:mod:`dasktune.store.rows`), not a decoding error from deep in a read;
- the values a trial reports as it learns (its curve) are kept in a table of
  ``(search, trial number, step, value, time)``, written in batches
  (:meth:`TrialStore.add_values`); the first value stored for a step is kept
  (a trial re-run after a lost worker reports its steps again), and
  :meth:`TrialStore.read_values` gives them back in the order they were
  stored, which is what a pruner replays on resume. A ``done`` or ``pruned``
  trial is final: never overwritten.

Several objectives and constraints (schema 4): a search's ``directions``
(JSON list, one per objective) beside its first ``direction``; a trial's
``objectives`` (JSON list of every objective's value; ``value`` holds the
first), ``constraints`` (JSON list, ``c <= 0`` satisfied) and ``violation``
(the sum of the constraints' positive parts: 0 feasible, ``NULL`` without
constraints), so that the best trial is one SQL query that skips infeasible
trials.

A snapshot of a search's trials table (schema 5): the table a reader
builds from the rows (:class:`~dasktune.table.TrialTable`), kept as its
arrays' bytes and JSON (:meth:`~dasktune.table.TrialTable.dumps`) with the
search's seq it reaches, so that a new reader of a million trials loads one
value and reads only the rows written since, instead of converting every row.
It is a cache: rows are never deleted and every write bumps the row's seq,
so the snapshot and the rows after its seq are the whole table; a snapshot
is replaced only by a later one.

Schema versions: 2 added a change sequence per search; 3 the table of
reported values and the ``pruned`` status; 4 several objectives and
constraints; 5 the snapshots of trials tables; 6 the drivers' heartbeats on
the database's clock, and their machine and PID namespace (``node``). Older
stores are migrated when opened for writing.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import json
import operator
import os
import socket
import sqlite3
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from typing import Any, cast

import numpy as np
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool, StaticPool

from dasktune._checks import redact, store_url
from dasktune._pareto import pareto_front
from dasktune._values import violation
from dasktune.exceptions import SchemaVersionError, SearchMismatchError, StoreError
from dasktune.records import (
    FINAL,
    TRIAL_FIELDS,
    Claim,
    Decision,
    DecisionKind,
    Outcome,
    TrialStatus,
    decide,
    unclaimed_message,
)
from dasktune.store.liveness import DbEpoch, node, owner_gone
from dasktune.store.rows import DECODING_ERRORS, damaged_search, damaged_trial

__all__ = [
    "HEARTBEAT_SECONDS",
    "SCHEMA_VERSION",
    "STALE_AFTER_SECONDS",
    "TRIAL_FIELDS",
    "TRIAL_DTYPE",
    "TrialStore",
    "search_directions",
    "search_metric_names",
    "trial_columns",
]

SCHEMA_VERSION = 6
HEARTBEAT_SECONDS = 5.0
STALE_AFTER_SECONDS = 30.0
_WAL_PAGES = 20_000  # pages of the WAL a SQLite writer lets grow between checkpoints
_WAL_BYTES_KEPT = 16 * 2**20  # the size a SQLite WAL is cut back to once copied
_IN_CHUNK = 512  # parameters per IN (...) clause, under SQLite's variable limit
_SCHEMA_LOCK = 0x6461736B74756E65  # "dasktune": PostgreSQL advisory lock key
_ADDED_IN_4 = (
    ("searches", "directions"),
    ("trials", "objectives"),
    ("trials", "constraints"),
    ("trials", "violation"),
)
_STATUS = {status.value: status for status in TrialStatus}  # a stored status
_INT_FIELDS = frozenset({"number", "attempts", "seq"})
_FLOAT_FIELDS = frozenset({"value", "duration", "started", "finished", "step"})
_HASH_NAMES = tuple(f"h{i}" for i in range(_IN_CHUNK))  # bound hashes, by place
#: a raw trial row as a NumPy record: each field of TRIAL_FIELDS in its column's
#: dtype (``None`` in a float field: NaN; timestamps: seconds since the epoch)
TRIAL_DTYPE = np.dtype(
    [
        (name, np.int64 if name in _INT_FIELDS else np.float64 if name in _FLOAT_FIELDS
         else object)
        for name in TRIAL_FIELDS
    ]
)  # fmt: skip


def _real(x: Any) -> bool:
    """Whether a stored value is a number (JSON's null: a missing one)."""
    return x is None or type(x) in (float, int)


class TrialStore:
    """A trial store on SQLAlchemy Core; see the module notes for the contract.

    Parameters
    ----------
    url : str or path-like
        A SQLAlchemy URL (``"sqlite:///dasktune.db"``, ``"sqlite://"``,
        ``"postgresql://user@host/db"``), or the path of a SQLite file (made if
        missing; a name that starts like a database URL without its ``//``,
        ``"postgresql:host/db"``, is refused).
    """

    def __init__(self, url: str | os.PathLike[str], *, readonly: bool = False) -> None:
        url = store_url(url)
        self.url = url
        self.readonly = readonly
        try:
            parsed = sa.engine.make_url(url)
        except (sa.exc.ArgumentError, ValueError) as err:  # ValueError: a bad port
            msg = redact(f"cannot open the store {url!r}: {err}")
            raise StoreError(msg) from err
        #: the URL with its passwords hidden (``user:***@``, ``?password=***``):
        #: what messages, reprs and hints show
        self.display_url = redact(parsed.render_as_string(hide_password=True))
        try:
            self.engine = _make_engine(parsed, self.display_url, readonly)
        except sa.exc.ArgumentError as err:  # a URL its dialect refuses
            msg = f"cannot open the store {self.display_url!r}: {err}"
            raise StoreError(msg) from err
        self._lock = threading.RLock()
        self._writer: Connection | None = None  # SQLite's, for every write
        # the statements of every turn of a run, compiled once per process for
        # each dialect, paramstyle and schema (shared by every store of them)
        self._sql_key = (
            self.engine.dialect.name, self.engine.dialect.paramstyle,
        )  # fmt: skip
        self.schema_version = SCHEMA_VERSION
        self._define_tables()
        try:
            if readonly:
                self._check_schema_readonly()
            else:
                self._create_schema()
        except BaseException:
            self.close()  # the writer too: SQLite removes its -wal and -shm
            raise
        self.host = socket.gethostname()
        self.node = node()  # this boot and PID namespace: see owner_gone

    # -- schema ----------------------------------------------------------------

    def _define_tables(self) -> None:
        md = self.metadata = sa.MetaData()
        self.meta = sa.Table(
            "dasktune_meta",
            md,
            sa.Column("key", sa.String(64), primary_key=True),
            sa.Column("value", sa.Text, nullable=False),
        )
        self.searches = sa.Table(
            "searches",
            md,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("name", sa.String(255), nullable=False, unique=True),
            sa.Column("space", sa.Text),
            sa.Column("direction", sa.String(8), nullable=False),
            sa.Column("metadata", sa.Text, nullable=False),
            sa.Column("created", sa.Float, nullable=False),
            # bumped by every write transaction of the search (schema 2)
            sa.Column("seq", sa.BigInteger, nullable=False, server_default="0"),
            # JSON list of every objective's direction (schema 4)
            sa.Column("directions", sa.Text),
        )
        self.drivers = sa.Table(
            "drivers",
            md,
            sa.Column("id", sa.String(32), primary_key=True),
            sa.Column("search_id", sa.Integer, nullable=False),
            sa.Column("host", sa.String(255), nullable=False),
            sa.Column("pid", sa.Integer, nullable=False),
            sa.Column("started", sa.Float, nullable=False),
            # started, heartbeat and ended: the database's clock (schema 6)
            sa.Column("heartbeat", sa.Float, nullable=False),
            sa.Column("ended", sa.Float),
            sa.Column("info", sa.Text),
            # the driver's boot and PID namespace, where its pid means it (schema 6)
            sa.Column("node", sa.String(255)),
        )
        self.trials_table = sa.Table(
            "trials",
            md,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("search_id", sa.Integer, nullable=False),
            sa.Column("number", sa.Integer, nullable=False),
            sa.Column("param_hash", sa.String(64), nullable=False),
            sa.Column("params", sa.Text, nullable=False),
            sa.Column("status", sa.String(8), nullable=False),
            sa.Column("value", sa.Float),
            sa.Column("aux", sa.Text),
            sa.Column("error", sa.Text),
            sa.Column("worker", sa.String(255)),
            sa.Column("host", sa.String(255)),
            sa.Column("attempts", sa.Integer, nullable=False, default=0),
            sa.Column("driver_id", sa.String(32)),
            sa.Column("created", sa.Float, nullable=False),
            sa.Column("started", sa.Float),
            sa.Column("finished", sa.Float),
            sa.Column("duration", sa.Float),
            # the search's seq of the transaction that last wrote the row (schema 2)
            sa.Column("seq", sa.BigInteger, nullable=False, server_default="0"),
            # several objectives and constraints (schema 4)
            sa.Column("objectives", sa.Text),
            sa.Column("constraints", sa.Text),
            sa.Column("violation", sa.Float),
            sa.UniqueConstraint("search_id", "param_hash", name="uq_trial_params"),
            sa.UniqueConstraint("search_id", "number", name="uq_trial_number"),
            sa.Index("ix_trials_status", "search_id", "status"),
            sa.Index("ix_trials_seq", "search_id", "seq"),
        )
        # the values trials report as they learn (schema 3)
        self.values_table = sa.Table(
            "trial_values",
            md,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("search_id", sa.Integer, nullable=False),
            sa.Column("number", sa.Integer, nullable=False),
            sa.Column("step", sa.Integer, nullable=False),
            sa.Column("value", sa.Float, nullable=False),
            sa.Column("time", sa.Float, nullable=False),
            sa.UniqueConstraint("search_id", "number", "step", name="uq_trial_step"),
        )
        # a snapshot of each search's trials table, for new readers (schema 5)
        self.snapshots_table = sa.Table(
            "trial_snapshots",
            md,
            sa.Column("search_id", sa.Integer, primary_key=True, autoincrement=False),
            # every row written up to this seq of the search is in the snapshot
            sa.Column("seq", sa.BigInteger, nullable=False),
            sa.Column("rows", sa.Integer, nullable=False),
            sa.Column("data", sa.LargeBinary, nullable=False),
            sa.Column("written", sa.Float, nullable=False),
        )

    def _create_schema(self) -> None:
        with self._connection_errors(), self._tx() as conn:
            if self.engine.dialect.name == "postgresql":
                # drivers starting together on a fresh database: one creates
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_SCHEMA_LOCK)))
            version = self._check_tables(conn)
            if version is None:
                self.metadata.create_all(conn)
                conn.execute(
                    self.meta.insert().values(
                        key="schema_version", value=str(SCHEMA_VERSION)
                    )
                )
            elif version < SCHEMA_VERSION:
                self._migrate(conn, version)
            else:
                # a write that changes nothing: a store this user may not
                # write (a read-only file system, a database role that may only
                # read) is refused now, not at the run's first write
                conn.execute(
                    self.meta.update()
                    .where(self.meta.c.key == "schema_version")
                    .values(value=self.meta.c.value)
                )
        if self.engine.dialect.name == "sqlite" and not self._in_memory:
            try:
                _wal(self.engine)
            except sqlite3.Error as err:
                msg = f"cannot use the store {self.display_url}: {err} (switching it to WAL)"
                raise StoreError(msg) from err

    def _migrate(self, conn: Connection, version: int) -> None:
        """Bring a store of an older schema up to this one, in the open transaction."""
        if version < 2:
            # schema 2: a change sequence per search, so readers fetch only the
            # rows written since they last looked (filters, live views)
            for table in (self.searches, self.trials_table):
                conn.exec_driver_sql(
                    f"ALTER TABLE {table.name} ADD COLUMN seq BIGINT NOT NULL DEFAULT 0"
                )
            next(
                i for i in self.trials_table.indexes if i.name == "ix_trials_seq"
            ).create(conn)
        if version < 3:
            # schema 3: the values trials report as they learn, for pruners
            # (the ``pruned`` status fits the status column as it is)
            self.values_table.create(conn)
        if version < 4:
            # schema 4: several objectives and constraints
            for name, column in _ADDED_IN_4:
                kind = (
                    self.metadata.tables[name]
                    .c[column]
                    .type.compile(dialect=conn.dialect)
                )
                conn.exec_driver_sql(f"ALTER TABLE {name} ADD COLUMN {column} {kind}")
        if version < 5:
            # schema 5: snapshots of the trials tables, for new readers
            self.snapshots_table.create(conn)
        if version < 6:
            # schema 6: heartbeats on the database's clock, and where a
            # driver's pid means it; the bump keeps an older dasktune, which
            # compares heartbeats with its own clock, off this store
            kind = self.drivers.c.node.type.compile(dialect=conn.dialect)
            conn.exec_driver_sql(f"ALTER TABLE drivers ADD COLUMN node {kind}")
        conn.execute(
            self.meta.update()
            .where(self.meta.c.key == "schema_version")
            .values(value=str(SCHEMA_VERSION))
        )
        self.schema_version = SCHEMA_VERSION

    def _check_schema_readonly(self) -> None:
        with self._connection_errors(), self._read() as conn:
            if self._check_tables(conn) is None:
                msg = (
                    f"{self.display_url} is not a dasktune store: it has none of "
                    "dasktune's tables (a search run on it creates them)"
                )
                raise StoreError(msg)

    def _check_tables(self, conn: Connection) -> int | None:
        """The schema version of dasktune's tables, or ``None`` when there are
        none; raise for a foreign, damaged or newer schema.

        Nothing is written: a database holding other tables of the same names,
        a damaged schema or a newer one is refused as it is.
        """
        names = set(sa.inspect(conn).get_table_names())
        ours = set(self.metadata.tables)
        if not names & ours:
            # SQLite's own tables (sqlite_sequence, sqlite_stat1) aside
            foreign = sorted(n for n in names if not n.startswith("sqlite_"))
            if foreign and not self.readonly and conn.dialect.name == "sqlite":
                # a file is one application's: dasktune adds its tables (and
                # switches the journal to WAL) only to a new or empty file
                shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
                msg = (
                    f"{self.display_url} is not a dasktune store: it is a SQLite "
                    f"database of other tables ({shown}), left as it is; give "
                    "dasktune a new file (say trials.db) for its store"
                )
                raise StoreError(msg)
            return None
        if self.meta.name not in names:
            clash = sorted(names & ours)
            msg = (
                f"{self.display_url} is not a dasktune store: it has tables named "
                f"{clash} that dasktune did not create; give dasktune a database "
                "(or SQLite file) of its own"
            )
            raise StoreError(msg)
        row = conn.execute(
            sa.select(self.meta.c.value).where(self.meta.c.key == "schema_version")
        ).first()
        try:
            version = int(row.value) if row is not None else None
        except ValueError:
            version = None
        if version is None or version < 1:
            msg = (
                f"{self.display_url} has a dasktune_meta table without a valid "
                f"schema_version ({None if row is None else row.value!r}); it is "
                "damaged or not a dasktune store"
            )
            raise StoreError(msg)
        if version > SCHEMA_VERSION:
            msg = (
                f"the store {self.display_url} has schema version {version}, newer "
                f"than this dasktune understands ({SCHEMA_VERSION}); upgrade "
                "dasktune to read it"
            )
            raise SchemaVersionError(msg)
        added_later = {"seq"} if version < 2 else set()
        if version < 4:
            added_later |= {column for _, column in _ADDED_IN_4}
        if version < 6:
            added_later.add("node")
        tables_added_later = {self.values_table.name} if version < 3 else set()
        if version < 5:
            tables_added_later.add(self.snapshots_table.name)
        inspector = sa.inspect(conn)
        for table in self.metadata.sorted_tables:
            if table.name in tables_added_later:
                continue
            if table.name not in names:
                missing = [table.name]
            else:
                have = {c["name"] for c in inspector.get_columns(table.name)}
                missing = sorted({c.name for c in table.columns} - have - added_later)
            if missing:
                msg = (
                    f"the store {self.display_url} lacks {missing} in dasktune's "
                    f"schema ({table.name}); it is damaged or not a dasktune store"
                )
                raise StoreError(msg)
        self.schema_version = version
        return version

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

    def _begin_write(self, conn: Connection, search_id: int) -> int:
        """Start a write of one search: lock it, and return the transaction's seq.

        Claims are serialised per search: SQLite's ``BEGIN IMMEDIATE`` already
        holds the database's write lock, and on PostgreSQL the ``UPDATE`` locks
        the search's row until the transaction ends, so two drivers never both
        read a parameter set as new and insert it. Every row the transaction
        writes gets the returned seq, so readers can ask for what changed.
        """
        return self._bump(conn, search_id, numbered=False)[0]

    def _bump(
        self, conn: Connection, search_id: int, *, numbered: bool
    ) -> tuple[int, int]:
        """:meth:`_begin_write`, and with ``numbered`` the search's last trial
        number (-1 for none), read under the lock: on SQLite in the same
        statement (``UPDATE ... RETURNING``: one statement, not three, in
        every turn)."""
        s, t = self.searches, self.trials_table

        def bump() -> Any:
            return (
                s.update()
                .where(s.c.id == sa.bindparam("sid"))
                .values(seq=s.c.seq + sa.literal_column("1"))
            )

        def last() -> Any:
            return (
                sa.select(
                    sa.func.coalesce(sa.func.max(t.c.number), sa.literal_column("-1"))
                )
                .where(t.c.search_id == sa.bindparam("sid"))
                .scalar_subquery()
            )

        params = {"sid": search_id}
        # SQLite only: its BEGIN IMMEDIATE holds the whole database, so the
        # subquery sees every trial. On PostgreSQL the UPDATE may wait for
        # another driver's lock on the row, and a subquery of the same
        # statement would still read the snapshot taken before that driver's
        # trials were committed (READ COMMITTED): its last number is read by
        # a statement of its own, after the lock
        if self._sql_key[0] == "sqlite" and self.engine.dialect.update_returning:
            if numbered:
                row = self._run(
                    conn, "bump, numbered",
                    lambda: bump().returning(s.c.seq, last()), params,
                ).one()  # fmt: skip
                return int(row[0]), int(row[1])
            seq = self._run(
                conn, "bump returning", lambda: bump().returning(s.c.seq), params
            ).scalar_one()
            return int(seq), -1
        self._run(conn, "bump", bump, params)
        seq = self._run(
            conn, "seq",
            lambda: sa.select(s.c.seq).where(s.c.id == sa.bindparam("sid")),
            params,
        ).scalar_one()  # fmt: skip
        number = -1
        if numbered:
            number = self._run(
                conn, "last number", lambda: sa.select(last()), params
            ).scalar_one()
        return int(seq), int(number)

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

    # -- searches and drivers ----------------------------------------------------

    def open_search(
        self,
        name: str,
        *,
        space: dict[str, Any] | None,
        direction: str,
        metadata: dict[str, Any],
        directions: Sequence[str] | None = None,
    ) -> int:
        """Create the search ``name``, or check that the stored one matches.

        Parameters
        ----------
        direction : str
            The (first) objective's direction.
        directions : sequence of str, optional
            Every objective's direction, for a search of several objectives
            (``directions[0] == direction``).

        Raises
        ------
        SearchMismatchError
            If a search of that name exists with another space or direction(s).
        """
        wanted = list(directions) if directions is not None else [direction]
        s = self.searches
        space_json = None if space is None else json.dumps(space, sort_keys=True)
        with self._connection_errors(), self._tx() as conn:
            if self.engine.dialect.name == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_SCHEMA_LOCK)))
            row = conn.execute(sa.select(s).where(s.c.name == name)).first()
            if row is None:
                result = conn.execute(
                    s.insert().values(
                        name=name,
                        space=space_json,
                        direction=direction,
                        metadata=json.dumps(metadata, sort_keys=True, default=repr),
                        created=time.time(),
                        directions=json.dumps(wanted),
                    )
                )
                key = result.inserted_primary_key
                assert key is not None
                return int(key[0])
        if space_json is not None and row.space != space_json:  # None: its own
            msg = (
                f"search {name!r} in {self.display_url} was made with the space "
                f"{row.space} but is re-opened with {space_json}; pass the same "
                "space (or none: the stored one is taken), or use a new search "
                "name for a new space"
            )
            raise SearchMismatchError(msg)
        stored = search_directions(dict(row._mapping))
        if stored != wanted:
            if len(stored) == len(wanted) == 1:
                msg = (
                    f"search {name!r} in {self.display_url} is a {stored[0]} search "
                    f"but is re-opened with direction={direction!r}"
                )
            else:
                msg = (
                    f"search {name!r} in {self.display_url} has the directions "
                    f"{stored} but is re-opened with {wanted}; use a new search "
                    "name for other objectives"
                )
            raise SearchMismatchError(msg)
        return int(row.id)

    def find_search(self, name: str) -> dict[str, Any] | None:
        """The stored row of search ``name`` (a dict), or ``None``."""
        with self._connection_errors(), self._read() as conn:
            row = conn.execute(
                sa.select(self.searches).where(self.searches.c.name == name)
            ).first()
        return None if row is None else self._search_row(row)

    def _search_row(self, row: Any) -> dict[str, Any]:
        """A stored search row as a dict, checked: a damaged one is refused."""
        entry = dict(row._mapping)
        damaged = damaged_search(self.display_url, entry)
        if damaged is not None:
            raise damaged
        return entry

    def list_searches(self) -> list[dict[str, Any]]:
        """Every search, with its number of trials per status."""
        s, t = self.searches, self.trials_table
        counts = (
            sa.select(t.c.search_id, t.c.status, sa.func.count().label("n"))
            .group_by(t.c.search_id, t.c.status)
            .subquery()
        )
        with self._connection_errors(), self._read() as conn:
            rows = conn.execute(sa.select(s).order_by(s.c.id)).all()
            tally = conn.execute(sa.select(counts)).all()
        out = []
        for row in rows:
            entry = self._search_row(row)
            for status in TrialStatus:
                entry[status.value] = 0
            out.append(entry)
        by_id = {entry["id"]: entry for entry in out}
        for search_id, status, n in tally:
            by_id[search_id][status] = n
        return out

    def register_driver(
        self, search_id: int, info: dict[str, Any] | None = None
    ) -> str:
        """Record a new driver of ``search_id`` (this host and process).

        ``info`` (JSON) describes the run: the optimizer, its seed, the options.
        """
        driver_id = uuid.uuid4().hex
        with self._tx() as conn:
            conn.execute(
                self.drivers.insert().values(
                    id=driver_id,
                    search_id=search_id,
                    host=self.host,
                    pid=os.getpid(),
                    node=self.node,
                    started=DbEpoch(),
                    heartbeat=DbEpoch(),
                    info=json.dumps(info or {}, sort_keys=True, default=repr),
                )
            )
        return driver_id

    def heartbeat(self, driver_id: str) -> None:
        """Tell other drivers that ``driver_id`` is alive, on the database's clock."""
        with self._tx() as conn:
            conn.execute(
                self.drivers.update()
                .where(self.drivers.c.id == driver_id)
                .values(heartbeat=DbEpoch())
            )

    def release(self, search_id: int, driver_id: str) -> None:
        """Put the trials ``driver_id`` still runs back to ``queued``; end it."""
        t = self.trials_table
        with self._tx() as conn:
            seq = self._begin_write(conn, search_id)
            conn.execute(
                t.update()
                .where(
                    t.c.search_id == search_id,
                    t.c.driver_id == driver_id,
                    t.c.status == TrialStatus.RUNNING,
                )
                .values(status=TrialStatus.QUEUED, driver_id=None, seq=seq)
            )
            conn.execute(
                self.drivers.update()
                .where(self.drivers.c.id == driver_id)
                .values(ended=DbEpoch())
            )

    # -- trials -------------------------------------------------------------------

    def sync(
        self,
        search_id: int,
        driver_id: str,
        outcomes: Sequence[Outcome],
        claims: Sequence[Claim],
        *,
        retry_failed: bool = False,
        stale_after: float = STALE_AFTER_SECONDS,
    ) -> list[Decision]:
        """Write ``outcomes`` and claim ``claims`` in one transaction.

        Returns
        -------
        list of Decision
            One per claim, in order.
        """
        now = time.time()
        with self._tx() as conn:
            if not outcomes and claims:
                # a re-run over recorded trials writes nothing: decide without
                # locking the search when every claim is done (or failed)
                existing = self._rows_for(
                    conn, search_id, [c.param_hash for c in claims]
                )
                decisions = self._decide_all(
                    [c.param_hash for c in claims], existing, driver_id,
                    retry_failed, stale_after,
                )  # fmt: skip
                if all(
                    d.kind in (DecisionKind.DONE, DecisionKind.FAILED)
                    for d in decisions
                ):
                    return decisions
            seq, last = self._bump(conn, search_id, numbered=bool(claims))
            if outcomes:
                self._write_outcomes(conn, search_id, outcomes, seq)
            if not claims:
                return []
            # read again under the lock: another driver may have claimed since
            existing = self._rows_for(conn, search_id, [c.param_hash for c in claims])
            return self._claim(
                conn, search_id, driver_id, claims, existing, seq, last, now,
                retry_failed=retry_failed, stale_after=stale_after,
            )  # fmt: skip

    def _decide_all(
        self,
        hashes: Sequence[str],
        existing: dict[str, tuple[Any, ...]],
        driver_id: str,
        retry_failed: bool,
        stale_after: float,
    ) -> list[Decision]:
        """Decisions for claims of ``hashes`` from their ``existing`` rows, as if
        nothing were inserted: a hash with no row is ``evaluate``, number -1."""
        return [
            Decision(DecisionKind.EVALUATE, -1)
            if (row := existing.get(h)) is None
            else self._decide(row, driver_id, retry_failed, stale_after)
            for h in hashes
        ]

    def _claim(
        self,
        conn: Connection,
        search_id: int,
        driver_id: str,
        claims: Sequence[Claim],
        existing: dict[str, tuple[Any, ...]],
        seq: int,
        last: int,
        now: float,
        *,
        retry_failed: bool,
        stale_after: float,
    ) -> list[Decision]:
        """Decide ``claims`` under the search's lock (its last trial number
        ``last``, read under it): insert the new, take over the abandoned."""
        t = self.trials_table
        next_number = last
        decisions: list[Decision] = []
        inserts: list[dict[str, Any]] = []
        takeovers: list[str] = []
        for claim in claims:
            row = existing.get(claim.param_hash)
            if row is None:
                next_number += 1
                inserts.append(
                    {
                        "i_search_id": search_id,
                        "i_number": next_number,
                        "i_param_hash": claim.param_hash,
                        "i_params": json.dumps(claim.params, sort_keys=True),
                        "i_status": TrialStatus.RUNNING.value,
                        "i_attempts": 0,
                        "i_driver_id": driver_id,
                        "i_created": now,
                        "i_seq": seq,
                    }
                )
                decision = Decision(DecisionKind.EVALUATE, next_number)
            else:
                decision = self._decide(row, driver_id, retry_failed, stale_after)
                if decision.kind == DecisionKind.EVALUATE:
                    takeovers.append(claim.param_hash)
            decisions.append(decision)
            if decision.kind == DecisionKind.EVALUATE:
                # a repeated hash later in the batch sees the row as this driver
                # now holds it: one evaluation, the repeat "elsewhere"
                existing[claim.param_hash] = (
                    decision.number, TrialStatus.RUNNING, None, None, driver_id,
                    None, None, None, None, None,
                )  # fmt: skip
        if inserts:
            columns = [k[2:] for k in inserts[0]]
            self._run(
                conn, "insert claims",
                lambda: t.insert().values(
                    {c: sa.bindparam(f"i_{c}") for c in columns}
                ),
                inserts,
            )  # fmt: skip
        for i in range(0, len(takeovers), _IN_CHUNK):
            conn.execute(
                t.update()
                .where(
                    t.c.search_id == search_id,
                    t.c.param_hash.in_(takeovers[i : i + _IN_CHUNK]),
                )
                .values(status=TrialStatus.RUNNING, driver_id=driver_id, seq=seq)
            )
        return decisions

    def peek(
        self,
        search_id: int,
        driver_id: str,
        hashes: Sequence[str],
        *,
        retry_failed: bool = False,
        stale_after: float = STALE_AFTER_SECONDS,
    ) -> list[Decision]:
        """What :meth:`sync` would decide for claims of ``hashes``, read-only.

        Nothing is written and no write lock is taken: a driver waiting for
        trials another driver holds looks here, and claims (with :meth:`sync`)
        only those whose holder finished or is gone. A hash with no row is
        decided ``evaluate`` with number ``-1``.
        """
        with self._connection_errors(), self._read() as conn:
            rows = self._rows_for(conn, search_id, hashes)
        return self._decide_all(hashes, rows, driver_id, retry_failed, stale_after)

    def _write_outcomes(
        self, conn: Connection, search_id: int, outcomes: Sequence[Outcome], seq: int
    ) -> None:
        t = self.trials_table
        finals = {f"f{i}": str(final) for i, final in enumerate(FINAL)}

        def statement() -> Any:
            return (
                t.update()
                .where(
                    t.c.search_id == sa.bindparam("sid"),
                    t.c.param_hash == sa.bindparam("h"),
                    # never overwritten
                    *(t.c.status != sa.bindparam(name) for name in finals),
                )
                .values(
                    status=sa.bindparam("s"),
                    value=sa.bindparam("v"),
                    aux=sa.bindparam("a"),
                    error=sa.bindparam("e"),
                    worker=sa.bindparam("w"),
                    host=sa.bindparam("ho"),
                    attempts=t.c.attempts + sa.bindparam("n"),
                    started=sa.bindparam("st"),
                    finished=sa.bindparam("fi"),
                    duration=sa.bindparam("du"),
                    driver_id=sa.null(),
                    seq=sa.bindparam("sq"),
                    objectives=sa.bindparam("ob"),
                    constraints=sa.bindparam("co"),
                    violation=sa.bindparam("vi"),
                )
            )

        result = self._run(
            conn,
            "write outcomes",
            statement,
            [
                {
                    "sid": search_id,
                    "sq": seq,
                    **finals,
                    "h": o.param_hash,
                    "s": str(o.status),
                    "v": o.value,
                    "a": json.dumps(o.aux, sort_keys=True) if o.aux else None,
                    "e": o.error,
                    "w": o.worker,
                    "ho": o.host,
                    "n": o.attempts,
                    "st": o.started,
                    "fi": o.finished,
                    "du": o.duration,
                    "ob": None if o.values is None else json.dumps(o.values),
                    "co": None if o.constraints is None else json.dumps(o.constraints),
                    "vi": violation(o.constraints),
                }
                for o in outcomes
            ],
        )
        # fewer rows written than outcomes: some were done (kept as they are)
        # or never claimed (a driver's bug, refused with the whole transaction)
        sane = self.engine.dialect.supports_sane_multi_rowcount
        if not sane or result.rowcount < len(outcomes):
            hashes = [o.param_hash for o in outcomes]
            known = self._rows_for(conn, search_id, hashes)
            unclaimed = [h for h in dict.fromkeys(hashes) if h not in known]
            if unclaimed:
                raise ValueError(unclaimed_message(unclaimed))

    def _rows_for(
        self, conn: Connection, search_id: int, hashes: Iterable[str]
    ) -> dict[str, tuple[Any, ...]]:
        """By hash: (number, status, value, aux, owner, owner_node, owner_pid,
        owner_silence, objectives, constraints) of the recorded trials among
        ``hashes`` (``owner_silence``: the seconds since the owner's heartbeat,
        by the database's clock)."""
        unique = list(dict.fromkeys(hashes))
        rows: dict[str, tuple[Any, ...]] = {}
        for i in range(0, len(unique), _IN_CHUNK):
            chunk = unique[i : i + _IN_CHUNK]
            # padded (repeating the last hash) to a power of two, so that a
            # few statements, compiled once, serve every batch size
            size = 1 << (len(chunk) - 1).bit_length()
            values: dict[str, Any] = dict(zip(_HASH_NAMES, chunk, strict=False))
            values.update(dict.fromkeys(_HASH_NAMES[len(chunk) : size], chunk[-1]))
            values["sid"] = search_id
            # the driver's SQL and its own tuples: no compilation, no Row
            # objects on the re-run path
            query = partial(self._rows_query, size)
            result = self._run(conn, f"rows of {size}", query, values)
            for row in result.cursor.fetchall() if result.cursor is not None else []:
                rows[row[0]] = row[1:]
        return rows

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

    def _rows_query(self, size: int) -> Any:
        t, d = self.trials_table, self.drivers
        query = (
            sa.select(
                t.c.param_hash,
                t.c.number,
                t.c.status,
                t.c.value,
                t.c.aux,
                t.c.driver_id.label("owner"),
                (d.c.node if self.schema_version >= 6 else sa.null()).label(
                    "owner_node"
                ),
                d.c.pid.label("owner_pid"),
                (DbEpoch() - d.c.heartbeat).label("owner_silence"),
                *(
                    (t.c.objectives, t.c.constraints)
                    if self.schema_version >= 4
                    else (sa.null(), sa.null())
                ),
            )
            .select_from(t.outerjoin(d, t.c.driver_id == d.c.id))
            .where(
                t.c.search_id == sa.bindparam("sid"),
                t.c.param_hash.in_([sa.bindparam(n) for n in _HASH_NAMES[:size]]),
            )
        )
        return query

    def _decide(
        self,
        row: tuple[Any, ...],
        driver_id: str,
        retry_failed: bool,
        stale_after: float,
    ) -> Decision:
        number, status, value, aux, owner = row[:5]
        objectives, constraints = row[8:10]
        held = owner is not None and (
            owner == driver_id or not self._owner_gone(row, stale_after)
        )
        try:
            if status not in _STATUS or not (
                value is None or type(value) in (float, int)
            ):
                raise ValueError(status)
            values = json.loads(objectives) if objectives else None
            limits = json.loads(constraints) if constraints else None
            for numbers in (values, limits):
                if numbers is not None and not all(map(_real, numbers)):
                    raise TypeError(numbers)
            return decide(
                _STATUS[status], int(number), value=value,
                aux=json.loads(aux) if aux else None,
                values=values, constraints=limits,
                held=held, retry_failed=retry_failed,
            )  # fmt: skip
        except DECODING_ERRORS as err:
            # a row written by hand or damaged: named, with what is wrong
            fields = dict.fromkeys(TRIAL_FIELDS)
            fields.update(
                number=number, params="{}", value=value, status=status, aux=aux,
                objectives=objectives, constraints=constraints,
            )  # fmt: skip
            raise damaged_trial(
                self.display_url, [tuple(fields.values())], err
            ) from err

    def _owner_gone(self, row: tuple[Any, ...], stale_after: float) -> bool:
        """Whether the driver holding a trial is gone (see :func:`owner_gone`)."""
        owner_node, pid, silence = row[5:8]
        return owner_gone(owner_node, pid, silence, stale_after, self.node)

    def runs(self, search_id: int) -> list[dict[str, Any]]:
        """Every driver that ran the search, oldest first (``info`` decoded)."""
        d = self.drivers
        columns = [c for c in d.c if self.schema_version >= 6 or c.name != "node"]
        with self._read() as conn:
            rows = conn.execute(
                sa.select(*columns)
                .where(d.c.search_id == search_id)
                .order_by(d.c.started)
            ).all()
        out = []
        for row in rows:
            entry = dict(row._mapping)
            try:
                entry["info"] = json.loads(entry["info"]) if entry["info"] else {}
            except DECODING_ERRORS as err:  # written by hand, or damaged
                msg = (
                    f"the store {self.display_url} holds a damaged run (driver "
                    f"{entry['id']!r:.40}): its info is not JSON ({err!r:.100}); "
                    "repair or delete that row"
                )
                raise StoreError(msg) from err
            out.append(entry)
        return out

    def trials(self, search_id: int) -> list[dict[str, Any]]:
        """Every trial of a search as dicts (``params`` and ``aux`` decoded)."""
        _, rows = self.read_trials(search_id)
        return [self.decode_trial(row) for row in rows]

    def decode_trial(self, row: Sequence[Any]) -> dict[str, Any]:
        """A raw row of :meth:`read_trials` as a dict, its JSON fields decoded;
        a damaged row, or one written by hand, is a :class:`StoreError` naming
        the trial."""
        try:
            entry = dict(zip(TRIAL_FIELDS, row, strict=True))
            entry["params"] = json.loads(entry["params"])
            entry["aux"] = json.loads(entry["aux"]) if entry["aux"] else {}
            for key in ("objectives", "constraints"):
                text = entry[key]
                entry[key] = None if text is None else json.loads(text)
                if text is not None and not (
                    type(entry[key]) is list and all(map(_real, entry[key]))
                ):
                    raise TypeError(key)
            if not (
                type(entry["number"]) is int
                and _real(entry["value"])
                and entry["status"] in _STATUS
                and type(entry["params"]) is dict
                and type(entry["aux"]) is dict
            ):
                raise TypeError(entry["number"])
        except DECODING_ERRORS as err:  # damaged, or written by hand: named
            raise damaged_trial(self.display_url, [row], err) from err
        return entry

    def read_trials(
        self,
        search_id: int,
        *,
        status: str | Sequence[str] | None = None,
        since: int | None = None,
    ) -> tuple[int, Sequence[Sequence[Any]]]:
        """Raw trial rows, fast: tuples in :data:`TRIAL_FIELDS` order, by number.

        Parameters
        ----------
        status : str or sequence of str, optional
            Only rows with this status (or these), filtered in SQL.
        since : int, optional
            Only rows written after the search's change sequence ``since`` (the
            first value returned by an earlier call): what a reader that keeps
            a table up to date needs.

        Returns
        -------
        (int, list of tuple)
            The change sequence the rows reach (pass it as ``since`` next time)
            and the rows; ``params`` and ``aux`` are JSON text.
        """
        with self._connection_errors(), self._read() as conn:
            # the last step reported is a subquery per row: asked only when the
            # search has reported values (most have none, and a million probes
            # of an empty index still cost a third of a second); looked at
            # again after the read, for values that arrived meanwhile (values
            # are never deleted: none after means none before)
            steps = self._has_values(conn, search_id)
            wanted = None
            if status is not None:
                wanted = [status] if isinstance(status, str) else list(status)
            while True:
                result = self._read_rows(conn, search_id, steps, wanted, since)
                # the driver's own tuples: no Row objects for a million rows
                rows = result.cursor.fetchall() if result.cursor is not None else []
                if steps or not self._has_values(conn, search_id):
                    break
                steps = True
        try:
            seq_at = int(max(map(operator.itemgetter(-1), rows), default=since or 0))
        except DECODING_ERRORS as err:  # a seq written by hand: named
            raise damaged_trial(self.display_url, rows, err) from err
        return seq_at, rows

    def read_columns(
        self, search_id: int, *, since: int | None = None
    ) -> tuple[int, dict[str, np.ndarray]]:
        """The rows of :meth:`read_trials` as columns, fast: what a table needs.

        The driver's cursor is read straight into one NumPy record array of
        :data:`TRIAL_DTYPE` (no list of a million tuples, no second pass over
        them); rows whose values do not fit it (a number beyond int64 written
        by hand, say) are read again as rows and converted field by field.

        Parameters
        ----------
        since : int, optional
            As for :meth:`read_trials`.

        Returns
        -------
        (int, dict of str to numpy.ndarray)
            The change sequence the rows reach, and each field of
            :data:`TRIAL_FIELDS` as a column (``params`` and ``aux`` as JSON
            text), by number.
        """
        with self._connection_errors(), self._read() as conn:
            steps = self._has_values(conn, search_id)  # as read_trials does
            while True:
                # the driver's own cursor, read straight into the records
                cursor: Any = self._read_rows(
                    conn, search_id, steps, since=since
                ).cursor
                try:
                    with _collector_paused():
                        records = np.fromiter(cursor or (), dtype=TRIAL_DTYPE)
                except (TypeError, ValueError, OverflowError):
                    if cursor is not None:
                        cursor.close()
                    rows = self._read_rows(conn, search_id, steps, since=since).cursor
                    columns = trial_columns(rows.fetchall() if rows else [])
                else:
                    columns = {name: records[name] for name in TRIAL_FIELDS}
                if steps or not self._has_values(conn, search_id):
                    break
                steps = True
        seq = columns["seq"]
        return int(seq.max()) if len(seq) else since or 0, columns

    def write_snapshot(self, search_id: int, seq: int, rows: int, data: bytes) -> bool:
        """Keep ``data``, a snapshot of a search's trials table, unless the store
        holds one as recent.

        Parameters
        ----------
        seq : int
            The search's change sequence the snapshot reaches: it holds every
            row written up to it (a table's ``seq`` after a read).
        rows : int
            Its trial count, kept beside it for whoever inspects the store.
        data : bytes
            :meth:`~dasktune.table.TrialTable.dumps`.

        Returns
        -------
        bool
            Whether it was written: not when the store holds a snapshot of this
            seq or a later one (another reader's), or is in memory (no other
            process reads it).
        """
        if self._in_memory:
            return False
        sn = self.snapshots_table
        values = {"seq": seq, "rows": rows, "data": data, "written": time.time()}
        with self._connection_errors(), self._tx() as conn:
            replaced = conn.execute(
                sn.update()
                .where(sn.c.search_id == search_id, sn.c.seq < seq)
                .values(**values)
            ).rowcount
            if replaced:
                return True
            sqlite = self._sql_key[0] == "sqlite"
            insert = (
                (sqlite_dialect if sqlite else pg_dialect)
                .insert(sn)
                .values(search_id=search_id, **values)
                .on_conflict_do_nothing()
            )
            if sqlite:
                return bool(conn.execute(insert).rowcount)
            # PostgreSQL: what the insert added, not a rowcount of its own
            return conn.execute(insert.returning(sn.c.search_id)).first() is not None

    def read_snapshot(self, search_id: int) -> tuple[int, bytes] | None:
        """The snapshot :meth:`write_snapshot` keeps for a search, with the seq
        it reaches, or ``None`` (no snapshot, or a store older than schema 5)."""
        if self.schema_version < 5:
            return None
        sn = self.snapshots_table
        with self._connection_errors(), self._read() as conn:
            row = conn.execute(
                sa.select(sn.c.seq, sn.c.data).where(sn.c.search_id == search_id)
            ).first()
        return None if row is None else (int(row.seq), bytes(row.data))

    def trial_span(self, search_id: int) -> int:
        """The most trials a snapshot of the search can hold: the span of its
        stored numbers (two lookups in the index of numbers, not a count)."""
        t = self.trials_table
        # one aggregate per statement: SQLite answers each from the index
        low, high = (
            sa.select(f(t.c.number)).where(t.c.search_id == search_id).scalar_subquery()
            for f in (sa.func.min, sa.func.max)
        )
        query = sa.select(low, high)
        with self._connection_errors(), self._read() as conn:
            low, high = conn.execute(query).one()
        try:
            return max(int(high) - int(low) + 1, 0)
        except (TypeError, ValueError, OverflowError):
            return 0  # no trial, or numbers written by hand: no snapshot fits

    def _has_values(self, conn: Connection, search_id: int) -> bool:
        """Whether any trial of the search has reported a value."""
        if self.schema_version < 3:
            return False
        v = self.values_table
        result = self._run(
            conn, "has values",
            lambda: sa.select(v.c.number)
            .where(v.c.search_id == sa.bindparam("sid"))
            .limit(1),
            {"sid": search_id},
        )  # fmt: skip
        return result.cursor.fetchone() is not None

    def _read_rows(
        self,
        conn: Connection,
        search_id: int,
        steps: bool,
        status: Sequence[str] | None = None,
        since: int | None = None,
    ) -> Any:
        """Run the select of a search's rows (:meth:`_trials_query`, by
        number; only ``status``, only written after ``since``), compiled once
        for each shape; its driver's cursor is ``.cursor``."""
        t = self.trials_table
        since = since if self.schema_version >= 2 else None
        params: dict[str, Any] = {"sid": search_id, "since": since}
        names = [f"st{i}" for i in range(len(status or ()))]
        params.update(zip(names, map(str, status or ()), strict=True))

        def build() -> Any:
            query = self._trials_query(sa.bindparam("sid"), steps)
            if status is not None:
                query = query.where(t.c.status.in_([sa.bindparam(n) for n in names]))
            if since is not None:
                query = query.where(t.c.seq > sa.bindparam("since"))
            return query.order_by(t.c.number)

        shape = (steps, None if status is None else len(status), since is not None)
        if since is None:
            del params["since"]
        return self._run(conn, f"trials {shape}", build, params)

    def _trials_query(self, search_id: Any, steps: bool) -> sa.Select[Any]:
        """The select of a search's rows in :data:`TRIAL_FIELDS` order; ``step``
        is ``NULL`` unless ``steps``."""
        t, v = self.trials_table, self.values_table
        last_step: Any = sa.null()
        if steps:
            last_step = (
                sa.select(sa.func.max(v.c.step))
                .where(v.c.search_id == t.c.search_id, v.c.number == t.c.number)
                .scalar_subquery()
            )
        added = {"seq": 2, "objectives": 4, "constraints": 4}
        columns = [
            last_step
            if name == "step"
            else t.c[name]
            if self.schema_version >= added.get(name, 0)
            else sa.literal_column("0")
            if name == "seq"
            else sa.null()
            for name in TRIAL_FIELDS
        ]
        return sa.select(*columns).where(t.c.search_id == search_id)

    # -- reported values (curves) ----------------------------------------------------

    def add_values(
        self, search_id: int, reports: Sequence[tuple[int, int, float, float]]
    ) -> None:
        """Store reported values ``(number, step, value, time)``, in one transaction.

        A step already stored for a trial keeps its first value (a trial re-run
        after a lost worker reports its steps again).
        """
        if not reports:
            return
        v = self.values_table
        rows = [
            {"search_id": search_id, "number": int(n), "step": int(st),
             "value": float(val), "time": float(when)}
            for n, st, val, when in reports
        ]  # fmt: skip
        dialect = self.engine.dialect.name
        if dialect == "postgresql":
            from sqlalchemy.dialects import postgresql

            statement: Any = postgresql.insert(v).on_conflict_do_nothing()
        else:
            from sqlalchemy.dialects import sqlite

            statement = sqlite.insert(v).on_conflict_do_nothing()
        with self._connection_errors(), self._tx() as conn:
            conn.execute(statement, rows)

    def read_values(
        self, search_id: int, numbers: Iterable[int] | None = None
    ) -> list[tuple[int, int, float, float]]:
        """Stored reports ``(number, step, value, time)`` in the order stored.

        Parameters
        ----------
        numbers : iterable of int, optional
            Only these trials' values.
        """
        if self.schema_version < 3:
            return []  # a store read as it is, from before reported values
        v = self.values_table
        query = sa.select(v.c.id, v.c.number, v.c.step, v.c.value, v.c.time).where(
            v.c.search_id == search_id
        )
        wanted = None if numbers is None else sorted({int(n) for n in numbers})
        found: list[tuple[int, int, int, float, float]] = []
        chunks = (
            [None]
            if wanted is None
            else [wanted[i : i + _IN_CHUNK] for i in range(0, len(wanted), _IN_CHUNK)]
        )
        with self._connection_errors(), self._read() as conn:
            for chunk in chunks:
                q = query if chunk is None else query.where(v.c.number.in_(chunk))
                found.extend(
                    (int(r[0]), int(r[1]), int(r[2]), float(r[3]), float(r[4]))
                    for r in conn.execute(q.order_by(v.c.id))
                )
        found.sort()  # by id: the order stored, across chunks too
        return [row[1:] for row in found]

    def curves(self, search_id: int) -> dict[int, list[tuple[int, float]]]:
        """Each trial's reported ``(step, value)`` pairs, by step."""
        out: dict[int, list[tuple[int, float]]] = {}
        for number, step, value, _ in self.read_values(search_id):
            out.setdefault(number, []).append((step, value))
        for curve in out.values():
            curve.sort()
        return out

    def best(
        self, search_id: int, direction: str = "minimize"
    ) -> dict[str, Any] | None:
        """The best done feasible trial (lowest value, highest when maximising),
        or ``None``. A trial whose constraints are violated is never the best."""
        t = self.trials_table
        order = t.c.value.asc() if direction == "minimize" else t.c.value.desc()
        query = (
            sa.select(t.c.number, t.c.params, t.c.value, t.c.aux)
            .where(t.c.search_id == search_id, t.c.status == TrialStatus.DONE)
            .where(t.c.value.is_not(None))
            .order_by(order, t.c.number)
            .limit(1)
        )
        if self.schema_version >= 4:
            query = query.where(self._feasible)
            query = query.add_columns(t.c.constraints)
        with self._connection_errors(), self._read() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        return self._decoded(row)

    def _decoded(self, row: Any) -> dict[str, Any]:
        """A best or front trial's row, decoded; a damaged one is named."""
        try:
            return _decoded(row)
        except DECODING_ERRORS as err:
            raise self._damaged(row.number, err) from err

    def _damaged(self, number: Any, err: BaseException) -> StoreError:
        msg = (
            f"the store {self.display_url} holds a damaged trial {number!r:.40}: "
            f"{type(err).__name__}: {str(err)[:200]}; dasktune did not write "
            "it so: repair or delete that row"
        )
        return StoreError(msg)

    @property
    def _feasible(self) -> sa.ColumnElement[bool]:
        t = self.trials_table
        return sa.or_(t.c.violation.is_(None), t.c.violation <= 0)

    def front(self, search_id: int, directions: Sequence[str]) -> list[dict[str, Any]]:
        """The Pareto front of a search of several objectives: its done feasible
        trials that no other beats on every objective, by first objective.

        Parameters
        ----------
        directions : sequence of str
            Each objective's direction (``"minimize"`` or ``"maximize"``).

        Returns
        -------
        list of dict
            ``number``, ``params``, ``value`` (the first objective), ``aux``,
            ``values`` and ``constraints`` of each trial on the front.
        """
        if self.schema_version < 4:
            return []
        t = self.trials_table
        query = (
            sa.select(
                t.c.number,
                t.c.params,
                t.c.value,
                t.c.aux,
                t.c.constraints,
                t.c.objectives,
            )
            .where(t.c.search_id == search_id, t.c.status == TrialStatus.DONE)
            .where(t.c.objectives.is_not(None), self._feasible)
            .order_by(t.c.number)
        )
        with self._connection_errors(), self._read() as conn:
            rows = conn.execute(query).all()
        values = []
        for row in rows:
            try:
                values.append(
                    [
                        np.nan if v is None else float(v)
                        for v in json.loads(row.objectives)
                    ]
                )
            except DECODING_ERRORS as err:
                raise self._damaged(row.number, err) from err
        good = [i for i, v in enumerate(values) if len(v) == len(directions)]
        if not good:
            return []
        points = np.array([values[i] for i in good], dtype=float)
        on_front = [good[i] for i in pareto_front(points, directions)]
        trials = [self._decoded(rows[i]) for i in on_front]
        first = -1.0 if directions[0] == "maximize" else 1.0
        trials.sort(key=lambda trial: (first * trial["values"][0], trial["number"]))
        return trials


def trial_columns(rows: Sequence[Sequence[Any]]) -> dict[str, np.ndarray]:
    """The fields of raw rows (:meth:`TrialStore.read_trials`) as columns of
    :data:`TRIAL_DTYPE`'s dtypes (``None`` as NaN in the float ones).

    Tuples convert in one C-level pass into a record array whose fields are the
    columns; other rows (or values that do not fit the record) go through a
    2-D object array, column by column, to the same result.
    """
    try:
        records = np.array(rows, dtype=TRIAL_DTYPE)
    except (TypeError, ValueError, OverflowError):
        pass
    else:
        if records.shape == (len(rows),):
            return {name: records[name] for name in TRIAL_FIELDS}
    grid = np.empty((len(rows), len(TRIAL_FIELDS)), dtype=object)
    grid[:] = rows
    return {
        name: grid[:, j].astype(TRIAL_DTYPE[name])
        for j, name in enumerate(TRIAL_FIELDS)
    }


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a million objects are made.

    Building rows (or decoding JSON) allocates containers and no cycles; each
    allocation burst would otherwise set off full collections that walk every
    object made so far (about a tenth of a million-row read). The collector
    is enabled again after, unless it was off before.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _decoded(row: Any) -> dict[str, Any]:
    """A best or front trial's row, decoded."""
    fields = row._mapping
    constraints = fields.get("constraints")
    objectives = fields.get("objectives")
    return {
        "number": int(row.number),
        "params": json.loads(row.params),
        "value": float(row.value),
        "aux": json.loads(row.aux) if row.aux else {},
        "values": (float(row.value),)
        if objectives is None
        else tuple(json.loads(objectives)),
        "constraints": None if constraints is None else tuple(json.loads(constraints)),
    }


def search_directions(row: dict[str, Any]) -> list[str]:
    """Every objective's direction of a stored search row (a schema 3 search,
    or one made before several objectives: its one ``direction``)."""
    stored = row.get("directions")
    return list(json.loads(stored)) if stored else [row["direction"]]


def search_metric_names(row: dict[str, Any] | None) -> list[str] | None:
    """The objectives' names stored with a search (``Search(metric_names=...)``,
    kept in its metadata), or ``None``."""
    if row is None or not row.get("metadata"):
        return None
    names = json.loads(row["metadata"]).get("metric_names")
    return None if names is None else [str(n) for n in names]


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


#: compiled SQL by (dialect, paramstyle, schema version, statement name)
_COMPILED: dict[
    tuple[Any, ...], tuple[str, tuple[str, ...] | None, dict[str, Any]]
] = {}


#: how long a PostgreSQL connection may take (the URL's ``?connect_timeout=``
#: overrides it)
_PG_CONNECT = {"connect_timeout": 10}


def _make_engine(parsed: sa.engine.URL, display: str, readonly: bool) -> Engine:
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


def _wal(engine: Engine, patience: float = 60.0) -> None:
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
