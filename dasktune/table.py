"""The trials table: a search's trials as a pandas DataFrame, kept up to date.

:class:`TrialTable` turns the store's raw rows (:meth:`TrialStore.read_trials`)
into the frame ``Search.trials()`` returns — one row per trial, one column per
parameter — and keeps it up to date from the rows written since it last looked,
so the frame a search's filters see costs the rows that changed, not the whole
table, after every batch.

Columns live in NumPy arrays indexed by position, grown by doubling; a parameter
column stays integer, float or bool while its values allow it and becomes an
object column when they do not (``1`` and ``"a"`` in one column), as
``DataFrame.from_records`` would infer. Building the frame wraps the arrays
without copying them.

>>> import json
>>> table = TrialTable(["x"])
>>> row = (0, json.dumps({"x": 2}), 0.5, "done", 0.1, None, None, 1, 1.0, 2.0,
...        None, None, None, None, None, 1)
>>> table.update([row])
>>> table.frame()[["number", "x", "value", "status"]]
   number  x  value status
0       0  2    0.5   done

Once a trial has reported intermediate values (a search with a pruner), a
``step`` column follows ``value``: the last step each trial reported, so a
pruned trial shows where it stopped and its value there (``<NA>`` for trials
that reported nothing):

>>> pruned = (1, json.dumps({"x": 3}), 0.9, "pruned", 0.1, None, None, 1, 1.0,
...           2.0, None, None, 4, None, None, 2)
>>> table.update([pruned])
>>> table.frame()[["number", "value", "step", "status"]]
   number  value  step  status
0       0    0.5  <NA>    done
1       1    0.9     4  pruned
"""

from __future__ import annotations

import json
import operator
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from dasktune._values import feasible
from dasktune.store.sql import TrialStore, _collector_paused, trial_columns

__all__ = ["COLUMNS", "TrialTable"]

#: the columns after the parameters, in order (``number`` comes first); ``step``
#: follows ``value`` once a trial has reported intermediate values
COLUMNS = (
    "value",
    "status",
    "duration",
    "worker",
    "host",
    "attempts",
    "started",
    "finished",
    "error",
    "aux",
)
_NAT = np.datetime64("NaT").view(np.int64)
_UTC = pd.DatetimeTZDtype("us", "UTC")
_FIXED = {  # column (a field of TRIAL_FIELDS): (dtype, fill)
    "value": (np.float64, np.nan),
    "status": (object, None),
    "duration": (np.float64, np.nan),
    "worker": (object, None),
    "host": (object, None),
    "attempts": (np.int64, 0),
    # microseconds since the epoch, NaT when unknown: wrapped as UTC timestamps
    # without a conversion of the whole column each time the frame is built
    "started": (np.int64, _NAT),
    "finished": (np.int64, _NAT),
    "error": (object, None),
    "step": (np.float64, np.nan),  # the last step reported (NaN: none)
}
_MISSING = object()
#: what a snapshot (:meth:`TrialTable.dumps`) starts with: its format's name
_SNAPSHOT_MAGIC = b"dasktune-trials-1\n"


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


def _as_array(
    values: Sequence[Any], kind: str, missing: bool, types: set[type]
) -> np.ndarray:
    """``values`` (missing ones as NaN) as an array of the column's kind."""
    if missing:
        values = [np.nan if v is _MISSING else v for v in values]
    if kind != "O":
        return np.array(values, dtype=_DTYPES[kind])
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


_DTYPES = {"i": np.int64, "f": np.float64, "b": np.bool_, "O": object}


def _decode_aux(texts: np.ndarray) -> np.ndarray:
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


class _ParamColumn:
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
        absent = type(_MISSING) in types
        missing = self.missing or absent
        kinds = _kinds(types - {type(_MISSING)})
        if self.kind:
            kinds.add(self.kind)
        target = _target(kinds, missing) if kinds else "f"
        try:
            block = _as_array(values, target, absent, types)
        except OverflowError:  # an integer beyond int64
            target = "O"
            block = _as_array(values, target, absent, types)
        if target != self.kind:
            if self.kind or self.missing:
                self.values = self.values.astype(_DTYPES[target])
            else:  # no value yet: nothing to convert
                self.values = np.zeros(len(self.values), dtype=_DTYPES[target])
            self.kind = target
        self.missing = missing
        self.values[positions] = block


class TrialTable:
    """A search's trials as a DataFrame, updated from the store's raw rows.

    Parameters
    ----------
    names : sequence of str
        Parameter names known in advance (a search's space), in column order;
        others are added as they appear.
    """

    def __init__(self, names: Iterable[str] = (), *, objectives: int = 1) -> None:
        self.objectives = objectives
        self.n = 0
        self.seq = 0  # the change sequence the table has reached
        self._capacity = 16
        # number -> position, built on the first update that is not an append
        self._position: dict[int, int] | None = None
        self._top = -1  # the highest number held
        self._numbers = np.zeros(self._capacity, dtype=np.int64)
        self._fixed = {
            name: np.full(self._capacity, fill, dtype=dtype)
            for name, (dtype, fill) in _FIXED.items()
        }
        self._aux = np.empty(self._capacity, dtype=object)
        # several objectives: one column each (NaN: no value)
        self._values = np.full((self._capacity, objectives), np.nan)
        # constraint tuples (None: none returned), and whether any trial had some
        self._constraints = np.empty(self._capacity, dtype=object)
        self._any_constraints = False
        self._params: dict[str, _ParamColumn] = {}
        self._sorted = True
        for name in names:
            self._params[name] = _ParamColumn(self._capacity, 0)

    @property
    def names(self) -> list[str]:
        """The parameter columns, in order."""
        return list(self._params)

    def _grow(self, needed: int) -> None:
        if needed <= self._capacity:
            return
        capacity = self._capacity
        while capacity < needed:
            capacity *= 2
        extra = capacity - self._capacity
        self._numbers = np.concatenate([self._numbers, np.zeros(extra, np.int64)])
        for name, (dtype, fill) in _FIXED.items():
            self._fixed[name] = np.concatenate(
                [self._fixed[name], np.full(extra, fill, dtype=dtype)]
            )
        self._aux = np.concatenate([self._aux, np.empty(extra, dtype=object)])
        self._values = np.concatenate(
            [self._values, np.full((extra, self.objectives), np.nan)]
        )
        self._constraints = np.concatenate(
            [self._constraints, np.empty(extra, dtype=object)]
        )
        for column in self._params.values():
            column.grow(capacity)
        self._capacity = capacity

    def update(self, rows: Sequence[Sequence[Any]]) -> None:
        """Insert or replace the trials of ``rows`` (``TrialStore.read_trials``)."""
        if not rows:
            return
        self.update_columns(trial_columns(rows))

    def update_columns(self, columns: Mapping[str, np.ndarray]) -> None:
        """Insert or replace the trials of ``columns`` (``TrialStore.read_columns``).

        Parameters
        ----------
        columns : mapping of str to numpy.ndarray
            Each field of :data:`~dasktune.records.TRIAL_FIELDS` as an array
            of one value per trial, in the dtypes of
            :data:`~dasktune.store.sql.TRIAL_DTYPE`.
        """
        numbers = columns["number"]
        if not len(numbers):
            return
        first = self.n
        positions = self._positions(numbers)
        self._grow(self.n)
        self._numbers[positions] = numbers
        if self.n > first:
            self._top = max(self._top, int(self._numbers[first : self.n].max()))
            if self._sorted:
                appended = self._numbers[max(first - 1, 0) : self.n]
                self._sorted = bool(np.all(appended[1:] >= appended[:-1]))
        for name in _FIXED:
            if name in ("started", "finished"):
                seconds = columns[name]  # None: NaN
                block = np.full(len(seconds), _NAT, dtype=np.int64)
                given = ~np.isnan(seconds)
                block[given] = np.round(seconds[given] * 1e6).astype(np.int64)
                self._fixed[name][positions] = block
            else:
                self._fixed[name][positions] = columns[name]
        self._aux[positions] = _decode_aux(columns["aux"])
        if self.objectives > 1:
            none = [np.nan] * self.objectives
            decoded = [
                json.loads(text) if text else none for text in columns["objectives"]
            ]
            # a row of another count (written by hand, say) shows as missing
            self._values[positions] = [
                v if len(v) == self.objectives else none for v in decoded
            ]
        texts = columns["constraints"]
        if self._any_constraints or texts.astype(bool).any():
            self._any_constraints = True
            limits = np.empty(len(texts), dtype=object)
            limits[:] = [tuple(json.loads(x)) if x else None for x in texts.tolist()]
            self._constraints[positions] = limits
        # every params JSON of the batch in one parse
        text = "[" + ",".join(columns["params"].tolist()) + "]"
        with _collector_paused():
            params = json.loads(text)
        del text
        # new names in order of appearance: the first row's, then the others
        names = set().union(*params)
        for name in [*params[0], *sorted(names - set(params[0]))]:
            if name not in self._params:
                self._params[name] = _ParamColumn(self._capacity, first)
        for name, column in self._params.items():
            try:  # every row has the parameter (the common case)
                values = list(map(operator.itemgetter(name), params))
            except KeyError:
                values = [p.get(name, _MISSING) for p in params]
            column.put(positions, values)
        self.seq = max(self.seq, int(columns["seq"].max()))

    def _positions(self, numbers: np.ndarray) -> Any:
        """Where the trials ``numbers`` go: a slice when they are all new and in
        order (a first read, the new trials of a batch), else an array; new
        trials are appended (``n`` grows)."""
        first = self.n
        if numbers[0] > self._top and bool(np.all(numbers[1:] > numbers[:-1])):
            # new trials only (the common case): appended as a block; the map
            # from numbers to positions is built once an update replaces rows
            self.n += len(numbers)
            if self._position is not None:
                self._position.update(
                    zip(numbers.tolist(), range(first, self.n), strict=True)
                )
            return slice(first, self.n)
        if self._position is None:
            known = self._numbers[:first].tolist()
            self._position = dict(zip(known, range(first), strict=True))
        position_of = self._position
        listed = []
        for number in numbers.tolist():
            position = position_of.get(number)
            if position is None:
                position = position_of[number] = self.n
                self.n += 1
            listed.append(position)
        return np.array(listed, dtype=np.intp)

    def frame(self, copy: bool = True) -> pd.DataFrame:
        """The table: ``number``, the parameters, then :data:`COLUMNS`.

        With ``copy=False`` the frame shares the table's arrays (no copy of the
        rows; later updates show through): for a table read once, or a frame
        handed to a filter for one batch.
        """
        n = self.n

        def series(values: np.ndarray) -> pd.Series:
            # object columns stay object: inferring pandas' str dtype would
            # convert (and copy) the whole column every time
            return pd.Series(values[:n], dtype=values.dtype, copy=copy)

        data: dict[str, Any] = {"number": series(self._numbers)}
        for name, column in self._params.items():
            data[name] = series(column.values)
        for name in COLUMNS:
            if name == "status" and not np.isnan(self._fixed["step"][:n]).all():
                data["step"] = pd.array(self._fixed["step"][:n], dtype="Int64")
            if name == "status":
                for j in range(self.objectives if self.objectives > 1 else 0):
                    data[f"values_{j}"] = pd.Series(self._values[:n, j], copy=True)
                if self._any_constraints:
                    limits = self._constraints[:n]
                    data["constraints"] = pd.Series(limits, dtype=object, copy=copy)
                    data["feasible"] = pd.array(
                        [None if c is None else feasible(c) for c in limits],
                        dtype="boolean",
                    )
            if name == "aux":
                data[name] = series(self._aux)
            elif name in ("started", "finished"):
                micros = self._fixed[name][:n].view("M8[us]")
                data[name] = pd.Series(micros, dtype=_UTC, copy=copy)
            else:
                data[name] = series(self._fixed[name])
        frame = pd.DataFrame(data, copy=False)
        if not self._sorted:
            frame = frame.sort_values("number", kind="stable", ignore_index=True)
        return frame

    # -- snapshots -------------------------------------------------------------

    @classmethod
    def from_store(
        cls,
        store: TrialStore,
        search_id: int,
        names: Iterable[str] = (),
        *,
        objectives: int = 1,
    ) -> TrialTable:
        """A search's table as the store's snapshot holds it (:meth:`loads`),
        else an empty one: bring it up to date with the rows written since its
        ``seq``. A snapshot that cannot be read (damaged, of another format)
        is skipped with a warning: the rows are the record, it only saves
        reading them."""
        names = list(names)
        kept = store.read_snapshot(search_id)
        if kept is not None:
            try:  # the seq it reaches is in it, as in the store's row
                table = cls.loads(
                    kept[1],
                    names,
                    objectives=objectives,
                    max_rows=store.trial_span(search_id),
                )
            except ValueError as err:
                warnings.warn(
                    f"dasktune: the store's snapshot of search {search_id} is "
                    f"skipped, its rows are read instead: {err}",
                    RuntimeWarning,
                    stacklevel=2,
                )
            else:
                return table
        return cls(names, objectives=objectives)

    def dumps(self) -> bytes:
        """The table as a snapshot: bytes that :meth:`loads` turns back into it.

        A new reader of a large search loads this instead of converting every
        row the store holds (16 cells and a JSON parse per trial): numeric
        columns travel as their arrays' bytes, text columns as codes into
        their distinct values, and decoded values (auxiliary data, constraint
        tuples, parameters that are not numbers) as JSON. No pickle: a
        snapshot read from a shared database runs no code.
        """
        n = self.n
        arrays: list[tuple[str, np.ndarray]] = []
        header: dict[str, Any] = {
            "n": n,
            "seq": int(self.seq),
            "objectives": self.objectives,
            "sorted": self._sorted,
            "top": int(self._top),
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

        header["numbers"] = numeric("numbers", self._numbers[:n])
        for name, (dtype, _) in _FIXED.items():
            values = self._fixed[name][:n]
            header["fixed"][name] = (
                coded(name, values) if dtype is object else numeric(name, values)
            )
        header["values"] = numeric("values", self._values[:n])
        # auxiliary data: the positions of the rows that have some, and theirs
        aux = self._aux[:n]
        given = np.flatnonzero([bool(d) for d in aux.tolist()]).astype(np.int64)
        arrays.append(("aux", given))
        header["aux"] = ["array", given.dtype.str, "aux", given.shape]
        header["json"]["aux"] = aux[given].tolist()
        if self._any_constraints:
            header["json"]["constraints"] = self._constraints[:n].tolist()
        for i, (name, column) in enumerate(self._params.items()):
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
        out = bytearray(_SNAPSHOT_MAGIC)
        out += len(text).to_bytes(8, "little") + text
        out += b"\0" * (-len(out) % 8)
        start = len(out)
        for key, values in arrays:
            out += b"\0" * (start + offsets[key] - len(out))
            out += np.ascontiguousarray(values).tobytes()
        return bytes(out)

    @classmethod
    def loads(
        cls,
        data: bytes,
        names: Iterable[str] = (),
        *,
        objectives: int = 1,
        max_rows: int | None = None,
    ) -> TrialTable:
        """The table a snapshot (:meth:`dumps`) holds.

        Parameters
        ----------
        data : bytes
            The snapshot.
        names : sequence of str
            Parameter names to put first, in this order (a search's space), as
            ``TrialTable(names)`` would.
        objectives : int
            The search's objective count; a snapshot of another is refused.
        max_rows : int, optional
            The most trials the snapshot can hold (the search's trials in the
            store): a snapshot claiming more is refused before anything is
            allocated for it.

        Raises
        ------
        ValueError
            If ``data`` is not a snapshot this version reads, does not fit
            ``objectives``, or claims more than ``max_rows`` trials.
        """
        try:
            return cls._loads(memoryview(data), list(names), objectives, max_rows)
        except (
            KeyError, TypeError, IndexError, AttributeError, OverflowError,
            RecursionError, MemoryError, json.JSONDecodeError,
        ) as err:  # fmt: skip
            msg = f"not a trials table snapshot this dasktune reads: {err!r:.300}"
            raise ValueError(msg) from err

    @classmethod
    def _loads(
        cls, data: memoryview, names: list[str], objectives: int, max_rows: int | None
    ) -> TrialTable:
        magic = len(_SNAPSHOT_MAGIC)
        if bytes(data[:magic]) != _SNAPSHOT_MAGIC:
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
            msg = (
                f"the snapshot claims {n} trials where the search has at most "
                f"{max_rows}"
            )
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
            return _as_array(values, "O", False, set(map(type, values)))

        table = cls((), objectives=objectives)
        table.n = n
        table._grow(n)
        table.seq = int(header["seq"])
        table._sorted = bool(header["sorted"])
        table._top = int(header["top"])
        table._numbers[:n] = array(header["numbers"])
        for name in _FIXED:
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
        params: dict[str, _ParamColumn] = {}
        for name, kind, missing, layout in header["params"]:
            column = params[name] = _ParamColumn(table._capacity, 0)
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
            table._params[name] = held or _ParamColumn(table._capacity, n)
        table._params.update(params)
        return table
