"""The domain records every layer shares: trials, outcomes, claims, decisions.

Nothing here imports Dask or SQL, so that a worker unpickling a trial, an
optimizer and the trial store all use the same few types:

- :class:`Trial` ``(number, params)``: what an optimizer's ``ask()`` returns;
- :class:`TrialStatus`: where a stored trial is (queued, running, done, failed,
  pruned);
- :class:`Claim`: a parameter set a driver wants to evaluate;
- :class:`Decision` (of a :class:`DecisionKind`): what a recorder says to do
  with a claim, decided by the one rule :func:`decide`;
- :class:`Outcome`: what one evaluation gave;
- :func:`canonical`: the stored form of parameters and its hash (the key that
  makes a parameter set evaluated once);
- :class:`Recorder`: where the driver records trials — :class:`MemoryRecorder`
  here, the SQL store's recorder in :mod:`dasktune.store`.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import numpy as np

__all__ = [
    "FIELD",
    "REUSE_BURST",
    "TRIAL_FIELDS",
    "Claim",
    "Decision",
    "DecisionKind",
    "FINAL",
    "MemoryRecorder",
    "Outcome",
    "Recorder",
    "Trial",
    "TrialStatus",
    "canonical",
    "error_line",
    "decide",
    "unclaimed_message",
]


class Trial(NamedTuple):
    """A proposed trial: its number and its parameters.

    For optimizers over a named space ``params`` is a dict; for vector
    optimizers (``ScipyAskTell``, ``SPSA``) it is the parameter vector.
    """

    number: int
    params: Any


#: the fields of a stored trial as the store reads them
#: (:meth:`~dasktune.store.sql.TrialStore.read_trials`), in order
TRIAL_FIELDS = (
    "number",
    "params",
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
    "step",  # the last step the trial reported (schema 3), else None
    "objectives",  # JSON list of every objective's value (schema 4), else None
    "constraints",  # JSON list of constraint values (schema 4), else None
    "seq",
)
#: each field's position in such a row
FIELD = {name: i for i, name in enumerate(TRIAL_FIELDS)}


class TrialStatus(enum.StrEnum):
    """Where a trial is: claimed but not started, running, done, failed, or
    pruned (stopped early by a pruner; its value is the last one it reported)."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    PRUNED = "pruned"


#: the statuses a trial never leaves: never overwritten, never evaluated again
FINAL = frozenset({TrialStatus.DONE, TrialStatus.PRUNED})


@dataclass
class Claim:
    """A parameter set a driver wants to evaluate (``params`` JSON-able)."""

    param_hash: str
    params: dict[str, Any]


@dataclass
class Outcome:
    """What one evaluation gave, to be written by :meth:`TrialStore.sync`."""

    param_hash: str
    status: TrialStatus
    value: float | None = None
    aux: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    worker: str | None = None
    host: str | None = None
    attempts: int = 1
    started: float | None = None
    finished: float | None = None
    duration: float | None = None
    #: every objective's value, for a search of several objectives (``value``
    #: is the first); ``None`` for one objective
    values: tuple[float, ...] | None = None
    #: the constraint values the objective returned (``c <= 0`` satisfied)
    constraints: tuple[float, ...] | None = None
    # transient: a failed trial's own exception, for the driver to raise; never
    # written to the store (its traceback is ``error``)
    exception: BaseException | None = field(default=None, repr=False, compare=False)
    # transient: the last step the trial reported (its report travels apart:
    # the driver waits for it before recording the trial)
    reported: int | None = field(default=None, repr=False, compare=False)


class DecisionKind(enum.StrEnum):
    """What a driver does with a claim."""

    EVALUATE = "evaluate"  # claimed: evaluate it
    DONE = "done"  # a recorded value to reuse
    PRUNED = "pruned"  # stopped early before: reuse its last reported value
    FAILED = "failed"  # failed before and not retried
    ELSEWHERE = "elsewhere"  # another live driver (or this one) is evaluating it


@dataclass
class Decision:
    """What a driver does with a claim (:class:`DecisionKind`), and the trial's
    number, with the recorded value, auxiliary data, objective values (several
    objectives) and constraints of a ``DONE`` trial (a ``PRUNED`` trial's value
    is the last one it reported)."""

    kind: DecisionKind
    number: int
    value: float | None = None
    aux: dict[str, Any] = field(default_factory=dict)
    values: tuple[float, ...] | None = None
    constraints: tuple[float, ...] | None = None


_PLAIN = (float, int, str)


def _jsonable(obj: Any) -> Any:
    if type(obj) is list and all(type(v) in _PLAIN for v in obj):
        return list(obj)  # a vector's ``tolist()``: nothing to convert
    if type(obj) is dict and all(
        type(k) is str and type(v) in _PLAIN for k, v in obj.items()
    ):
        return dict(obj)  # a flat dict of plain values: nothing to convert
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    return repr(obj)


def canonical(params: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """Parameters as stored, and their canonical hash.

    Keys become strings; numpy scalars and arrays become Python numbers and lists;
    tuples become lists; categoricals are stored as their values; any other
    object is stored as its ``repr`` (so give objects a stable ``repr``, or pass
    their name instead). The hash is the SHA-256 of the JSON with sorted keys:
    ``1`` and ``1.0`` are different parameters, as their JSON is.

    >>> canonical({"b": np.int64(2), "a": (0.5, "x")})[0]
    {'b': 2, 'a': [0.5, 'x']}
    >>> canonical({"a": 1, "b": 2})[1] == canonical({"b": 2, "a": 1})[1]
    True
    """
    record = _jsonable(params)
    return record, hashlib.sha256(_canonical_json(record).encode()).hexdigest()


def _json_encoder() -> Callable[[Any], str]:
    """``json.dumps(obj, sort_keys=True, separators=(",", ":"))``, made once.

    ``json.dumps`` with options builds an encoder on every call; a driver
    hashes every parameter set it is asked, so the encoder is built here once
    (CPython's C encoder when there is one, called as ``JSONEncoder.encode``
    calls it).
    """
    encoder = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return encoder.encode
    try:
        # no circular-reference markers: _jsonable's output is a tree
        c_encode = make(
            None, encoder.default, json.encoder.encode_basestring_ascii, None,
            ":", ",", True, False, True,
        )  # fmt: skip
    except TypeError:  # another signature: the public path
        return encoder.encode

    def encode(obj: Any) -> str:
        if isinstance(obj, str):  # as JSONEncoder.encode does
            return encoder.encode(obj)
        return "".join(c_encode(obj, 0))

    return encode


_canonical_json = _json_encoder()


def decide(
    status: TrialStatus,
    number: int,
    *,
    value: float | None = None,
    aux: dict[str, Any] | None = None,
    values: Sequence[float] | None = None,
    constraints: Sequence[float] | None = None,
    held: bool = False,
    retry_failed: bool = False,
) -> Decision:
    """The one rule deciding a claim of a parameter set already recorded.

    Parameters
    ----------
    status : TrialStatus
        The recorded trial's status.
    number : int
    value, aux, values, constraints : optional
        A done trial's recorded value, auxiliary data, objective values and
        constraint values.
    held : bool
        Whether a live driver holds the trial (``running`` and not stale).
    retry_failed : bool
        Evaluate a failed trial again instead of reusing its failure.

    >>> decide(TrialStatus.DONE, 3, value=0.5).kind
    <DecisionKind.DONE: 'done'>
    >>> decide(TrialStatus.RUNNING, 3, held=False).kind
    <DecisionKind.EVALUATE: 'evaluate'>
    >>> decide(TrialStatus.PRUNED, 3, value=0.9).value
    0.9
    """
    if status in FINAL:
        return Decision(
            DecisionKind.DONE if status == TrialStatus.DONE else DecisionKind.PRUNED,
            number,
            value,
            dict(aux or {}),
            None if values is None else tuple(values),
            None if constraints is None else tuple(constraints),
        )
    if status == TrialStatus.FAILED:
        kind = DecisionKind.EVALUATE if retry_failed else DecisionKind.FAILED
        return Decision(kind, number)
    if status == TrialStatus.RUNNING and held:
        return Decision(DecisionKind.ELSEWHERE, number)
    return Decision(DecisionKind.EVALUATE, number)  # queued, or left by the dead


def unclaimed_message(hashes: Sequence[str]) -> str:
    """The error for outcomes of parameter sets no claim recorded."""
    shown = ", ".join(h[:12] for h in hashes[:3])
    more = f" and {len(hashes) - 3} more" if len(hashes) > 3 else ""
    return (
        f"outcomes for {len(hashes)} parameter set(s) never claimed in this "
        f"search (hashes {shown}{more}); record outcomes only of trials a "
        "claim decided to evaluate"
    )


#: re-runs over done trials: claims per transaction grow up to this many (a
#: recorder may say otherwise: its ``reuse_burst``, 1024 on PostgreSQL). Not
#: more: a turn's objects (~6 per claim) live through it, and past ~1,000
#: claims they outlive the garbage collector's young generations, filling the
#: old one until a full collection (0.1-0.15 s with Dask and pandas loaded)
#: runs in most re-runs of 10^4 points; at 256 none did (16 runs against 1024,
#: interleaved: 25.5k against 21.6k points/s, medians)
REUSE_BURST = 256


class Recorder(Protocol):
    """Where the driver records trials: the store, or memory.

    A recorder subclasses it (as :class:`MemoryRecorder` and the store's
    ``StoreRecorder`` do) to take the defaults of what it does not say.
    """

    #: claims per transaction at most while every claim of a re-run is
    #: reused (the driver doubles its claims per turn up to this):
    #: :data:`REUSE_BURST`, unless a store pays more per transaction
    reuse_burst: int = REUSE_BURST

    def sync(
        self, outcomes: Sequence[Outcome], claims: Sequence[Claim]
    ) -> list[Decision]:
        """Write ``outcomes`` and decide ``claims``, in one transaction.

        An outcome of a done trial is ignored (a done trial is never
        overwritten); an outcome of a parameter set never claimed raises
        ``ValueError``, and nothing of the call is written.
        """
        ...

    def peek(self, hashes: Sequence[str]) -> list[Decision]:
        """What :meth:`sync` would decide for claims of ``hashes``, read-only
        (nothing claimed, no write lock): how a driver waits for trials another
        driver holds."""
        ...

    def add_values(self, reports: Sequence[tuple[int, int, float, float]]) -> None:
        """Keep the values trials reported, ``(number, step, value, time)``, in
        one write; a step already kept for a trial keeps its first value (a
        trial re-run after a lost worker reports its steps again)."""
        ...

    def read_values(self) -> list[tuple[int, int, float, float]]:
        """The values kept by :meth:`add_values`, in the order kept."""
        ...

    def heartbeat(self) -> None:
        """Tell other drivers this one is alive."""
        ...

    def release(self) -> None:
        """Give back the trials claimed and not finished."""
        ...


class MemoryRecorder(Recorder):
    """The recorder when there is no store: an evaluated-point cache.

    It follows the store's contract (the same :func:`decide` rule, checked by
    the same contract tests), for one driver in one process.

    Parameters
    ----------
    retry_failed : bool, default False
        Evaluate failed parameter sets again when they are claimed again.
    """

    def __init__(self, *, retry_failed: bool = False) -> None:
        self.retry_failed = retry_failed
        # by hash: [number, status, value, aux, params, values, constraints]
        self.rows: dict[str, list[Any]] = {}
        self.records: list[tuple[dict[str, Any], Outcome]] = []
        self.values: dict[tuple[int, int], tuple[int, int, float, float]] = {}

    def sync(
        self, outcomes: Sequence[Outcome], claims: Sequence[Claim]
    ) -> list[Decision]:
        """Record ``outcomes``; decide ``claims`` (see :class:`Recorder`)."""
        unclaimed = [o.param_hash for o in outcomes if o.param_hash not in self.rows]
        if unclaimed:
            raise ValueError(unclaimed_message(list(dict.fromkeys(unclaimed))))
        for outcome in outcomes:
            row = self.rows[outcome.param_hash]
            if row[1] in FINAL:
                continue  # final (done, pruned): never overwritten, as in the store
            row[1:4] = [outcome.status, outcome.value, outcome.aux]
            row[5:7] = [outcome.values, outcome.constraints]
            self.records.append((row[4], outcome))
        decisions = []
        for claim in claims:
            known = self.rows.get(claim.param_hash)
            if known is None:
                number = len(self.rows)
                self.rows[claim.param_hash] = [
                    number, TrialStatus.RUNNING, None, {}, claim.params, None, None,
                ]  # fmt: skip
                decisions.append(Decision(DecisionKind.EVALUATE, number))
                continue
            row = known
            decision = self._decide(row)
            if decision.kind == DecisionKind.EVALUATE:
                row[1] = TrialStatus.RUNNING
            decisions.append(decision)
        return decisions

    def peek(self, hashes: Sequence[str]) -> list[Decision]:
        """Decide claims of ``hashes`` without claiming (see :class:`Recorder`)."""
        decisions = []
        for h in hashes:
            row = self.rows.get(h)
            if row is None:
                decisions.append(Decision(DecisionKind.EVALUATE, -1))
                continue
            decisions.append(self._decide(row))
        return decisions

    def _decide(self, row: list[Any]) -> Decision:
        number, status, value, aux, _, values, constraints = row
        return decide(
            status, number, value=value, aux=aux, values=values,
            constraints=constraints, held=True, retry_failed=self.retry_failed,
        )  # fmt: skip

    def add_values(self, reports: Sequence[tuple[int, int, float, float]]) -> None:
        """Keep reported values; a step's first value stays (see :class:`Recorder`)."""
        for number, step, value, when in reports:
            key = (int(number), int(step))
            if key not in self.values:
                self.values[key] = (key[0], key[1], float(value), float(when))

    def read_values(self) -> list[tuple[int, int, float, float]]:
        """The values kept, in the order kept."""
        return list(self.values.values())

    def heartbeat(self) -> None:
        """Nothing to tell: one driver."""

    def release(self) -> None:
        """Put the trials claimed and not finished back to queued."""
        for row in self.rows.values():
            if row[1] == TrialStatus.RUNNING:
                row[1] = TrialStatus.QUEUED


def error_line(text: str | None) -> str | None:
    r"""The error of a recorded traceback: the first line of its last
    exception (a message may go on over several lines; notes follow it).

    >>> error_line('Traceback (most recent call last):\n  File "f.py", line 1, '
    ...           'in f\n    g()\nValueError: no good\n  with detail')
    'ValueError: no good'
    >>> error_line("plain text")
    'plain text'
    >>> error_line("  + Exception Group Traceback (most recent call last):\n"
    ...            '  |   File "f.py", line 1, in f\n'
    ...            "  | ExceptionGroup: two (2 sub-exceptions)\n"
    ...            "  +-+---------------- 1 ----------------\n"
    ...            "    | Traceback (most recent call last):\n"
    ...            '    |   File "g.py", line 2, in g\n'
    ...            "    | ValueError: no good\n"
    ...            "    +------------------------------------")
    'ValueError: no good'
    """
    # an exception group's lines are indented behind "|" bars: read without them
    lines = [_BARS.sub("", line) for line in str(text or "").splitlines()]
    frames = [i for i, line in enumerate(lines) if line.startswith('  File "')]
    start = frames[-1] + 1 if frames else 0
    for line in lines[start:]:
        # after the last frame: its source line and markers are indented
        if line.strip() and (not frames or not line[0].isspace()):
            return line.strip()
    rest = [line.strip() for line in lines if line.strip()]
    return rest[-1] if rest else None


_BARS = re.compile(r"^ *(\| ?)+")
