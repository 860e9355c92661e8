"""The trials table: column kinds, updates in place, appends, and the frame."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dasktune.records import TRIAL_FIELDS
from dasktune.table import COLUMNS, TrialTable


def row(
    number, params, status="done", value=None, seq=1, started=None, aux=None,
    objectives=None, constraints=None,
):  # fmt: skip
    fields = dict.fromkeys(TRIAL_FIELDS)  # as TrialStore.read_trials gives them
    fields.update(
        number=number, params=json.dumps(params, sort_keys=True), value=value,
        status=status, attempts=1, started=started, seq=seq,
        aux=None if aux is None else json.dumps(aux), objectives=objectives,
        constraints=constraints,
    )  # fmt: skip
    return tuple(fields.values())


def test_columns_keep_the_narrowest_kind_their_values_allow():
    table = TrialTable()
    table.update(
        [row(0, {"i": 1, "f": 0.5, "b": True, "s": "a"}),
         row(1, {"i": 2, "f": 1.5, "b": False, "s": "b"})]
    )  # fmt: skip
    frame = table.frame()
    assert list(frame.columns) == ["number", "b", "f", "i", "s", *COLUMNS]
    assert frame["i"].dtype == np.int64 and frame["f"].dtype == np.float64
    assert frame["b"].dtype == np.bool_ and frame["s"].dtype == object
    # a float in an int column widens it; a string in a float column makes objects
    table.update([row(2, {"i": 2.5, "f": "x", "b": True, "s": "c"})])
    frame = table.frame()
    assert frame["i"].tolist() == [1.0, 2.0, 2.5] and frame["i"].dtype == np.float64
    assert frame["f"].tolist() == [0.5, 1.5, "x"]


def test_missing_parameters_are_nan_and_new_ones_are_added():
    table = TrialTable(["a"])
    table.update([row(0, {"a": 1})])
    table.update([row(1, {"a": 2, "b": True})])
    frame = table.frame()
    assert frame["a"].tolist() == [1, 2]
    assert frame["b"].isna().tolist() == [True, False]  # bool with a gap: objects


def test_updates_replace_rows_and_appends_keep_number_order():
    table = TrialTable()
    table.update(
        [row(0, {"x": 1}, "running", seq=1), row(1, {"x": 2}, "running", seq=1)]
    )
    table.update([row(1, {"x": 2}, "done", value=0.5, seq=2, aux={"n": 3})])
    frame = table.frame()
    assert frame["status"].tolist() == ["running", "done"]
    assert frame["value"].tolist()[1] == 0.5 and frame["aux"][1] == {"n": 3}
    assert table.seq == 2 and len(frame) == 2
    table.update([row(5, {"x": 3}, seq=3), row(3, {"x": 4}, seq=3)])
    assert table.frame()["number"].tolist() == [0, 1, 3, 5]


def test_timestamps_are_utc_and_unknown_ones_are_nat():
    table = TrialTable()
    table.update([row(0, {"x": 1}, started=1_700_000_000.25), row(1, {"x": 2})])
    frame = table.frame()
    assert isinstance(frame["started"].dtype, pd.DatetimeTZDtype)
    assert frame["started"][0] == pd.Timestamp("2023-11-14 22:13:20.25", tz="UTC")
    assert pd.isna(frame["started"][1]) and frame["finished"].isna().all()


def test_a_frame_without_copy_shares_the_arrays_and_a_copy_does_not():
    table = TrialTable()
    table.update([row(0, {"x": 1}, "running")])
    shared, copied = table.frame(copy=False), table.frame(copy=True)
    table.update([row(0, {"x": 1}, "done", seq=2)])
    assert shared["status"][0] == "done" and copied["status"][0] == "running"


@pytest.mark.parametrize("n", [1, 17, 1000])
def test_growth_keeps_every_row(n):
    table = TrialTable()
    for start in range(0, n, 7):
        table.update([row(i, {"x": i}) for i in range(start, min(start + 7, n))])
    frame = table.frame()
    assert frame["number"].tolist() == list(range(n)) == frame["x"].tolist()


def test_objective_columns_and_constraints():
    table = TrialTable(["x"], objectives=2)
    table.update(
        [
            row(0, {"x": 1}, "done", value=1.0, objectives="[1.0, 2.0]"),
            row(1, {"x": 2}, "failed"),
            row(2, {"x": 3}, "done", value=3.0, objectives="[3.0]"),  # a wrong count
        ]
    )
    frame = table.frame()
    assert list(frame.columns[:5]) == ["number", "x", "value", "values_0", "values_1"]
    assert frame["values_1"].tolist()[0] == 2.0
    assert np.isnan(frame["values_0"].tolist()[1:]).all()
    assert "feasible" not in frame  # no trial returned constraints yet
    table.update([row(3, {"x": 4}, "done", value=4.0, constraints="[0.5, -1.0]")])
    frame = table.frame()
    assert frame["constraints"].tolist() == [None, None, None, (0.5, -1.0)]
    assert frame["feasible"].tolist()[3] is False
    assert frame["feasible"].isna().tolist() == [True, True, True, False]


def test_rows_of_any_sequence_type_give_the_same_frame():
    # tuples convert in one pass; lists (or values that do not fit the record
    # of a row, such as an int beyond int64 in attempts) column by column
    rows = [row(i, {"x": i / 2, "s": "a"}, value=i / 3, started=1e9 + i,
                aux={"n": i} if i % 2 else None) for i in range(5)]  # fmt: skip
    fast, slow = TrialTable(), TrialTable()
    fast.update(rows)
    slow.update([list(r) for r in rows])
    pd.testing.assert_frame_equal(fast.frame(), slow.frame())
    assert fast.frame()["aux"].tolist() == [{}, {"n": 1}, {}, {"n": 3}, {}]
    huge = list(rows[0])
    huge[TRIAL_FIELDS.index("attempts")] = 2**70
    with pytest.raises(OverflowError):
        TrialTable().update([tuple(huge)])


def test_a_block_read_then_updates_of_its_rows_and_new_ones():
    # a first read is appended as a block; a later update replacing some of its
    # rows, with new ones among them, finds each row's place
    table = TrialTable()
    table.update([row(i, {"x": i}, "running") for i in range(1000)])
    table.update([row(999, {"x": 999}, "done", seq=2), row(1000, {"x": 1000}),
                  row(3, {"x": 3}, "done", seq=2)])  # fmt: skip
    table.update([row(1001, {"x": 1001}), row(1002, {"x": 1002})])
    table.update([row(1001, {"x": 1001}, "failed", seq=3)])
    frame = table.frame()
    assert frame["number"].tolist() == list(range(1003)) == frame["x"].tolist()
    assert frame["status"][[3, 999, 1000, 1001, 1002]].tolist() == [
        "done", "done", "done", "failed", "done",
    ]  # fmt: skip
    assert frame["status"][:3].eq("running").all() and table.seq == 3


def _varied_table() -> TrialTable:
    """A table holding every kind of column a snapshot must keep."""
    table = TrialTable(["x"], objectives=2)
    table.update(
        [row(i, {"x": i, "f": i / 3, "b": i % 2 == 0, "s": f"s{i % 3}",
                 "l": [i, {"k": "v"}]},
             status=("done", "failed", "running")[i % 3], value=i / 7, seq=1,
             started=1.7e9 + i / 8, aux={"n": i} if i % 4 == 0 else None,
             objectives=f"[{i}, {-i}]" if i % 3 == 0 else None)
         for i in range(40)]
    )  # fmt: skip
    # out of order and replacing rows: a table that is not sorted by number
    table.update([row(45, {"x": "text", "big": 2**70}, seq=2),
                  row(3, {"x": 3.5}, "done", value=0.5, seq=2,
                      constraints="[0.5, -1.0]"),
                  row(41, {"y": True}, "pruned", value=2.5, seq=2)])  # fmt: skip
    return table


def test_a_snapshot_loads_as_the_table_it_was_and_lives_on():
    table = _varied_table()
    loaded = TrialTable.loads(table.dumps(), ["x"], objectives=2)
    assert loaded.seq == table.seq == 2 and loaded.n == table.n == 42
    pd.testing.assert_frame_equal(loaded.frame(), table.frame())
    assert loaded.frame()["l"][1] == [1, {"k": "v"}]  # objects stay objects
    assert loaded.frame()["big"].tolist()[-1] == 2**70
    assert loaded.frame()["constraints"].tolist()[3] == (0.5, -1.0)
    # the loaded table takes the same updates as the one it was dumped from
    more = [row(3, {"x": 3.5}, "failed", seq=3), row(100, {"x": 1, "z": 1.5}, seq=3)]
    more += [row(i, {"x": i}, seq=4) for i in range(200, 300)]  # growth
    for t in (table, loaded):
        t.update(more)
    pd.testing.assert_frame_equal(loaded.frame(), table.frame())
    # an empty table, and one of a single row, too
    empty = TrialTable()
    pd.testing.assert_frame_equal(
        TrialTable.loads(empty.dumps()).frame(), empty.frame()
    )
    one = TrialTable()
    one.update([row(0, {"x": 1.5}, value=2.0)])
    pd.testing.assert_frame_equal(TrialTable.loads(one.dumps()).frame(), one.frame())


def test_a_snapshot_puts_the_readers_names_first():
    table = TrialTable()
    table.update([row(0, {"a": 1, "b": 2})])
    loaded = TrialTable.loads(table.dumps(), ["b", "c"])
    frame = loaded.frame()
    assert list(frame.columns[:4]) == ["number", "b", "c", "a"]
    assert frame["c"].isna().all() and frame["b"].tolist() == [2]


def test_a_damaged_or_foreign_snapshot_is_refused():
    data = _varied_table().dumps()
    with pytest.raises(ValueError, match="not a trials table snapshot"):
        TrialTable.loads(b"PK\x03\x04" + data[4:], objectives=2)
    with pytest.raises(ValueError):
        TrialTable.loads(data[: len(data) // 2], objectives=2)  # truncated
    with pytest.raises(ValueError, match="2 objectives, the search has 1"):
        TrialTable.loads(data)
    # a header asking for an array of objects (which would unpickle) is refused
    forged = data.replace(b'"<f8"', b'"|O8"', 1)
    with pytest.raises(ValueError, match="dtype object"):
        TrialTable.loads(forged, objectives=2)


def test_the_frame_columns_are_the_stored_fields_in_their_order():
    # one source: the frame shows the stored fields as they are, in order
    shown = [f for f in TRIAL_FIELDS if f in COLUMNS]
    assert list(COLUMNS) == shown and len(COLUMNS) == 10
    assert not {"number", "params", "step", "seq"} & set(COLUMNS)
