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

The store by concept, each a base of :class:`TrialStore` in a module of its
own: the URL (:mod:`~dasktune.store.url`), the engine per database
(:mod:`~dasktune.store.engine`), transactions and compiled statements
(:mod:`~dasktune.store.connection`), the schema and its migrations
(:mod:`~dasktune.store.schema`), claims (:mod:`~dasktune.store.claims`),
reads (:mod:`~dasktune.store.reads`), snapshots of trials tables
(:mod:`~dasktune.store.snapshots`), curves (:mod:`~dasktune.store.curves`),
the best trial and the front (:mod:`~dasktune.store.best`). This module
holds the searches and their drivers.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dasktune._checks import redact, short_repr
from dasktune.direction import Direction
from dasktune.exceptions import SearchMismatchError, StoreError
from dasktune.records import TRIAL_FIELDS, TrialStatus
from dasktune.store.best import StoreBest
from dasktune.store.claims import STALE_AFTER_SECONDS, StoreClaims
from dasktune.store.curves import StoreCurves
from dasktune.store.engine import make_engine
from dasktune.store.liveness import DbEpoch, node
from dasktune.store.reads import TRIAL_DTYPE, StoreReads, trial_columns
from dasktune.store.rows import DECODING_ERRORS, damaged_search
from dasktune.store.schema import SCHEMA_LOCK, SCHEMA_VERSION
from dasktune.store.snapshots import StoreSnapshots
from dasktune.store.url import store_url

__all__ = [
    "HEARTBEAT_SECONDS",
    "SCHEMA_VERSION",
    "STALE_AFTER_SECONDS",
    "TRIAL_FIELDS",
    "TRIAL_DTYPE",
    "TrialStore",
    "check_store",
    "search_directions",
    "search_metric_names",
    "trial_columns",
]

HEARTBEAT_SECONDS = 5.0


class TrialStore(StoreClaims, StoreReads, StoreSnapshots, StoreCurves, StoreBest):
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
            self.engine = make_engine(parsed, self.display_url, readonly)
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
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(SCHEMA_LOCK)))
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


def check_store(store: object) -> None:
    """Raise ``TypeError`` unless ``store`` is a URL, a path or an open store."""
    if not isinstance(store, str | os.PathLike | TrialStore):
        msg = (
            "store must be a SQLAlchemy URL string such as 'sqlite:///trials.db' or "
            "'postgresql://user@host/db', the path of a SQLite file, or an open "
            "dasktune.store.sql.TrialStore, "
            f"got {type(store).__name__}: {short_repr(store)}"
        )
        raise TypeError(msg)


def search_directions(row: dict[str, Any]) -> list[Direction]:
    """Every objective's direction of a stored search row (a schema 3 search,
    or one made before several objectives: its one ``direction``)."""
    stored = row.get("directions")
    return [
        Direction(d) for d in (json.loads(stored) if stored else [row["direction"]])
    ]


def search_metric_names(row: dict[str, Any] | None) -> list[str] | None:
    """The objectives' names stored with a search (``Search(metric_names=...)``,
    kept in its metadata), or ``None``."""
    if row is None or not row.get("metadata"):
        return None
    names = json.loads(row["metadata"]).get("metric_names")
    return None if names is None else [str(n) for n in names]
