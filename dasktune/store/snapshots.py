"""Snapshots of a search's trials table, kept in the store (schema 5).

The table a reader builds from the rows (:class:`~dasktune.store.table.TrialTable`),
kept as its arrays' bytes and JSON (:meth:`~dasktune.store.table.TrialTable.dumps`)
with the search's seq it reaches, so that a new reader of a million trials
loads one value and reads only the rows written since, instead of converting
every row. It is a cache: rows are never deleted and every write bumps the
row's seq, so the snapshot and the rows after its seq are the whole table; a
snapshot is replaced only by a later one.
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from dasktune.store.schema import StoreSchema

__all__ = ["StoreSnapshots"]


class StoreSnapshots(StoreSchema):
    """Where a search's snapshot is kept: one per search, replaced only by a
    later one."""

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
            :meth:`~dasktune.store.table.TrialTable.dumps`.

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
