"""The record of a ``partial_fit`` search in a dasktune store, and its resume.

Each candidate of a :class:`~dasktune.sklearn.hyperband.HyperbandSearchCV` or
:class:`~dasktune.sklearn.hyperband.SuccessiveHalvingSearchCV` is a trial of
the search (parameters ``model_id`` and ``candidate``, the candidate's
parameters as canonical JSON). Every score a model gets on the held-out part
is the trial's intermediate value at step = its ``partial_fit`` calls (the
store's curves, Optuna's steps); a model that ends is recorded ``done``
(trained to ``max_iter``) or ``pruned`` (stopped by the pruner; its reason in
``error``), its value the last score and its aux its records (``history``)
and the pruner's ``decision``.

A fit run again over the same search reads the stored reports back in the
order they were given to the pruner and gives them to a new pruner in that
order: the decisions come out as they were taken, so the models that ended
are reused as they are, and a model that was still training resumes at the
rung it had reached (models are not stored: it is trained again from step 0
to that rung in one task).
"""

from __future__ import annotations

import math
import os
import time
import traceback
from functools import partial
from typing import Any

from dasktune._heartbeat import Heartbeat
from dasktune.records import (
    Claim,
    Decision,
    DecisionKind,
    Outcome,
    TrialStatus,
    canonical,
)
from dasktune.sklearn.folds import candidate_key
from dasktune.store.sql import HEARTBEAT_SECONDS, TrialStore

__all__ = ["Ledger"]


def _plain(record: dict[str, Any]) -> dict[str, Any]:
    """A model's record as stored: without its parameters (the trial's)."""
    return {k: v for k, v in record.items() if k != "params"}


class Ledger:
    """One fit's view of its search in the store: claims, reports, outcomes.

    Parameters
    ----------
    store : str, path-like, TrialStore or None
        The user's store (``None``: an in-memory one for this fit).
    name : str
        The search's name (with the fingerprint of its data).
    candidates : list of dict
        The models' parameters, by model id.
    info : dict
        What the search was run with (JSON, recorded with the run).
    heartbeat_seconds : float, optional
        How often the fit tells other drivers it is alive, from its own
        thread (a ``partial_fit`` step may outlast ``stale_after``).
    """

    def __init__(
        self,
        store: str | os.PathLike[str] | TrialStore | None,
        name: str,
        candidates: list[dict[str, Any]],
        info: dict[str, Any],
        *,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
    ) -> None:
        self.owns_store = not isinstance(store, TrialStore)
        self.store: TrialStore = (
            store
            if isinstance(store, TrialStore)
            else TrialStore("sqlite://" if store is None else store)
        )
        self.name = name
        try:
            self.search_id = self.store.open_search(
                name, space=None, direction="maximize", metadata=info
            )
            self.driver = self.store.register_driver(self.search_id, info)
        except BaseException:
            if self.owns_store:
                self.store.close()
            raise
        self.claims = [
            Claim(*reversed(canonical({"model_id": i, "candidate": candidate_key(c)})))
            for i, c in enumerate(candidates)
        ]
        self.candidates = candidates
        self.model_of: dict[int, int] = {}  # trial number -> model id
        self.number_of: dict[int, int] = {}  # model id -> trial number
        # on its own thread: a partial_fit step may outlast stale_after
        self.heartbeat = Heartbeat(
            partial(self.store.heartbeat, self.driver), heartbeat_seconds, name
        ).start()

    def claim(self) -> list[Decision]:
        """Claim every model: each one's decision, by model id.

        Raises
        ------
        RuntimeError
            When another live fit of the same search holds a model.
        """
        decisions = self.store.sync(
            self.search_id, self.driver, [], self.claims, retry_failed=True
        )
        held = [i for i, d in enumerate(decisions) if d.kind == DecisionKind.ELSEWHERE]
        if held:
            msg = (
                f"{len(held)} models of search {self.name!r} in "
                f"{self.store.display_url} are being trained by another fit that "
                "is alive (another process or host); wait for it to end, or give "
                "this fit another name= or store="
            )
            raise RuntimeError(msg)
        self.model_of = {d.number: i for i, d in enumerate(decisions)}
        self.number_of = {i: d.number for i, d in enumerate(decisions)}
        return decisions

    def reports(self) -> list[tuple[int, int, float, float]]:
        """The stored scores ``(model id, calls, score, time)``, in the order
        they were given to the pruner."""
        return [
            (self.model_of[number], step, value, when)
            for number, step, value, when in self.store.read_values(self.search_id)
            if number in self.model_of
        ]

    def report(
        self, model: int, calls: int, score: float
    ) -> tuple[int, int, float, float]:
        """A score as the store keeps it (``write`` it with others)."""
        return self.number_of[model], calls, score, time.time()

    def outcome(
        self, model: int, records: list[dict[str, Any]], decision: str, done: bool
    ) -> Outcome:
        """Model ``model``'s end: ``done`` (trained to the end) or pruned."""
        last = records[-1]["score"]
        return Outcome(
            self.claims[model].param_hash,
            TrialStatus.DONE if done else TrialStatus.PRUNED,
            value=float(last) if math.isfinite(last) else None,
            aux={"history": [_plain(r) for r in records], "decision": decision},
            error=None if done else decision,
            duration=sum(
                r["partial_fit_time"] + r["score_time"]
                for r in records
                if math.isfinite(r["partial_fit_time"])
            ),
            finished=time.time(),
        )

    def failure(self, model: int, err: BaseException) -> Outcome:
        """Model ``model``'s ``partial_fit`` or scorer raised ``err``."""
        text = "".join(traceback.format_exception(err))
        param_hash = self.claims[model].param_hash
        return Outcome(param_hash, TrialStatus.FAILED, error=text)

    def write(
        self, reports: list[tuple[int, int, float, float]], outcomes: list[Outcome]
    ) -> None:
        """Store scores, then the ends they decided."""
        if reports:
            self.store.add_values(self.search_id, reports)
        if outcomes:
            self.store.sync(self.search_id, self.driver, outcomes, [])

    def close(self) -> None:
        """Give back the models still held (a fit interrupted), end the run."""
        try:
            try:
                self.heartbeat.stop()
            finally:
                self.store.release(self.search_id, self.driver)
        finally:
            if self.owns_store:
                self.store.close()
