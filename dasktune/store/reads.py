"""Reads of a search's trials: rows, columns, and the rows written since.

The fast paths read the driver's own tuples (no ``Row`` objects for a million
rows) or its cursor straight into a NumPy record array of
:data:`TRIAL_DTYPE`; a damaged row is named (:mod:`dasktune.store.rows`).
"""

from __future__ import annotations

import contextlib
import gc
import json
import operator
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dasktune.records import TRIAL_FIELDS
from dasktune.store.rows import DECODING_ERRORS, STATUS, damaged_trial, number_or_null
from dasktune.store.schema import StoreSchema

__all__ = ["TRIAL_DTYPE", "StoreReads", "collector_paused", "trial_columns"]


_INT_FIELDS = frozenset({"number", "attempts", "seq"})


_FLOAT_FIELDS = frozenset({"value", "duration", "started", "finished", "step"})


#: a raw trial row as a NumPy record: each field of TRIAL_FIELDS in its column's
#: dtype (``None`` in a float field: NaN; timestamps: seconds since the epoch)
TRIAL_DTYPE = np.dtype(
    [
        (name, np.int64 if name in _INT_FIELDS else np.float64 if name in _FLOAT_FIELDS
         else object)
        for name in TRIAL_FIELDS
    ]
)  # fmt: skip


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
def collector_paused() -> Iterator[None]:
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


class StoreReads(StoreSchema):
    """Reading a search's trials: as dicts, as raw rows, as columns, and only
    what was written since a change sequence.
    """

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
                    type(entry[key]) is list and all(map(number_or_null, entry[key]))
                ):
                    raise TypeError(key)
            if not (
                type(entry["number"]) is int
                and number_or_null(entry["value"])
                and entry["status"] in STATUS
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
                    with collector_paused():
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
