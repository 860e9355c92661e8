"""A driver's heartbeat beats from its own thread, whatever the driver waits on."""

from __future__ import annotations

import logging
import threading

import sqlalchemy as sa

from dasktune._heartbeat import Heartbeat
from dasktune.sklearn.ledger import Ledger
from dasktune.store.sql import TrialStore


def _stamp(store: TrialStore, driver: str) -> float:
    with store._tx() as conn:
        value = conn.execute(
            sa.select(store.drivers.c.heartbeat).where(store.drivers.c.id == driver)
        ).scalar_one()
    return float(value)


def test_a_partial_fit_search_beats_while_a_step_runs(tmp_path) -> None:
    """Nothing is written while a long ``partial_fit`` step runs: the
    ledger's heartbeat still refreshes the driver's row, so another fit
    does not take its models over after ``stale_after``."""
    store = TrialStore(tmp_path / "beat.db")
    try:
        ledger = Ledger(store, "beats", [{"alpha": 1.0}], {}, heartbeat_seconds=0.01)
        try:
            ledger.claim()
            first = _stamp(store, ledger.driver)
            assert ledger.heartbeat.wait_for_beats(3, timeout=60.0)
            # a beat wrote the database's clock again, with no write of ours
            assert _stamp(store, ledger.driver) > first
        finally:
            ledger.close()
        assert not any(
            t.name == "dasktune-heartbeat-beats" for t in threading.enumerate()
        )
    finally:
        store.close()


def test_a_failed_beat_is_logged_and_the_next_one_made(caplog) -> None:
    calls = []

    def beat() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("database away")

    with (
        caplog.at_level(logging.WARNING, logger="dasktune"),
        Heartbeat(beat, 0.001, "flaky") as heartbeat,
    ):
        assert heartbeat.wait_for_beats(2, timeout=60.0)
    assert "flaky: heartbeat failed" in caplog.text
    assert "ConnectionError: database away" in caplog.text


def test_stop_says_what_it_waited_for_when_a_beat_hangs() -> None:
    release = threading.Event()
    entered = threading.Event()

    def beat() -> None:
        entered.set()
        release.wait(60.0)

    heartbeat = Heartbeat(beat, 0.001, "stuck").start()
    try:
        assert entered.wait(60.0)
        try:
            heartbeat.stop(timeout=0.05)
        except TimeoutError as err:
            assert "heartbeat's write to the trial store has not returned" in str(err)
        else:
            raise AssertionError("stop() returned while a beat hung")
    finally:
        release.set()
        heartbeat.stop()
