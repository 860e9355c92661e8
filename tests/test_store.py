"""The trial store's contract, run against every backend, and its concurrency."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from dasktune._checks import sqlite_file, store_url
from dasktune.exceptions import SchemaVersionError, SearchMismatchError, StoreError
from dasktune.records import Claim, Outcome, TrialStatus, canonical
from dasktune.store import StoreRecorder
from dasktune.store.sql import SCHEMA_VERSION, TrialStore


def claim(**params) -> Claim:
    record, h = canonical(params)
    return Claim(h, record)


@pytest.fixture(params=["memory", "file", "postgresql"])
def store(request, tmp_path):
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
    elif request.param == "memory":
        url = "sqlite://"
    else:
        url = f"sqlite:///{tmp_path}/t.db"
    s = TrialStore(url)
    yield s
    s.close()


def test_a_rerun_claims_in_bursts_sized_for_the_backend(store):
    # PostgreSQL pays a round trip and planning per transaction: 1024 claims;
    # SQLite's cost is the driver's objects per burst: 256 (bench_scale)
    sid = store.open_search("b", space=None, direction="minimize", metadata={})
    recorder = StoreRecorder(store, sid, store.register_driver(sid), False, 30.0)
    postgres = store.engine.dialect.name == "postgresql"
    assert recorder.reuse_burst == (1024 if postgres else 256)


class TestStoreContract:
    """What every backend must do beyond the recorder contract
    (test_contract_recorders.py): several drivers, stale ones, searches."""

    def open(self, store, name="s", space=None, direction="minimize"):
        return store.open_search(name, space=space, direction=direction, metadata={})

    def test_rows_record_claims_and_outcomes(self, store):
        # the decisions are the recorder contract (test_contract_recorders.py);
        # here, what the rows keep of them
        sid = self.open(store)
        driver = store.register_driver(sid)
        c, bad = claim(a=1, b="x"), claim(a=3)
        store.sync(sid, driver, [], [c, bad])
        rows = store.trials(sid)
        assert [r["status"] for r in rows] == ["running", "running"]
        assert rows[0]["params"] == {"a": 1, "b": "x"}
        ok = Outcome(
            c.param_hash,
            TrialStatus.DONE,
            value=0.5,
            aux={"acc": 0.9},
            worker="tcp://w",
            host="h",
            duration=0.1,
        )
        boom = Outcome(bad.param_hash, TrialStatus.FAILED, error="Traceback: boom")
        store.sync(sid, driver, [ok, boom], [])
        row, failed = store.trials(sid)
        assert (row["status"], row["value"], row["worker"], row["attempts"]) == (
            "done",
            0.5,
            "tcp://w",
            1,
        )
        assert row["aux"] == {"acc": 0.9}
        assert (failed["status"], failed["error"]) == ("failed", "Traceback: boom")

    def test_live_claims_of_another_driver_are_not_taken(self, store):
        sid = self.open(store)
        first, second = store.register_driver(sid), store.register_driver(sid)
        c = claim(a=1)
        assert store.sync(sid, first, [], [c])[0].kind == "evaluate"
        assert store.sync(sid, second, [], [c])[0].kind == "elsewhere"

    def test_peek_decides_as_sync_without_claiming(self, store):
        sid = self.open(store)
        first, second = store.register_driver(sid), store.register_driver(sid)
        c, new = claim(a=1), claim(a=2)
        store.sync(sid, first, [], [c])
        held, unknown = store.peek(sid, second, [c.param_hash, new.param_hash])
        assert (held.kind, held.number, unknown.kind) == ("elsewhere", 0, "evaluate")
        assert len(store.trials(sid)) == 1  # nothing claimed
        store.sync(sid, first, [Outcome(c.param_hash, TrialStatus.DONE, value=3.0)], [])
        done = store.peek(sid, second, [c.param_hash])[0]
        assert (done.kind, done.value) == ("done", 3.0)
        gone = store.peek(sid, second, [c.param_hash], stale_after=-1)[0]
        assert gone.kind == "done"

    def test_stale_claims_are_taken_over(self, store):
        sid = self.open(store)
        first, second = store.register_driver(sid), store.register_driver(sid)
        c = claim(a=1)
        store.sync(sid, first, [], [c])
        time.sleep(0.05)
        store.heartbeat(second)
        decision = store.sync(sid, second, [], [c], stale_after=0.01)
        assert (decision[0].kind, decision[0].number) == ("evaluate", 0)

    def test_claims_of_a_dead_local_process_are_taken_over_at_once(self, store):
        sid = self.open(store)
        first, second = store.register_driver(sid), store.register_driver(sid)
        c = claim(a=1)
        store.sync(sid, first, [], [c])
        dead = subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"],
            capture_output=True,
            text=True,
            check=True,
        )
        with store._tx() as conn:
            conn.execute(
                store.drivers.update()
                .values(pid=int(dead.stdout))
                .where(store.drivers.c.id == first)
            )
        assert store.sync(sid, second, [], [c])[0].kind == "evaluate"

    def test_released_trials_go_back_to_queued_for_another_driver(self, store):
        sid = self.open(store)
        first, second = store.register_driver(sid), store.register_driver(sid)
        c = claim(a=1)
        store.sync(sid, first, [], [c])
        store.release(sid, first)
        assert store.trials(sid)[0]["status"] == "queued"
        assert store.sync(sid, second, [], [c])[0].kind == "evaluate"
        assert store.runs(sid)[0]["ended"] is not None

    def test_reopen_checks_space_and_direction(self, store):
        space = {"a": {"type": "int", "low": 0, "high": 3, "log": False}}
        sid = self.open(store, space=space)
        assert self.open(store, space=space) == sid
        with pytest.raises(SearchMismatchError, match="pass the same space"):
            self.open(store, space={"b": {"type": "bool"}})
        assert self.open(store) == sid  # no space: the stored one
        with pytest.raises(SearchMismatchError, match="minimize search.*maximize"):
            self.open(store, space=space, direction="maximize")

    def test_searches_are_listed_with_counts(self, store):
        sid = self.open(store, "one")
        self.open(store, "two")
        driver = store.register_driver(sid)
        c = claim(a=1)
        store.sync(sid, driver, [], [c, claim(a=2)])
        store.sync(
            sid, driver, [Outcome(c.param_hash, TrialStatus.DONE, value=1.0)], []
        )
        listed = {s["name"]: s for s in store.list_searches()}
        assert (listed["one"]["done"], listed["one"]["running"]) == (1, 1)
        assert listed["two"]["done"] == 0
        assert store.find_search("two")["name"] == "two"
        assert store.find_search("three") is None

    def test_reported_values_are_kept_in_order_first_value_wins(self, store):
        sid = self.open(store)
        other = self.open(store, name="other")
        driver = store.register_driver(sid)
        store.sync(sid, driver, [], [claim(a=1), claim(a=2)])
        store.add_values(sid, [(0, 0, 0.9, 1.0), (1, 0, 0.8, 1.5), (0, 1, 0.7, 2.0)])
        # a trial re-run after a lost worker reports its steps again
        store.add_values(sid, [(0, 1, 0.1, 3.0), (0, 2, 0.6, 3.5)])
        store.add_values(other, [(0, 0, 5.0, 1.0)])
        store.add_values(sid, [])
        assert store.read_values(sid) == [
            (0, 0, 0.9, 1.0), (1, 0, 0.8, 1.5), (0, 1, 0.7, 2.0), (0, 2, 0.6, 3.5),
        ]  # fmt: skip
        assert store.read_values(sid, numbers=[1]) == [(1, 0, 0.8, 1.5)]
        assert store.curves(sid) == {
            0: [(0, 0.9), (1, 0.7), (2, 0.6)],
            1: [(1 - 1, 0.8)],
        }
        assert [r["step"] for r in store.trials(sid)] == [2, 0]

    def test_steps_are_read_once_values_exist_even_values_that_arrive_mid_read(
        self, store, monkeypatch
    ):
        sid = self.open(store)
        driver = store.register_driver(sid)
        store.sync(sid, driver, [], [claim(a=1), claim(a=2)])
        assert [r["step"] for r in store.trials(sid)] == [None, None]
        # values stored after the look for them and before the rows are read:
        # the look again after the read sees them and the rows are read again
        store.add_values(sid, [(1, 3, 0.5, 1.0)])
        looks = []
        real = store._has_values

        def late(conn, search_id):
            looks.append(search_id)
            return len(looks) > 1 and real(conn, search_id)

        monkeypatch.setattr(store, "_has_values", late)
        assert [r["step"] for r in store.trials(sid)] == [None, 3]
        assert looks == [sid, sid]

    def test_pruned_trials_are_final_and_reused_with_their_last_value(self, store):
        sid = self.open(store)
        driver = store.register_driver(sid)
        c, fresh = claim(a=1), claim(a=2)
        store.sync(sid, driver, [], [c, fresh])
        store.add_values(sid, [(0, 0, 0.9, 1.0), (0, 1, 0.8, 2.0)])
        pruned = Outcome(c.param_hash, TrialStatus.PRUNED, value=0.8, error="worse")
        decisions = store.sync(sid, driver, [pruned], [c])
        assert (decisions[0].kind, decisions[0].number, decisions[0].value) == (
            "pruned", 0, 0.8,
        )  # fmt: skip
        # a late result of the same trial does not overwrite it
        late = Outcome(c.param_hash, TrialStatus.DONE, value=0.1)
        store.sync(sid, driver, [late], [])
        row = store.trials(sid)[0]
        assert (row["status"], row["value"], row["step"], row["error"]) == (
            "pruned", 0.8, 1, "worse",
        )  # fmt: skip
        # released with the driver: only the unfinished trial goes back
        store.release(sid, driver)
        assert [r["status"] for r in store.trials(sid)] == ["pruned", "queued"]
        assert store.best(sid) is None  # a pruned value is not a result
        (entry,) = store.list_searches()
        assert (entry["pruned"], entry["queued"]) == (1, 1)


def test_canonical_hash():
    a, ha = canonical({"b": np.float64(0.5), "a": np.int32(3), "c": (1, 2)})
    _, hb = canonical({"c": [1, 2], "a": 3, "b": 0.5})
    assert ha == hb
    assert a == {"b": 0.5, "a": 3, "c": [1, 2]}
    assert canonical({"a": 1})[1] != canonical({"a": 1.0})[1]
    assert canonical({"f": object()})[0]["f"].startswith("<object object")


def test_canonical_hash_is_the_sha256_of_the_sorted_compact_json():
    # the hashes of stores already written: the text hashed must not change
    cases = [
        {"x": 0.1, "k": 3, "s": 'é\n"q"'},
        {"b": [1, 2.5, "z"], "a": {"y": None, "x": True}},
        {"n": float("nan"), "p": float("inf"), "m": -float("inf"), "z": -0.0},
        {"big": 2**80, "e": 1e300, "t": (1, 2), "np": np.float32(0.1)},
        {},
    ]
    for params in cases:
        record, h = canonical(params)
        text = json.dumps(record, sort_keys=True, separators=(",", ":"))
        assert h == hashlib.sha256(text.encode()).hexdigest()
    assert canonical({"a": 1, "b": "x"})[1] == (
        "ecf9e98ec0641e23113ff3ce8bdc78d0ddd249886517fd4a7f68cc83d4e65667"
    )


def test_schema_newer_than_the_code_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path}/new.db"
    TrialStore(url).close()
    con = sqlite3.connect(tmp_path / "new.db")
    con.execute(
        "UPDATE dasktune_meta SET value=? WHERE key='schema_version'",
        (str(SCHEMA_VERSION + 1),),
    )
    con.commit()
    con.close()
    with pytest.raises(SchemaVersionError, match="newer than this dasktune"):
        TrialStore(url)


def test_a_path_is_a_sqlite_file(tmp_path, monkeypatch):
    # as `dasktune run --store trials.db` takes it: relative to the directory
    monkeypatch.chdir(tmp_path)
    for given in ("trials.db", tmp_path / "trials.db", str(tmp_path / "trials.db")):
        store = TrialStore(given)
        try:
            assert store.url == f"sqlite:///{tmp_path / 'trials.db'}"
            store.open_search("s", space=None, direction="minimize", metadata={})
        finally:
            store.close()
    assert (tmp_path / "trials.db").exists()
    assert store_url(":memory:") == "sqlite://"
    assert store_url("postgresql://u@h/db") == "postgresql://u@h/db"
    # what a URL reserves stays part of the file's name; "~" is the home
    # directory; a colon in a file name is not a URL's scheme
    for name in ("a?b.db", "e%20f.db", "h#1.db", "run:1.db", "t-2024-01-01T10:00.db"):
        url = store_url(name)
        TrialStore(url).close()
        assert sqlite_file(url) == str(tmp_path / name)
        assert (tmp_path / name).exists()
    assert not (tmp_path / "a").exists() and not (tmp_path / "e f.db").exists()
    monkeypatch.setenv("HOME", str(tmp_path))
    assert store_url("~/home.db") == f"sqlite:///{tmp_path / 'home.db'}"
    assert sqlite_file("sqlite://") is None
    assert sqlite_file("postgresql://u@h/db") is None


def test_bad_urls():
    for bad in ("", "  ", 5, None):
        with pytest.raises(ValueError, match="database URL such as") as info:
            TrialStore(bad)  # type: ignore[arg-type]
        assert "or the path of a SQLite file" in str(info.value)
    # a URL missing its slashes is not taken for a file name
    for bad in ("postgresql:host/db", "sqlite:x.db", "Postgres+psycopg:h"):
        with pytest.raises(ValueError, match="starts like a database URL but is not"):
            TrialStore(bad)
    with pytest.raises(StoreError, match="cannot open the store"):
        TrialStore("nosuchdb://x")
    # a URL its dialect refuses (two slashes and a path): the store's error too
    with pytest.raises(StoreError, match="cannot open the store 'sqlite://svm.db'"):
        TrialStore("sqlite://svm.db")


def test_file_store_uses_wal(tmp_path):
    TrialStore(f"sqlite:///{tmp_path}/w.db").close()
    con = sqlite3.connect(tmp_path / "w.db")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


def test_a_file_stores_wal_is_checkpointed_every_20000_pages(tmp_path):
    # SQLite's default (1,000 pages) would copy and sync a big search's random
    # index pages back to the file every 4 MB of writes
    store = TrialStore(f"sqlite:///{tmp_path}/w.db")
    for i in range(4):  # four writes of 2 MB: 2,000 pages of 4 KB
        sid = store.open_search(f"s{i}", space=None, direction="minimize", metadata={})
        store.write_snapshot(sid, 1, 1, os.urandom(2 * 10**6))
    assert os.path.getsize(f"{tmp_path}/w.db-wal") > 7.5e6  # none copied back yet
    # once copied back, a WAL that grew past 16 MB is cut back to that
    writer = store._writer.connection.dbapi_connection
    assert writer.execute("PRAGMA journal_size_limit").fetchone() == (16 * 2**20,)
    store.close()


def test_a_failed_write_is_rolled_back_and_the_next_goes_on(store):
    # SQLite's writes share one kept connection and go straight to its cursor:
    # a statement that fails raises SQLAlchemy's error (as on PostgreSQL),
    # and the whole transaction is undone, the connection usable after it
    sid = store.open_search("s", space=None, direction="minimize", metadata={})
    driver = store.register_driver(sid)
    first = claim(a=1)
    store.sync(sid, driver, [], [first])
    insert = store.trials_table.insert().values(
        search_id=sa.bindparam("sid"), number=sa.bindparam("n"),
        param_hash=sa.bindparam("h"), params=sa.bindparam("p"),
        status=sa.bindparam("s"), attempts=sa.bindparam("at"),
        created=sa.bindparam("c"), seq=sa.bindparam("q"),
    )  # fmt: skip
    row = {"sid": sid, "n": 7, "p": "{}", "s": "running", "at": 0, "c": 0.0, "q": 0}
    with pytest.raises(sa.exc.IntegrityError), store._tx() as conn:
        store._run(conn, "test insert", lambda: insert, {**row, "h": "fresh"})
        store._run(conn, "test insert", lambda: insert, {**row, "h": first.param_hash})
    assert [r["number"] for r in store.trials(sid)] == [0]  # "fresh" undone too
    second = claim(a=2)
    assert [d.number for d in store.sync(sid, driver, [], [second])] == [1]
    assert len(store.trials(sid)) == 2


_CLAIMER = textwrap.dedent(
    """
    import json, sys, time
    from dasktune.store.sql import TrialStore
    from dasktune.records import canonical, Claim, Outcome, TrialStatus
    url, start_at = sys.argv[1], float(sys.argv[2])
    store = TrialStore(url)  # both processes create the schema at once
    sid = store.open_search("race", space=None, direction="minimize", metadata={})
    driver = store.register_driver(sid)
    while time.time() < start_at:
        time.sleep(0.001)
    mine = []
    for i in range(0, 300, 3):
        claims = [Claim(*reversed(canonical({"i": j}))) for j in range(i, i + 3)]
        for c, d in zip(claims, store.sync(sid, driver, [], claims)):
            if d.kind == "evaluate":
                mine.append(c.params["i"])
                store.sync(sid, driver, [Outcome(c.param_hash, TrialStatus.DONE, value=1.0)], [])
    print(json.dumps(mine))
    """
)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_atomic_claims_from_concurrent_processes(tmp_path, request, backend):
    # three processes create the schema and the search at once, then claim
    if backend == "postgresql":
        url = request.getfixturevalue("postgres_url")
    else:
        url = f"sqlite:///{tmp_path}/race.db"
    start_at = time.time() + 2.5
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CLAIMER, url, str(start_at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": os.getcwd()},
        )
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=90) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err for _, err in outs]
    claimed = [i for out, _ in outs for i in json.loads(out)]
    assert sorted(claimed) == list(range(300))  # every one once, none twice


# -- opening stores: foreign, damaged, read-only, unreachable ------------------------


def _sqlite_snapshot(path):
    """The file's bytes and journal mode, to prove nothing was written."""
    data = path.read_bytes()
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    mode = con.execute("PRAGMA journal_mode").fetchone()[0]
    con.close()
    return data, mode


def test_a_foreign_sqlite_file_is_refused_untouched(tmp_path):
    path = tmp_path / "foreign.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE trials (id INTEGER PRIMARY KEY, what TEXT)")
    con.execute("INSERT INTO trials (what) VALUES ('mine')")
    con.commit()
    con.close()
    before = _sqlite_snapshot(path)
    for readonly in (False, True):
        with pytest.raises(StoreError, match=r"not a dasktune store.*\['trials'\]"):
            TrialStore(f"sqlite:///{path}", readonly=readonly)
    assert _sqlite_snapshot(path) == before
    assert not (tmp_path / "foreign.db-wal").exists()


def test_an_empty_or_damaged_store_is_refused_by_a_reader(tmp_path):
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    with pytest.raises(StoreError, match="none of dasktune's tables"):
        TrialStore(f"sqlite:///{empty}", readonly=True)
    assert empty.stat().st_size == 0
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match=r"junk\.db.*not a database"):
        TrialStore(f"sqlite:///{junk}")
    with pytest.raises(StoreError, match="is a directory"):
        TrialStore(f"sqlite:///{tmp_path}")
    with pytest.raises(StoreError, match="no store at"):
        TrialStore(f"sqlite:///{tmp_path}/missing.db", readonly=True)
    assert not (tmp_path / "missing.db").exists()
    with pytest.raises(StoreError, match=r"its folder .*/no/such/dir does not exist"):
        TrialStore(f"sqlite:///{tmp_path}/no/such/dir/x.db")


def test_a_damaged_schema_version_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path}/v.db"
    TrialStore(url).close()
    con = sqlite3.connect(tmp_path / "v.db")
    con.execute("UPDATE dasktune_meta SET value='x' WHERE key='schema_version'")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="without a valid schema_version"):
        TrialStore(url)


def test_reads_take_no_write_lock(tmp_path):
    # a driver waiting for another's trial peeks while someone holds the lock
    store = TrialStore(f"sqlite:///{tmp_path}/s.db")
    sid = store.open_search("s", space=None, direction="minimize", metadata={})
    driver = store.register_driver(sid)
    c = Claim(*reversed(canonical({"a": 1})))
    store.sync(sid, driver, [], [c])
    writer = sqlite3.connect(tmp_path / "s.db", isolation_level=None, timeout=0.1)
    writer.execute("BEGIN IMMEDIATE")
    try:
        assert store.peek(sid, driver, [c.param_hash])[0].kind == "elsewhere"
        assert len(store.read_trials(sid)[1]) == 1
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_a_reader_reads_and_cannot_write(tmp_path):
    url = f"sqlite:///{tmp_path}/r.db"
    writer = TrialStore(url)
    sid = writer.open_search("s", space=None, direction="minimize", metadata={})
    writer.close()
    reader = TrialStore(url, readonly=True)
    assert [s["name"] for s in reader.list_searches()] == ["s"]
    assert reader.trials(sid) == []
    with pytest.raises(StoreError, match="read-only"):
        reader.register_driver(sid)
    reader.close()


def test_a_reader_refuses_sql_writes_and_leaves_no_files(tmp_path):
    path = tmp_path / "r.db"
    writer = TrialStore(f"sqlite:///{path}")
    writer.open_search("s", space=None, direction="minimize", metadata={})
    writer.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.db"]
    before = _sqlite_snapshot(path)
    reader = TrialStore(f"sqlite:///{path}", readonly=True)
    assert [s["name"] for s in reader.list_searches()] == ["s"]
    with (
        pytest.raises(sa.exc.OperationalError, match="readonly"),
        reader.engine.begin() as conn,
    ):
        conn.exec_driver_sql("DELETE FROM searches")
    reader.close()
    # the -wal and -shm files a WAL store's reader makes are gone with it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.db"]
    assert _sqlite_snapshot(path) == before


_OPEN_RACE = textwrap.dedent("""
    import sys, time
    from dasktune.store.sql import TrialStore
    folder, rounds = sys.argv[1], int(sys.argv[2])
    print("ready", flush=True)
    t0 = float(sys.stdin.readline())  # the same instant for every process
    for r in range(rounds):
        while time.time() < t0 + 0.05 * r:
            time.sleep(0.0005)
        try:
            TrialStore(f"sqlite:///{folder}/race-{r}.db").close()
        except Exception as err:
            print("ERR", r, type(err).__name__, str(err).splitlines()[0])
""")


def test_processes_opening_a_new_sqlite_store_together_all_open_it(tmp_path):
    # Optuna's test_multithread_create_study, across processes: each of 20 new
    # files opened by three processes at the same instant. Switching a file to
    # WAL answered "database is locked" at once (no busy timeout) to the
    # processes that came second, about one round in three.
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _OPEN_RACE, str(tmp_path), "20"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    assert [p.stdout.readline() for p in procs] == ["ready\n"] * 3  # imported
    start = time.time() + 0.2
    outs = [p.communicate(f"{start}\n", timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0]
    assert "".join(outs) == ""
    for r in range(20):
        con = sqlite3.connect(tmp_path / f"race-{r}.db")
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        con.close()


def test_store_argument_of_the_wrong_type():
    with pytest.raises(ValueError, match="got int: 5"):
        TrialStore(5)  # type: ignore[arg-type]


# -- PostgreSQL: real server ----------------------------------------------------------


def test_postgresql_plans_each_lookup_for_its_own_hashes(postgres_url):
    # psycopg prepares a statement run often; PostgreSQL then plans it once for
    # every parameter, and the lookups by hash (IN of 256) slowed from ~12 ms
    # to ~200 ms each on 11,000 trials: every connection asks for custom plans
    store = TrialStore(postgres_url)
    sid = store.open_search("s", space=None, direction="minimize", metadata={})
    driver = store.register_driver(sid)
    claims = [Claim(*reversed(canonical({"a": i}))) for i in range(300)]
    for _ in range(12):  # past psycopg's and PostgreSQL's thresholds
        store.sync(sid, driver, [], claims)
    with store.engine.connect() as conn:  # the pool's connections, as sync's
        mode = conn.exec_driver_sql("SHOW plan_cache_mode").scalar()
    assert mode == "force_custom_plan"
    store.close()


def test_postgresql_passwords_are_never_shown(postgres_url):
    store = TrialStore(postgres_url)
    assert "s3cret" not in store.display_url and "***" in store.display_url
    store.open_search("s", space=None, direction="minimize", metadata={})
    with pytest.raises(SearchMismatchError) as info:
        store.open_search("s", space=None, direction="maximize", metadata={})
    assert "s3cret" not in str(info.value)
    store.close()


def test_postgresql_bad_credentials_and_a_server_that_is_down(
    postgres_server, postgres_url
):
    wrong = postgres_url.replace("s3cret-pw", "wrong-pw")
    with pytest.raises(StoreError, match="password authentication failed") as info:
        TrialStore(wrong)
    assert "wrong-pw" not in str(info.value)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = postgres_url.replace(f":{postgres_server.port}/", f":{port}/")
    with pytest.raises(StoreError, match="cannot use the store .*127.0.0.1"):
        TrialStore(down)


def test_postgresql_reader_of_an_empty_database_writes_nothing(postgres_url):
    import sqlalchemy as sa

    with pytest.raises(StoreError, match="none of dasktune's tables"):
        TrialStore(postgres_url, readonly=True)
    engine = sa.create_engine(postgres_url)
    assert sa.inspect(engine).get_table_names() == []
    engine.dispose()


def test_postgresql_url_without_a_driver_name_works(postgres_url):
    plain = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    store = TrialStore(plain)
    assert store.engine.dialect.driver == "psycopg"
    store.close()


def _as_schema(store: TrialStore, version: int) -> None:
    """Make ``store`` look as dasktune wrote it at schema ``version`` (2 to 5)."""
    with store.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE drivers DROP COLUMN node")
        if version == 5:
            conn.exec_driver_sql("UPDATE dasktune_meta SET value='5'")
            return
        conn.exec_driver_sql("DROP TABLE trial_snapshots")
        if version == 4:
            conn.exec_driver_sql("UPDATE dasktune_meta SET value='4'")
            return
        for table, column in (
            ("searches", "directions"),
            ("trials", "objectives"),
            ("trials", "constraints"),
            ("trials", "violation"),
        ):
            conn.exec_driver_sql(f"ALTER TABLE {table} DROP COLUMN {column}")
        if version < 3:
            conn.exec_driver_sql("DROP TABLE trial_values")
        conn.exec_driver_sql(
            f"UPDATE dasktune_meta SET value='{version}' WHERE key='schema_version'"
        )


def _old_store(
    request: pytest.FixtureRequest,
    tmp_path,
    backend: str,
    version: int,
    direction: str = "minimize",
) -> tuple[str, int, Claim]:
    """A store as dasktune wrote it at schema ``version``, holding one search
    with one done trial (value 0.5): its URL, the search and the trial's claim."""
    if backend == "postgresql":
        url = request.getfixturevalue("postgres_url")
    else:
        url = f"sqlite:///{tmp_path}/old.db"
    old = TrialStore(url)
    sid = old.open_search("s", space=None, direction=direction, metadata={})
    driver = old.register_driver(sid)
    c = claim(a=1)
    old.sync(sid, driver, [], [c])
    old.sync(sid, driver, [Outcome(c.param_hash, TrialStatus.DONE, value=0.5)], [])
    _as_schema(old, version)
    old.close()
    return url, sid, c


@pytest.mark.parametrize("backend", ["file", "postgresql"])
def test_a_schema_2_store_is_migrated_keeping_its_trials(tmp_path, request, backend):
    url, sid, _ = _old_store(request, tmp_path, backend, 2)
    if backend == "file":
        # a reader reads it as it is, writing nothing
        reader = TrialStore(url, readonly=True)
        assert reader.schema_version == 2
        assert reader.read_values(sid) == []
        assert reader.trials(sid)[0]["step"] is None
        reader.close()
    store = TrialStore(url)
    assert store.schema_version == SCHEMA_VERSION == 6
    (row,) = store.trials(sid)
    assert (row["status"], row["value"], row["step"]) == ("done", 0.5, None)
    store.add_values(sid, [(0, 3, 0.25, 1.0)])
    assert store.trials(sid)[0]["step"] == 3
    store.close()
    again = TrialStore(url)  # opening a migrated store again changes nothing
    assert again.read_values(sid) == [(0, 3, 0.25, 1.0)]
    again.close()


@pytest.mark.parametrize("backend", ["file", "postgresql"])
def test_a_schema_3_store_gains_objectives_and_constraints(tmp_path, request, backend):
    url, sid, c = _old_store(request, tmp_path, backend, 3, "maximize")
    if backend == "file":
        reader = TrialStore(url, readonly=True)  # read as it is
        assert reader.schema_version == 3
        row = reader.trials(sid)[0]
        assert (row["value"], row["objectives"], row["constraints"]) == (
            0.5,
            None,
            None,
        )
        assert reader.best(sid, "maximize")["value"] == 0.5
        reader.close()
    store = TrialStore(url)
    assert store.schema_version == SCHEMA_VERSION
    # the old search keeps its one direction; another is refused
    assert store.open_search("s", space=None, direction="maximize", metadata={}) == sid
    with pytest.raises(SearchMismatchError, match="is a maximize search"):
        store.open_search("s", space=None, direction="minimize", metadata={})
    driver = store.register_driver(sid)
    (decision,) = store.sync(sid, driver, [], [c])
    assert (decision.kind, decision.value, decision.values) == ("done", 0.5, None)
    d = claim(a=2)
    store.sync(sid, driver, [], [d])
    bad = Outcome(d.param_hash, TrialStatus.DONE, value=9.0, constraints=(1.0,))
    store.sync(sid, driver, [bad], [])
    assert store.best(sid, "maximize")["number"] == 0  # 9.0 is infeasible
    store.close()


@pytest.mark.parametrize("backend", ["file", "postgresql"])
def test_a_schema_4_store_gains_snapshots(tmp_path, request, backend):
    from dasktune.table import TrialTable

    url, sid, _ = _old_store(request, tmp_path, backend, 4)
    if backend == "file":
        reader = TrialStore(url, readonly=True)  # read as it is: no snapshots
        assert reader.schema_version == 4 and reader.read_snapshot(sid) is None
        assert TrialTable.from_store(reader, sid).n == 0  # the rows are read
        reader.close()
    store = TrialStore(url)
    assert store.schema_version == SCHEMA_VERSION and store.read_snapshot(sid) is None
    assert store.write_snapshot(sid, 3, 1, b"data")
    assert store.read_snapshot(sid) == (3, b"data")
    store.close()


def test_snapshots_are_replaced_only_by_later_ones(store):
    sid = store.open_search("s", space=None, direction="minimize", metadata={})
    other = store.open_search("t", space=None, direction="minimize", metadata={})
    assert store.read_snapshot(sid) is None
    if store.url == "sqlite://":  # in memory: no other process could read one
        assert not store.write_snapshot(sid, 5, 10, b"five")
        assert store.read_snapshot(sid) is None
        return
    assert store.write_snapshot(sid, 5, 10, b"five")
    assert not store.write_snapshot(sid, 4, 9, b"four")  # an older one
    assert not store.write_snapshot(sid, 5, 10, b"again")  # as recent
    assert store.read_snapshot(sid) == (5, b"five")
    assert store.write_snapshot(sid, 7, 12, b"seven" * 10**6)
    assert store.write_snapshot(other, 1, 1, b"other")
    assert store.read_snapshot(sid) == (7, b"seven" * 10**6)
    assert store.read_snapshot(other) == (1, b"other")
    reader = TrialStore(store.url, readonly=True)
    assert reader.read_snapshot(sid)[0] == 7
    with pytest.raises(StoreError, match="read-only"):
        reader.write_snapshot(sid, 8, 13, b"eight")
    reader.close()


def _mixed_search(store):
    """A search whose rows hold every kind of value a read must keep."""
    sid = store.open_search(
        "mixed", space=None, direction="minimize", metadata={},
        directions=["minimize", "maximize"],
    )  # fmt: skip
    driver = store.register_driver(sid)
    claims = [
        claim(x=1, s="a", n=[1, {"k": "v"}]),  # nested values
        claim(x=0.1 + 0.2, s='é "quoted", comma', b=True),  # a key others lack
        claim(x="text", big=2**70),  # mixed types; an int beyond int64
        claim(x=None),  # a JSON null
        claim(x=5e-324, s=""),  # the smallest double, an empty string
        claim(y=1),  # running: no outcome
    ]
    store.sync(sid, driver, [], claims)
    outcomes = [
        Outcome(claims[0].param_hash, TrialStatus.DONE, value=1 / 3, aux={"a": [1]},
                worker="tcp://w:1", host="h1", started=1.7e9 + 0.123456,
                finished=1.7e9 + 1.5, duration=1.376544, values=(1 / 3, 2.0),
                constraints=(-1.0, 0.5)),
        Outcome(claims[1].param_hash, TrialStatus.FAILED, error="Trace\nback",
                worker="tcp://w:2", host="h2"),
        Outcome(claims[2].param_hash, TrialStatus.DONE, value=-1e308,
                values=(-1e308, 1e-300)),
        Outcome(claims[3].param_hash, TrialStatus.PRUNED, value=2.5),
        Outcome(claims[4].param_hash, TrialStatus.DONE, value=0.0, attempts=3),
    ]  # fmt: skip
    store.sync(sid, driver, outcomes, [])
    store.add_values(sid, [(3, 4, 2.5, 1.0)])
    return sid


@pytest.mark.parametrize("mixed", [False, True])
def test_read_columns_gives_the_rows_of_read_trials(store, mixed):
    # the columns a table reads are read_trials' rows field by field: every
    # value kept (NULLs, strings, nested JSON, extreme floats, steps), in order
    from dasktune.records import TRIAL_FIELDS

    if mixed:
        sid = _mixed_search(store)
    else:
        sid = store.open_search("empty", space=None, direction="minimize", metadata={})
    seq, rows = store.read_trials(sid)
    got_seq, columns = store.read_columns(sid)
    assert got_seq == seq and list(columns) == list(TRIAL_FIELDS)
    assert all(len(column) == len(rows) for column in columns.values())
    for j, name in enumerate(TRIAL_FIELDS):
        want = [row[j] for row in rows]
        have = columns[name].tolist()
        if columns[name].dtype == np.float64:
            want = [np.nan if v is None else v for v in want]
            np.testing.assert_array_equal(have, want, err_msg=name)
        else:
            assert have == want, name
    # and the table built from them is the table built from the rows
    from dasktune.table import TrialTable

    by_rows, by_columns = TrialTable(objectives=2), TrialTable(objectives=2)
    by_rows.update(rows)
    by_columns.update_columns(columns)
    pd.testing.assert_frame_equal(by_columns.frame(), by_rows.frame())
    # and the store's snapshot of that table loads as it
    snapshot = by_columns.dumps()
    if store.write_snapshot(sid, by_columns.seq, by_columns.n, snapshot):
        loaded = TrialTable.from_store(store, sid, objectives=2)
        pd.testing.assert_frame_equal(loaded.frame(), by_rows.frame())
        assert loaded.seq == seq
    if mixed:  # only the rows written since a sequence
        later, since = (
            store.read_columns(sid, since=seq - 1),
            store.read_trials(sid, since=seq - 1),
        )
        assert later[0] == since[0]
        assert later[1]["number"].tolist() == [row[0] for row in since[1]]
        assert store.read_columns(sid, since=seq)[1]["number"].tolist() == []


def test_read_columns_converts_hand_written_values_as_rows_are(tmp_path):
    # values written by hand into a column of another type convert (or fail)
    # as a table of read_trials' rows does
    from dasktune.table import TrialTable

    store = TrialStore(f"sqlite:///{tmp_path}/t.db")
    sid = store.open_search("s", space=None, direction="minimize", metadata={})
    store.sync(sid, store.register_driver(sid), [], [claim(a=1)])
    with sqlite3.connect(f"{tmp_path}/t.db") as raw:
        raw.execute("UPDATE trials SET attempts = '7', value = '0.5'")
    _, columns = store.read_columns(sid)
    assert columns["attempts"].tolist() == [7] and columns["value"].tolist() == [0.5]
    with sqlite3.connect(f"{tmp_path}/t.db") as raw:
        raw.execute("UPDATE trials SET attempts = 'many'")
    with pytest.raises(ValueError):
        store.read_columns(sid)
    with pytest.raises(ValueError):
        TrialTable().update(store.read_trials(sid)[1])
    store.close()


@pytest.mark.parametrize("backend", ["file", "postgresql"])
def test_a_schema_5_store_gains_heartbeats_on_the_database_clock(
    tmp_path, request, backend
):
    url, sid, c = _old_store(request, tmp_path, backend, 5)
    if backend == "file":
        reader = TrialStore(url, readonly=True)  # read as it is: no node
        assert reader.schema_version == 5 and "node" not in reader.runs(sid)[0]
        reader.close()
    store = TrialStore(url)
    assert store.schema_version == SCHEMA_VERSION == 6
    old_driver = store.runs(sid)[0]
    assert old_driver["node"] is None  # unknown: judged by its heartbeat alone
    driver = store.register_driver(sid)
    assert store.runs(sid)[1]["node"] == store.node
    assert store.sync(sid, driver, [], [c])[0].kind == "done"
    store.close()


def _password_in_query(url: str) -> str:
    """``url`` with its password moved from ``user:pw@`` to ``?password=pw``."""
    assert ":s3cret-pw@" in url
    return url.replace(":s3cret-pw@", "@") + "?password=s3cret-pw"


@pytest.mark.parametrize("form", ["user:pw@", "?password="])
def test_postgresql_passwords_are_never_shown_whatever_the_url_form(
    postgres_url, form, caplog
):
    import logging

    from dasktune import Search

    caplog.set_level(logging.DEBUG)  # every log line too, SQLAlchemy's included
    url = postgres_url if form == "user:pw@" else _password_in_query(postgres_url)
    assert "s3cret-pw" in url
    store = TrialStore(url)
    assert "s3cret" not in store.display_url and "***" in store.display_url
    store.open_search("s", space=None, direction="minimize", metadata={})
    with pytest.raises(SearchMismatchError) as mismatch:
        store.open_search("s", space=None, direction="maximize", metadata={})
    store.close()
    with pytest.raises(StoreError, match="password authentication failed") as wrong:
        TrialStore(url.replace("s3cret-pw", "wrong-pw"))
    with pytest.raises(StoreError) as unparsable:  # a URL SQLAlchemy cannot parse
        TrialStore(url.replace("@127.0.0.1:", "@127.0.0.1:x"))
    search = Search("s", None, url)
    shown = [str(mismatch.value), str(wrong.value), str(unparsable.value),
             repr(search), caplog.text]  # fmt: skip
    search.close()
    for text in shown:
        assert "s3cret" not in text and "wrong-pw" not in text


def test_postgresql_pgpassword_is_used_untouched_and_never_shown(
    postgres_url, monkeypatch
):
    url = postgres_url.replace(":s3cret-pw@", "@")
    monkeypatch.setenv("PGPASSWORD", "s3cret-pw")  # libpq reads it: we never do
    store = TrialStore(url)
    store.open_search("s", space=None, direction="minimize", metadata={})
    store.close()
    assert os.environ["PGPASSWORD"] == "s3cret-pw"
    monkeypatch.setenv("PGPASSWORD", "wrong-pw")
    with pytest.raises(StoreError, match="password authentication failed") as wrong:
        TrialStore(url)
    assert "wrong-pw" not in str(wrong.value)
    assert os.environ["PGPASSWORD"] == "wrong-pw"


def test_a_store_that_starts_like_a_url_hides_its_password():
    with pytest.raises(ValueError, match="starts like a database URL") as info:
        store_url("postgresql:me:s3cret@host/db")
    assert "s3cret" not in str(info.value)


# -- refused before anything is written: foreign, read-only, newer, garbage ----


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_a_sqlite_file_of_other_tables_is_refused_untouched_by_the_library(
    tmp_path,
):
    from dasktune import Search, minimize

    path = tmp_path / "app.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    con.execute("INSERT INTO customers (name) VALUES ('ada')")
    con.commit()
    con.close()
    before = _sqlite_snapshot(path)
    refused = r"app\.db is not a dasktune store: .*other tables \(customers\)"
    with pytest.raises(StoreError, match=refused):
        TrialStore(path)
    with pytest.raises(StoreError, match=refused):
        Search("s", abs, path)
    with pytest.raises(StoreError, match=refused):
        # refused before a cluster is looked for: none is given, none starts
        minimize(sum, [(0, 1)], store=path, client="tcp://127.0.0.1:9")
    assert _sqlite_snapshot(path) == before  # no table added, still not WAL
    assert _files(tmp_path) == ["app.db"]
    # a new, missing or empty file is dasktune's to make
    empty = tmp_path / "empty.db"
    empty.touch()
    TrialStore(empty).close()
    TrialStore(tmp_path / "new.db").close()


def test_a_postgresql_database_of_other_tables_takes_dasktunes(postgres_url):
    # a database is often shared by several applications: dasktune's tables
    # go beside the others (a file is one application's, and is refused)
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
    store = TrialStore(postgres_url)
    store.open_search("s", space=None, direction="minimize", metadata={})
    store.close()
    with engine.connect() as conn:
        names = set(sa.inspect(conn).get_table_names())
    engine.dispose()
    assert {"customers", "trials", "dasktune_meta"} <= names


def _as_another_user(call):
    """``call()``'s error message (or ``None``) as an unprivileged user: run
    as root (CI is), in a forked child that drops to ``nobody``, since root may
    write any file; otherwise here."""
    if os.geteuid() != 0:
        try:
            call()
        except Exception as err:
            return f"{type(err).__name__}: {err}"
        return None
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no pytest machinery, only the call
        try:
            os.setgid(65534)
            os.setuid(65534)
            try:
                call()
                out = "None"
            except Exception as err:
                out = f"{type(err).__name__}: {err}"
            os.write(write, out.encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        out = pipe.read().decode()
    os.waitpid(pid, 0)
    return None if out == "None" else out


@pytest.mark.parametrize("what", ["file", "folder"])
def test_a_store_this_user_may_not_write_is_refused_leaving_no_files(request, what):
    from dasktune import Float, Search

    # in a folder every user may enter (pytest's tmp_path is root's alone)
    top = tempfile.mkdtemp(prefix="dasktune-ro-", dir="/tmp")
    request.addfinalizer(lambda: shutil.rmtree(top, ignore_errors=True))
    os.chmod(top, 0o755)
    folder = pathlib.Path(top) / "runs"
    folder.mkdir()
    path = folder / "t.db"
    store = TrialStore(path)
    store.open_search("old", space=None, direction="minimize", metadata={})
    store.close()
    before = path.read_bytes()
    if what == "file":
        path.chmod(0o444)
        folder.chmod(0o777)  # -wal and -shm files could be made beside it
    else:
        path.chmod(0o666)
        folder.chmod(0o555)

    def open_it():
        Search("new", abs, path, space={"x": Float(0, 1)})

    try:
        message = _as_another_user(open_it)
    finally:
        folder.chmod(0o755)
    problem = "the file is read-only" if what == "file" else "may not write in"
    assert message is not None
    assert message.startswith(f"StoreError: cannot write the store sqlite:///{path}")
    assert problem in message and "dasktune show" in message
    # one line; no SQL, no parameters (the provenance: cwd, user, host)
    assert "\n" not in message and "INSERT" not in message and "cwd" not in message
    assert _files(folder) == ["t.db"] and path.read_bytes() == before


@pytest.mark.parametrize("damage", ["newer", "garbage", "version", "foreign"])
def test_a_refused_store_leaves_no_files_beside_it(tmp_path, damage):
    path = tmp_path / "t.db"
    if damage == "garbage":
        path.write_bytes(b"\x00not SQLite" * 1000)
    elif damage == "foreign":
        con = sqlite3.connect(path)
        con.execute("PRAGMA journal_mode=WAL")  # a WAL file of another program
        con.execute("CREATE TABLE t (x)")
        con.close()
    else:
        TrialStore(path).close()  # a WAL store: reading it makes -wal, -shm
        con = sqlite3.connect(path)
        value = str(SCHEMA_VERSION + 1) if damage == "newer" else "zero"
        con.execute("UPDATE dasktune_meta SET value=?", (value,))
        con.commit()
        con.close()
    before = path.read_bytes()
    with pytest.raises(StoreError) as caught:
        TrialStore(path)
    message = str(caught.value)
    assert str(path) in message and "\n" not in message
    assert _files(tmp_path) == ["t.db"] and path.read_bytes() == before


@pytest.mark.parametrize("command", ["run", "demo", "show", "export"])
def test_the_cli_refuses_a_foreign_store_before_starting_a_cluster(
    tmp_path, capsys, command
):
    from dasktune.cli import main

    path = tmp_path / "app.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
    con.close()
    script = tmp_path / "s.py"
    script.write_text("from dasktune import Float\nspace = {'x': Float(0, 1)}\n"
                      "def objective(p):\n    return p['x']\n")  # fmt: skip
    # an unreachable scheduler: an error about it would mean the cluster came first
    cluster = ["--scheduler", "tcp://127.0.0.1:9", "--connect-timeout", "60"]
    argv = {
        "run": ["run", str(script), "--store", str(path), "--n-trials", "2", *cluster],
        "demo": ["demo", "--store", str(path), *cluster],
        "show": ["show", str(path)],
        "export": ["export", str(path), "--to", "optuna-journal", f"{tmp_path}/j"],
    }[command]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "StoreError" in err and "app.db is not a dasktune store" in err
    assert _files(tmp_path) == ["app.db", "s.py"]


def test_a_postgres_server_that_never_answers_is_given_up(monkeypatch):
    # the port accepts connections and says nothing: libpq alone would wait
    # as long as TCP does
    import dasktune.store.sql as sql

    monkeypatch.setattr(sql, "_PG_CONNECT", {"connect_timeout": 1})
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(5)
        port = silent.getsockname()[1]
        with pytest.raises(StoreError, match="connection timeout expired"):
            TrialStore(f"postgresql://someone@127.0.0.1:{port}/db")


def test_a_failed_write_when_opening_a_search_is_one_line_without_sql(tmp_path):
    # another connection holds the write lock past the busy timeout: SQLite's
    # "database is locked", without the statement or its parameters
    path = tmp_path / "t.db"
    store = TrialStore(path)
    # the store's connection for writes, made now, waits 50 ms, not 60 s
    store._writer = store.engine.connect()
    store._writer.connection.dbapi_connection.execute("PRAGMA busy_timeout=50")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError) as caught:
            store.open_search(
                "s", space=None, direction="minimize", metadata={"cwd": "/secret"}
            )
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        store.close()
    message = str(caught.value)
    assert message.startswith(
        f"cannot use the store sqlite:///{path}: database is locked"
    )
    assert "\n" not in message and "INSERT" not in message and "/secret" not in message
