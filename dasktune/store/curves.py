"""Curves: the values a trial reports as it learns (schema 3).

Kept in a table of ``(search, trial number, step, value, time)``, written in
batches (:meth:`StoreCurves.add_values`); the first value stored for a step is
kept (a trial re-run after a lost worker reports its steps again), and
:meth:`StoreCurves.read_values` gives them back in the order they were stored,
which is what a pruner replays on resume.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from dasktune.store.connection import IN_CHUNK
from dasktune.store.schema import StoreSchema

__all__ = ["StoreCurves"]


class StoreCurves(StoreSchema):
    """The values trials report as they learn, written in batches."""

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
            else [wanted[i : i + IN_CHUNK] for i in range(0, len(wanted), IN_CHUNK)]
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
