"""The best trial and the Pareto front, read from the store.

A trial whose constraints are violated (``violation > 0``) is never the best
nor on the front; the best trial is one SQL query.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa

from dasktune._pareto import best_order
from dasktune.exceptions import StoreError
from dasktune.records import TrialStatus
from dasktune.store.rows import DECODING_ERRORS
from dasktune.store.schema import StoreSchema

__all__ = ["StoreBest"]


class StoreBest(StoreSchema):
    """A search's best trial, and its Pareto front for several objectives."""

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
        # the rows are by number: the one rule's ties go to the earlier trial
        return [self._decoded(rows[good[i]]) for i in best_order(points, directions)]


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
