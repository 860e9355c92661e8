"""Claims: a parameter set is evaluated once, by one driver at a time.

One row per (search, canonical parameter hash): a claim inserts it, or finds
it and decides (:func:`dasktune.records.decide`) whether this driver
evaluates it (new, failed and retried, or abandoned: its driver released it
or is gone, see :mod:`dasktune.store.liveness`), takes its recorded result,
or leaves it to the driver holding it. Results and the next claims are
written in one transaction, under the search's lock: SQLite's ``BEGIN
IMMEDIATE``, PostgreSQL's lock of the search's row.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dasktune._values import violation
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
from dasktune.store.connection import IN_CHUNK
from dasktune.store.liveness import DbEpoch, owner_gone
from dasktune.store.rows import DECODING_ERRORS, STATUS, damaged_trial, number_or_null
from dasktune.store.schema import StoreSchema

__all__ = ["STALE_AFTER_SECONDS", "StoreClaims"]


STALE_AFTER_SECONDS = 30.0


_HASH_NAMES = tuple(f"h{i}" for i in range(IN_CHUNK))  # bound hashes, by place


class StoreClaims(StoreSchema):
    """Claims and results: :meth:`sync` writes a batch of outcomes and claims
    the next trials in one transaction, serialised per search; :meth:`peek`
    decides the same without writing.
    """

    node: str | None

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
        for i in range(0, len(takeovers), IN_CHUNK):
            conn.execute(
                t.update()
                .where(
                    t.c.search_id == search_id,
                    t.c.param_hash.in_(takeovers[i : i + IN_CHUNK]),
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
        for i in range(0, len(unique), IN_CHUNK):
            chunk = unique[i : i + IN_CHUNK]
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
            if status not in STATUS or not (
                value is None or type(value) in (float, int)
            ):
                raise ValueError(status)
            values = json.loads(objectives) if objectives else None
            limits = json.loads(constraints) if constraints else None
            for numbers in (values, limits):
                if numbers is not None and not all(map(number_or_null, numbers)):
                    raise TypeError(numbers)
            return decide(
                STATUS[status], int(number), value=value,
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
