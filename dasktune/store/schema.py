"""The store's schema: its tables, their creation, checks and migrations.

Schema versions: 2 added a change sequence per search; 3 the table of
reported values and the ``pruned`` status; 4 several objectives and
constraints; 5 the snapshots of trials tables; 6 the drivers' heartbeats on
the database's clock, and their machine and PID namespace (``node``). Older
stores are migrated when opened for writing.
"""

from __future__ import annotations

import sqlite3

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dasktune.exceptions import SchemaVersionError, StoreError
from dasktune.store.connection import StoreConnection
from dasktune.store.engine import wal

__all__ = ["SCHEMA_LOCK", "SCHEMA_VERSION", "StoreSchema"]


SCHEMA_VERSION = 6


SCHEMA_LOCK = 0x6461736B74756E65  # "dasktune": PostgreSQL advisory lock key


_ADDED_IN_4 = (
    ("searches", "directions"),
    ("trials", "objectives"),
    ("trials", "constraints"),
    ("trials", "violation"),
)


class StoreSchema(StoreConnection):
    """The store's tables: defined, created, checked, migrated.

    The schema is created inside a write transaction (on PostgreSQL under an
    advisory lock); a foreign, damaged or newer schema is refused before
    anything is written; an older one is migrated when opened for writing.
    """

    metadata: sa.MetaData
    meta: sa.Table
    searches: sa.Table
    drivers: sa.Table
    trials_table: sa.Table
    values_table: sa.Table
    snapshots_table: sa.Table

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
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(SCHEMA_LOCK)))
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
                wal(self.engine)
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
