"""What a reader checks of a stored row before using it.

A store is a file (or a shared database) that anything may write: a row
damaged on disk or written by hand (text in a number's column, JSON that does
not parse, parameters nested a million deep) must not surface as a
``JSONDecodeError``, ``OverflowError`` or ``RecursionError`` from deep in a
read, but as one :class:`~dasktune.exceptions.StoreError` naming the store,
the search and the trial, and saying what to do. The fast paths read rows in
bulk and call these checks only when the bulk decoding failed, to find and
name the row at fault.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from dasktune.exceptions import StoreError
from dasktune.records import FIELD, TrialStatus

__all__ = ["DECODING_ERRORS", "damaged_search", "damaged_trial", "trial_problem"]

#: what decoding a damaged row raises: bad JSON (a ValueError), text where a
#: number belongs, a number beyond int64, JSON nested too deep
DECODING_ERRORS = (ValueError, TypeError, OverflowError, RecursionError)
_STATUSES = frozenset(status.value for status in TrialStatus)
_INT64 = 2**63
_NUMBERS = ("value", "duration", "started", "finished", "step")
_TEXTS = ("worker", "host", "error")


def _real(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _json(text: Any, kind: type | tuple[type, ...], what: str) -> str | None:
    """What is wrong with ``text`` as the JSON of a ``kind``, or ``None``."""
    if not isinstance(text, str):
        return f"{what} is {type(text).__name__}, not JSON text"
    try:
        decoded = json.loads(text)
    except RecursionError:
        return f"{what} is JSON nested too deep to read"
    except ValueError as err:
        return f"{what} is not valid JSON ({err})"
    if not isinstance(decoded, kind):
        return f"{what} is JSON of a {type(decoded).__name__}"
    if isinstance(decoded, list) and not all(v is None or _real(v) for v in decoded):
        return f"{what} holds values that are not numbers"
    return None


def trial_problem(row: Sequence[Any]) -> str | None:
    """What is wrong with a raw trial row (``TRIAL_FIELDS`` order), if anything.

    >>> trial_problem((0, '{"x": 1}', 0.5, "done", 1.0, None, None, 1, None,
    ...                None, None, None, None, None, None, 3)) is None
    True
    >>> trial_problem((0, "{", 0.5, "done") + (None,) * 12)[:30]
    'its params is not valid JSON ('
    """
    number = row[FIELD["number"]]
    if not isinstance(number, int) or not 0 <= number < _INT64:
        return f"its number is {number!r}, not a whole number of 64 bits"
    status = row[FIELD["status"]]
    if status not in _STATUSES:
        return f"its status is {status!r}, not one of {sorted(_STATUSES)}"
    for name in _NUMBERS:
        x = row[FIELD[name]]
        if x is not None and not _real(x):
            return f"its {name} is {type(x).__name__} {x!r:.40}, not a number"
    for name in _TEXTS:
        x = row[FIELD[name]]
        if x is not None and not isinstance(x, str):
            return f"its {name} is {type(x).__name__}, not text"
    for name in ("attempts", "seq"):
        x = row[FIELD[name]]
        if x is not None and not (isinstance(x, int) and abs(x) < _INT64):
            return f"its {name} is {x!r:.40}, not a whole number of 64 bits"
    problem = _json(row[FIELD["params"]], dict, "its params")
    if problem is None and row[FIELD["aux"]]:
        problem = _json(row[FIELD["aux"]], dict, "its aux")
    for name in ("objectives", "constraints"):
        if problem is None and row[FIELD[name]] is not None:
            problem = _json(row[FIELD[name]], list, f"its {name}")
    return problem


def damaged_trial(
    where: str,
    rows: Iterable[Sequence[Any]],
    err: BaseException,
    search: str | None = None,
) -> StoreError:
    """The error for rows whose decoding raised ``err``: naming the first
    damaged trial of ``rows`` (raw, ``TRIAL_FIELDS`` order), or, when each
    row is sound on its own, ``err`` itself.

    Parameters
    ----------
    where : str
        The store, as messages show it (its ``display_url``).
    search : str, optional
        The search, as messages name it.
    """
    of = f" of search {search}" if search else ""
    for row in rows:
        problem = trial_problem(row)
        if problem is not None:
            number = row[FIELD["number"]]
            which = (
                f"trial {number}"
                if isinstance(number, int)
                else f"trial numbered {number!r:.40}"
            )
            msg = (
                f"the store {where} holds a damaged {which}{of}: {problem}; "
                "dasktune did not write it so: repair or delete that row (or "
                "give the search a store of its own)"
            )
            return StoreError(msg)
    msg = (
        f"cannot read the trials{of} in the store {where}: "
        f"{type(err).__name__}: {str(err)[:200]}; it is damaged or was written "
        "by another program"
    )
    return StoreError(msg)


def damaged_search(where: str, row: dict[str, Any]) -> StoreError | None:
    """The error for a stored search row that cannot be read, or ``None``."""
    problem = None
    if row.get("space") is not None:
        problem = _json(row["space"], dict, "its space")
    if problem is None and row.get("metadata") is not None:
        problem = _json(row["metadata"], dict, "its metadata")
    if problem is None and row.get("directions") is not None:
        text = row["directions"]
        try:
            directions = json.loads(text) if isinstance(text, str) else None
        except (ValueError, RecursionError):
            directions = None
        if not (
            isinstance(directions, list)
            and directions
            and all(d in ("minimize", "maximize") for d in directions)
        ):
            problem = f"its directions are {text!r:.60}, not a JSON list of them"
    if problem is None and row.get("direction") not in ("minimize", "maximize"):
        problem = f"its direction is {row.get('direction')!r:.40}"
    if problem is None:
        return None
    msg = (
        f"the store {where} holds a damaged search {row.get('name')!r}: "
        f"{problem}; dasktune did not write it so: repair or delete that row"
    )
    return StoreError(msg)
