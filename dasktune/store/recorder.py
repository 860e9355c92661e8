"""The driver's recorder for a search: its rows in a :class:`TrialStore`."""

from __future__ import annotations

from collections.abc import Sequence

from dasktune.records import Claim, Decision, Outcome, Recorder
from dasktune.store.sql import TrialStore

__all__ = ["StoreRecorder"]


class StoreRecorder(Recorder):
    """The driver's recorder for one run: a search's rows in the store."""

    def __init__(
        self,
        store: TrialStore,
        search_id: int,
        driver_id: str,
        retry_failed: bool,
        stale_after: float,
    ) -> None:
        self.store = store
        self.search_id = search_id
        self.driver_id = driver_id
        self.retry_failed = retry_failed
        self.stale_after = stale_after
        self.version = 0  # bumped whenever outcomes are written
        # a re-run's claims per transaction at most: PostgreSQL pays ~10 ms a
        # transaction (a round trip, planning), so it takes larger bursts; on
        # SQLite a burst's objects would outlive the garbage collector's young
        # generations past a few hundred (see dasktune.run.driver)
        self.reuse_burst = 1024 if store.engine.dialect.name == "postgresql" else 256

    def sync(
        self, outcomes: Sequence[Outcome], claims: Sequence[Claim]
    ) -> list[Decision]:
        decisions = self.store.sync(
            self.search_id,
            self.driver_id,
            outcomes,
            claims,
            retry_failed=self.retry_failed,
            stale_after=self.stale_after,
        )
        if outcomes:  # written: the transaction committed
            self.version += 1
        return decisions

    def peek(self, hashes: Sequence[str]) -> list[Decision]:
        return self.store.peek(
            self.search_id,
            self.driver_id,
            hashes,
            retry_failed=self.retry_failed,
            stale_after=self.stale_after,
        )

    def add_values(self, reports: Sequence[tuple[int, int, float, float]]) -> None:
        self.store.add_values(self.search_id, reports)

    def read_values(self) -> list[tuple[int, int, float, float]]:
        return self.store.read_values(self.search_id)

    def heartbeat(self) -> None:
        self.store.heartbeat(self.driver_id)

    def release(self) -> None:
        self.store.release(self.search_id, self.driver_id)
