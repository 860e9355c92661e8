"""The snapshot format of a trials table: what the store keeps of it.

:meth:`TrialTable.dumps <dasktune.store.table.TrialTable.dumps>` and
:meth:`~dasktune.store.table.TrialTable.loads` call these; the store keeps the
bytes (:mod:`dasktune.store.snapshots`). Numeric columns travel as their
arrays' bytes, text columns as codes into their distinct values, decoded
values as JSON; no pickle: a snapshot read from a shared database runs no code.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from dasktune.store.columns import FIXED, ParamColumn, as_array

if TYPE_CHECKING:
    from dasktune.store.table import TrialTable

__all__ = ["MAGIC", "dumps", "loads"]

#: what a snapshot starts with: its format's name
MAGIC = b"dasktune-trials-1\n"


def dumps(table: TrialTable) -> bytes:
    """:meth:`TrialTable.dumps <dasktune.store.table.TrialTable.dumps>`
    (documented there)."""
    n = table.n
    arrays: list[tuple[str, np.ndarray]] = []
    header: dict[str, Any] = {
        "n": n,
        "seq": int(table.seq),
        "objectives": table.objectives,
        "sorted": table._sorted,
        "top": int(table._top),
        "fixed": {},
        "params": [],
        "json": {},
    }

    def numeric(key: str, values: np.ndarray) -> list[Any]:
        same = values.dtype.kind == "f" and np.isnan(values).all()
        if same or (n and (values == values[0]).all()):
            # one value throughout (no step reported, one objective)
            return ["const", values.dtype.str, values[:1].tolist(), values.shape]
        arrays.append((key, values))
        return ["array", values.dtype.str, key, values.shape]

    def coded(key: str, values: np.ndarray) -> list[Any]:
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        codes = codes.astype(np.min_scalar_type(-max(len(uniques), 1)))
        arrays.append((key, codes))
        return ["codes", codes.dtype.str, key, uniques.tolist()]

    header["numbers"] = numeric("numbers", table._numbers[:n])
    for name, (dtype, _) in FIXED.items():
        values = table._fixed[name][:n]
        header["fixed"][name] = (
            coded(name, values) if dtype is object else numeric(name, values)
        )
    header["values"] = numeric("values", table._values[:n])
    # auxiliary data: the positions of the rows that have some, and theirs
    aux = table._aux[:n]
    given = np.flatnonzero([bool(d) for d in aux.tolist()]).astype(np.int64)
    arrays.append(("aux", given))
    header["aux"] = ["array", given.dtype.str, "aux", given.shape]
    header["json"]["aux"] = aux[given].tolist()
    if table._any_constraints:
        header["json"]["constraints"] = table._constraints[:n].tolist()
    for i, (name, column) in enumerate(table._params.items()):
        key = f"p{i}"
        if column.kind == "O":
            header["json"][key] = column.values[:n].tolist()
            layout: list[Any] = ["json", "|O", key, [n]]
        else:
            layout = numeric(key, column.values[:n])
        header["params"].append([name, column.kind, column.missing, layout])
    # the arrays follow the header, each at a multiple of 8 bytes
    offsets: dict[str, int] = {}
    position = 0
    for key, values in arrays:
        offsets[key] = position
        position += -(-values.nbytes // 8) * 8
    header["offsets"] = offsets
    text = json.dumps(header, allow_nan=True).encode()
    out = bytearray(MAGIC)
    out += len(text).to_bytes(8, "little") + text
    out += b"\0" * (-len(out) % 8)
    start = len(out)
    for key, values in arrays:
        out += b"\0" * (start + offsets[key] - len(out))
        out += np.ascontiguousarray(values).tobytes()
    return bytes(out)


def loads(
    cls: type[TrialTable],
    data: bytes,
    names: Iterable[str] = (),
    objectives: int = 1,
    max_rows: int | None = None,
) -> TrialTable:
    """:meth:`TrialTable.loads <dasktune.store.table.TrialTable.loads>`
    (documented there), for ``cls``."""
    try:
        return _loads(cls, memoryview(data), list(names), objectives, max_rows)
    except (
        KeyError, TypeError, IndexError, AttributeError, OverflowError,
        RecursionError, MemoryError, json.JSONDecodeError,
    ) as err:  # fmt: skip
        msg = f"not a trials table snapshot this dasktune reads: {err!r:.300}"
        raise ValueError(msg) from err


def _loads(
    cls: type[TrialTable],
    data: memoryview,
    names: list[str],
    objectives: int,
    max_rows: int | None,
) -> TrialTable:
    magic = len(MAGIC)
    if bytes(data[:magic]) != MAGIC:
        msg = "not a trials table snapshot (or one of another format)"
        raise ValueError(msg)
    size = int.from_bytes(data[magic : magic + 8], "little")
    header = json.loads(bytes(data[magic + 8 : magic + 8 + size]))
    start = magic + 8 + size
    start += -start % 8
    n = int(header["n"])
    # checked before anything is allocated: a damaged or crafted header
    # claiming 10**12 rows must not ask for terabytes
    if n < 0 or (max_rows is not None and n > max_rows):
        msg = f"the snapshot claims {n} trials where the search has at most {max_rows}"
        raise ValueError(msg)
    if header["objectives"] != objectives:
        msg = (
            f"the snapshot holds {header['objectives']} objectives, the "
            f"search has {objectives}"
        )
        raise ValueError(msg)
    offsets = header["offsets"]

    def array(layout: list[Any]) -> np.ndarray:
        kind, dtype, where = layout[0], np.dtype(layout[1]), layout[2]
        if dtype.kind not in "iufb":
            msg = f"a column of dtype {dtype} in a snapshot"
            raise ValueError(msg)
        if kind == "const":
            shape = tuple(layout[3])
            if shape[:1] != (n,) or shape[1:] not in ((), (objectives,)):
                msg = f"a column of shape {shape} in a snapshot of {n} rows"
                raise ValueError(msg)
            return np.full(shape, where[0] if where else 0, dtype=dtype)
        count = int(np.prod(layout[3])) if kind == "array" else n
        values = np.frombuffer(
            data, dtype=dtype, count=count, offset=start + offsets[where]
        )
        return values.reshape(layout[3]) if kind == "array" else values

    def objects(values: list[Any], count: int = n) -> np.ndarray:
        if len(values) != count:
            msg = f"{len(values)} values in a snapshot where {count} belong"
            raise ValueError(msg)
        return as_array(values, "O", False, set(map(type, values)))

    table = cls((), objectives=objectives)
    table.n = n
    table._grow(n)
    table.seq = int(header["seq"])
    table._sorted = bool(header["sorted"])
    table._top = int(header["top"])
    table._numbers[:n] = array(header["numbers"])
    for name in FIXED:
        layout = header["fixed"][name]
        if layout[0] == "codes":
            uniques = np.empty(len(layout[3]) + 1, dtype=object)
            uniques[:-1] = layout[3]  # the last: None (code -1)
            table._fixed[name][:n] = uniques[array(layout)]
        else:
            table._fixed[name][:n] = array(layout)
    table._values[:n] = array(header["values"])
    table._aux[:n] = [{} for _ in range(n)]
    given = array(header["aux"])
    table._aux[given] = objects(header["json"]["aux"], len(given))
    if "constraints" in header["json"]:
        table._any_constraints = True
        table._constraints[:n] = [
            None if c is None else tuple(c)
            for c in objects(header["json"]["constraints"]).tolist()
        ]
    params: dict[str, ParamColumn] = {}
    for name, kind, missing, layout in header["params"]:
        column = params[name] = ParamColumn(table._capacity, 0)
        column.kind, column.missing = kind, bool(missing)
        if kind == "O":
            column.values = np.empty(table._capacity, dtype=object)
            column.values[:n] = objects(header["json"][layout[2]])
        else:
            values = array(layout)
            column.values = np.zeros(table._capacity, dtype=values.dtype)
            if values.dtype.kind == "f":
                column.values[n:] = np.nan
            column.values[:n] = values
    # the reader's own names first, as TrialTable(names) puts them
    for name in names:
        held = params.pop(name, None)
        # a name of the space that no trial has yet: missing throughout
        table._params[name] = held or ParamColumn(table._capacity, n)
    table._params.update(params)
    return table
