"""A trials table's columns: their dtypes, and a parameter's narrowest kind.

Shared by the table (:mod:`dasktune.store.table`) and its snapshot format
(:mod:`dasktune.store.snapshot_format`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["DTYPES", "FIXED", "MISSING", "NAT", "ParamColumn", "as_array", "decode_aux"]


NAT = np.datetime64("NaT").view(np.int64)


FIXED = {  # column (a field of TRIAL_FIELDS): (dtype, fill)
    "value": (np.float64, np.nan),
    "status": (object, None),
    "duration": (np.float64, np.nan),
    "worker": (object, None),
    "host": (object, None),
    "attempts": (np.int64, 0),
    # microseconds since the epoch, NaT when unknown: wrapped as UTC timestamps
    # without a conversion of the whole column each time the frame is built
    "started": (np.int64, NAT),
    "finished": (np.int64, NAT),
    "error": (object, None),
    "step": (np.float64, np.nan),  # the last step reported (NaN: none)
}


MISSING = object()


def _kinds(types: set[type]) -> set[str]:
    """The column kinds of values of these types: i, f, b or O."""
    out = set()
    for t in types:
        if t is bool:
            out.add("b")
        elif t is int:
            out.add("i")
        elif t is float:
            out.add("f")
        else:
            out.add("O")
    return out


def as_array(
    values: Sequence[Any], kind: str, missing: bool, types: set[type]
) -> np.ndarray:
    """``values`` (missing ones as NaN) as an array of the column's kind."""
    if missing:
        values = [np.nan if v is MISSING else v for v in values]
    if kind != "O":
        return np.array(values, dtype=DTYPES[kind])
    if not types & {list, dict, tuple}:
        return np.array(values, dtype=object)
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):  # element by element: lists stay objects
        out[i] = v
    return out


def _target(kinds: set[str], missing: bool) -> str:
    """The column kind holding values of ``kinds`` (and missing ones)."""
    if missing:
        kinds = {"f" if k == "i" else "O" if k == "b" else k for k in kinds}
    if kinds <= {"i"}:
        return "i"
    if kinds <= {"i", "f"}:
        return "f"
    if kinds <= {"b"}:
        return "b"
    return "O"


DTYPES = {"i": np.int64, "f": np.float64, "b": np.bool_, "O": object}


def decode_aux(texts: np.ndarray) -> np.ndarray:
    """Each row's auxiliary data (JSON text, or none: ``{}``) as a dict."""
    out = np.empty(len(texts), dtype=object)
    out[:] = [{} for _ in range(len(texts))]
    given = np.flatnonzero(texts.astype(bool))
    if len(given):
        decoded = json.loads("[" + ",".join(texts[given].tolist()) + "]")
        holder = np.empty(len(decoded), dtype=object)
        holder[:] = decoded
        out[given] = holder
    return out


class ParamColumn:
    """One parameter's values, in as narrow a NumPy array as they allow."""

    __slots__ = ("kind", "missing", "values")

    def __init__(self, capacity: int, n: int) -> None:
        self.kind = ""  # no value yet
        self.missing = n > 0  # rows that came before the parameter lack it
        self.values: np.ndarray = np.full(capacity, np.nan)

    def grow(self, capacity: int) -> None:
        extra = np.zeros(capacity - len(self.values), dtype=self.values.dtype)
        if self.values.dtype != np.bool_ and self.values.dtype.kind != "i":
            extra = np.full(len(extra), np.nan, dtype=self.values.dtype)
        self.values = np.concatenate([self.values, extra])

    def put(self, positions: Any, values: Sequence[Any]) -> None:
        types = set(map(type, values))
        absent = type(MISSING) in types
        missing = self.missing or absent
        kinds = _kinds(types - {type(MISSING)})
        if self.kind:
            kinds.add(self.kind)
        target = _target(kinds, missing) if kinds else "f"
        try:
            block = as_array(values, target, absent, types)
        except OverflowError:  # an integer beyond int64
            target = "O"
            block = as_array(values, target, absent, types)
        if target != self.kind:
            if self.kind or self.missing:
                self.values = self.values.astype(DTYPES[target])
            else:  # no value yet: nothing to convert
                self.values = np.zeros(len(self.values), dtype=DTYPES[target])
            self.kind = target
        self.missing = missing
        self.values[positions] = block
