"""Damaged or crafted stores (rows written with sqlite3 directly): one
StoreError naming the store and the trial, never a raw decoding error; a
snapshot that cannot be read is skipped with a warning; nothing is unpickled."""

from __future__ import annotations

import json
import pathlib
import re
import sqlite3
import warnings

import pytest

import dasktune
from dasktune import Float, Search
from dasktune.exceptions import StoreError
from dasktune.optim.base import RandomSampler
from dasktune.records import Claim, Outcome, TrialStatus, canonical
from dasktune.store.rows import trial_problem
from dasktune.store.sql import TrialStore
from dasktune.table import _SNAPSHOT_MAGIC, TrialTable

POINTS = [{"x": 0.25}, {"x": 0.5}, {"x": 0.75}]


def x_value(params):
    return params["x"]


def _store(path: pathlib.Path) -> tuple[TrialStore, int]:
    """A store of search "s": three done trials (numbers 0, 1, 2)."""
    store = TrialStore(path)
    sid = store.open_search(
        "s", space={"x": Float(0, 1).to_json()}, direction="minimize", metadata={}
    )
    driver = store.register_driver(sid)
    claims = [Claim(*reversed(canonical(p))) for p in POINTS]
    store.sync(sid, driver, [], claims)
    done = [
        Outcome(c.param_hash, TrialStatus.DONE, value=p["x"])
        for c, p in zip(claims, POINTS, strict=True)
    ]
    store.sync(sid, driver, done, [])
    return store, sid


def _craft(path: pathlib.Path, sql: str) -> None:
    con = sqlite3.connect(path)
    con.execute(sql)
    con.commit()
    con.close()


CRAFTED = {
    # what is written over trial 1, and what the error says of it
    "bad JSON": ("params = '{bad'", "its params is not valid JSON"),
    "deep JSON": (
        "params = '" + "[" * 100_000 + "]" * 100_000 + "'",
        "its params is JSON nested too deep",
    ),
    "params not a dict": ("params = '[1, 2]'", "its params is JSON of a list"),
    "text value": ("value = 'abc'", "its value is str 'abc', not a number"),
    "huge number": ("number = 1e30", "its number is 1e+30"),
    "bad aux": ("aux = '{'", "its aux is not valid JSON"),
    "aux not a dict": ("aux = '\"text\"'", "its aux is JSON of a str"),
    "objectives": ("objectives = '5'", "its objectives is JSON of a int"),
    "constraints": ("constraints = '[\"a\"]'", "its constraints holds values"),
    "status": ("status = 'weird'", "its status is 'weird'"),
    "seq": ("seq = 'x'", "its seq is 'x'"),
}


@pytest.mark.parametrize("case", list(CRAFTED))
def test_a_crafted_trial_is_a_store_error_naming_it(tmp_path, case):
    change, said = CRAFTED[case]
    path = tmp_path / "t.db"
    store, sid = _store(path)
    store.close()
    _craft(path, f"UPDATE trials SET {change} WHERE number = 1")
    which = "trial numbered 1e+30" if case == "huge number" else "trial 1"
    named = re.escape(f"t.db holds a damaged {which}") + ".*" + re.escape(said)
    store = TrialStore(path)
    try:
        # the reader's rows, as `dasktune show` reads them
        with pytest.raises(StoreError, match=named):
            store.trials(sid)
        # the row as a driver's claim decides on it (re-running that point)
        if case not in ("bad JSON", "deep JSON", "params not a dict", "huge number",
                        "seq"):  # fmt: skip
            driver = store.register_driver(sid)
            claim = Claim(*reversed(canonical(POINTS[1])))
            with pytest.raises(StoreError, match=named):
                store.sync(sid, driver, [], [claim])
    finally:
        store.close()
    # the search's table (search.trials(), filters): only where it decodes
    if case in ("aux not a dict", "objectives", "status", "constraints"):
        return  # kept as stored: shown, not decoded
    with Search("s", None, path) as search, pytest.raises(StoreError, match=named):
        search.trials()


def test_a_crafted_search_row_is_a_store_error_naming_it(tmp_path):
    path = tmp_path / "t.db"
    _store(path)[0].close()
    for column, said in [
        ("space", "its space is not valid JSON"),
        ("directions", "its directions are '{'"),
    ]:
        _craft(path, f"UPDATE searches SET {column} = '{{'")
        with pytest.raises(StoreError, match=f"damaged search 's': {said}"):
            Search("s", None, path)
        with pytest.raises(StoreError, match=f"damaged search 's': {said}"):
            TrialStore(path, readonly=True).list_searches()
        _craft(path, f"UPDATE searches SET {column} = NULL")


def _forged_snapshot(**header_changes) -> bytes:
    data = TrialTable(["x"]).dumps()
    magic = len(_SNAPSHOT_MAGIC)
    size = int.from_bytes(data[magic : magic + 8], "little")
    header = json.loads(data[magic + 8 : magic + 8 + size])
    header.update(header_changes)
    text = json.dumps(header).encode()
    out = _SNAPSHOT_MAGIC + len(text).to_bytes(8, "little") + text
    return out + b"\0" * (-len(out) % 8)


@pytest.mark.parametrize(
    "forged",
    [
        {"n": 10**12},  # 8 TiB of trial numbers asked for
        {"n": -5},
        {"n": 10**40},  # past int64
        {"values": ["const", "<f8", [0.0], [0, 10**9]]},  # 10**9 objectives
        {"json": "[" * 100_000},
    ],
    ids=["1e12 rows", "negative", "past int64", "wide values", "deep"],
)
def test_a_crafted_snapshot_is_skipped_with_a_warning(tmp_path, forged):
    path = tmp_path / "t.db"
    store, sid = _store(path)
    assert store.write_snapshot(sid, 10**6, 3, _forged_snapshot(**forged))
    with pytest.warns(RuntimeWarning, match="snapshot of search 1 is skipped"):
        table = TrialTable.from_store(store, sid, ["x"])
    assert table.n == 0  # nothing taken from it: the rows are read instead
    store.close()
    with Search("s", None, path) as search, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        frame = search.trials()
    assert frame["x"].tolist() == [0.25, 0.5, 0.75]


def test_a_snapshot_may_claim_no_more_trials_than_the_search_has(tmp_path):
    store, sid = _store(tmp_path / "t.db")
    assert store.trial_span(sid) == 3
    assert store.trial_span(sid + 1) == 0  # no such search: no trial
    table = TrialTable(["x"])
    table.update_columns(store.read_columns(sid)[1])
    data = table.dumps()
    assert TrialTable.loads(data, max_rows=3).n == 3
    with pytest.raises(ValueError, match="claims 3 trials where the search has"):
        TrialTable.loads(data, max_rows=2)
    store.close()


def test_a_sound_row_has_no_problem(tmp_path):
    store, sid = _store(tmp_path / "t.db")
    _, rows = store.read_trials(sid)
    assert [trial_problem(row) for row in rows] == [None, None, None]
    store.close()


def test_nothing_read_from_a_store_is_unpickled():
    # the modules that read stores and snapshots never call an unpickler (the
    # command line registers a run file's module with cloudpickle, to send it)
    root = pathlib.Path(dasktune.__file__).parent
    unpickle = re.compile(
        r"\b(pickle|cloudpickle|dill|joblib|marshal|shelve)\.(loads?|Unpickler|open)\b"
        r"|from (pickle|cloudpickle|dill|joblib|marshal|shelve) import"
        r"|numpy\.load\(|np\.load\(|allow_pickle=True"
    )
    for name in ("store/sql.py", "store/rows.py", "store/recorder.py", "table.py",
                 "search.py", "export.py", "serve.py", "cli.py"):  # fmt: skip
        source = (root / name).read_text()
        assert not unpickle.search(source), (name, unpickle.search(source))


def test_the_optuna_storage_names_a_damaged_trial(tmp_path):
    pytest.importorskip("optuna")
    from dasktune import optuna_storage

    path = tmp_path / "t.db"
    _store(path)[0].close()
    _craft(path, "UPDATE trials SET params = '{bad' WHERE number = 2")
    storage = optuna_storage(path)
    study_id = storage.get_study_id_from_name("s")
    with pytest.raises(StoreError, match="damaged trial 2: its params"):
        storage.get_all_trials(study_id)
    storage.close()


def test_a_damaged_run_row_is_named(tmp_path):
    path = tmp_path / "t.db"
    store, sid = _store(path)
    store.close()
    _craft(path, "UPDATE drivers SET info = '{'")
    reader = TrialStore(path, readonly=True)
    with pytest.raises(StoreError, match="damaged run .*its info is not JSON"):
        reader.runs(sid)
    reader.close()


def test_the_best_trial_and_the_front_name_a_damaged_trial(tmp_path):
    path = tmp_path / "t.db"
    store = TrialStore(path)
    sid = store.open_search(
        "two", space=None, direction="minimize", metadata={},
        directions=["minimize", "minimize"],
    )  # fmt: skip
    driver = store.register_driver(sid)
    claims = [Claim(*reversed(canonical(p))) for p in POINTS]
    store.sync(sid, driver, [], claims)
    store.sync(
        sid, driver,
        [Outcome(c.param_hash, TrialStatus.DONE, value=float(i), values=(i, -i))
         for i, c in enumerate(claims)],
        [],
    )  # fmt: skip
    assert [t["number"] for t in store.front(sid, ["minimize", "minimize"])] == [
        0, 1, 2,
    ]  # fmt: skip
    store.close()
    _craft(path, "UPDATE trials SET objectives = '[\"a\", 1]' WHERE number = 1")
    _craft(path, "UPDATE trials SET aux = '{' WHERE number = 0")
    store = TrialStore(path)
    with pytest.raises(StoreError, match="damaged trial 1: ValueError"):
        store.front(sid, ["minimize", "minimize"])
    with pytest.raises(StoreError, match="damaged trial 0: JSONDecodeError"):
        store.best(sid)
    store.close()


class _Learner(RandomSampler):
    """A sampler that learns the store's results and re-proposes its
    interrupted trials: what a resumed adaptive search reads first."""

    wants_values = True

    def warm_start(self, results):
        self.learned = list(results)
        return len(self.learned)

    def requeue(self, points):
        self.requeued = list(points)
        return len(self.requeued)


@pytest.mark.parametrize("status", ["done", "queued"])
def test_a_resumed_search_names_a_damaged_trial_before_any_work(tmp_path, status):
    path = tmp_path / "t.db"
    _store(path)[0].close()
    _craft(path, f"UPDATE trials SET params = '{{bad', status = '{status}' "
                 "WHERE number = 1")  # fmt: skip
    # an unreachable scheduler: an error about it would mean the read came late
    with Search("s", x_value, path, client="tcp://127.0.0.1:9") as search:
        learner = _Learner(search.space, seed=0)
        with pytest.raises(StoreError, match="damaged trial 1 of search 's'"):
            search.run(learner, n_trials=1, progress=False)
