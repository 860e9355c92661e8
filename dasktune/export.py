"""A dasktune search as an Optuna study: ``dasktune export``.

:func:`to_optuna` reads a search from a trial store, read-only, and writes it
as an Optuna study — to an Optuna journal file (``optuna-dashboard FILE``
opens it) or to any Optuna storage URL — so that optuna-dashboard and
``optuna.visualization`` work on a dasktune search:

- each trial keeps its number's order, its parameters (categoricals as their
  values), its value, its start and end times, and its worker, host, attempts,
  auxiliary data and dasktune number as user attributes, and the values it
  reported (``report(step, value)``) as its intermediate values;
- the search's metric names (``Search(metric_names=...)``) are the study's;
- statuses map to Optuna's states: done ``COMPLETE``, failed ``FAIL`` (with its
  error), pruned ``PRUNED``, running ``RUNNING``, queued ``WAITING``;
- distributions come from the search's stored space; a search without one
  (a grid, a list) gets them from the values seen: numbers a float or int
  range, anything else a categorical of the values.

The dasktune store is opened read-only and never written.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

from dasktune.exceptions import DasktuneError
from dasktune.optim.optuna import distributions, import_optuna
from dasktune.space import Space
from dasktune.store.sql import TrialStore, search_directions, search_metric_names

__all__ = ["optuna_storage", "study_user_attrs", "to_optuna"]


def _time(stamp: float | None) -> datetime.datetime | None:
    if stamp is None or math.isnan(stamp):
        return None
    return datetime.datetime.fromtimestamp(stamp)


def _inferred(optuna: Any, trials: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Distributions spanning the values seen, for a search stored without a space."""
    d = optuna.distributions
    seen: dict[str, list[Any]] = {}
    for t in trials:
        for name, value in t["params"].items():
            seen.setdefault(name, []).append(value)
    out = {}
    for name, values in seen.items():
        numbers = [
            v for v in values if isinstance(v, int | float) and not isinstance(v, bool)
        ]
        kinds = {type(v) for v in numbers}
        # ints beside floats (a grid's [0.1, 1, 10]) stay as they are, choices:
        # a range of either kind would turn 1 into 1.0, a different key here
        if len(numbers) == len(values) and len(set(numbers)) > 1 and len(kinds) == 1:
            low, high = min(numbers), max(numbers)
            if kinds == {int}:
                out[name] = d.IntDistribution(int(low), int(high))
            else:
                out[name] = d.FloatDistribution(float(low), float(high))
        else:
            # by type too: 1 and 1.0 (and True) are different keys here
            kept = {(type(v), _hashable(v)): _hashable(v) for v in values}
            choices = list(kept.values())
            out[name] = d.CategoricalDistribution(choices)
    return out


def _hashable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return json.dumps(value, sort_keys=True)  # lists and dicts: their JSON text


def to_optuna(
    store: str | os.PathLike[str] | TrialStore,
    name: str,
    storage: Any,
    *,
    study_name: str | None = None,
) -> Any:
    """Write the search ``name`` of ``store`` as an Optuna study.

    Parameters
    ----------
    store : str, path-like or TrialStore
        The dasktune store (a URL, or a SQLite file's path); opened read-only.
    name : str
        The search to export.
    storage : str or optuna storage
        An Optuna storage URL (``"sqlite:///optuna.db"``), an Optuna storage
        object (``JournalStorage(JournalFileBackend("search.log"))``).
    study_name : str, optional
        The study's name (default: the search's).

    Returns
    -------
    optuna.Study
        The new study.

    Raises
    ------
    DasktuneError
        If the store has no such search, or the target already has a study of
        that name (an export never mixes into an existing study).
    ImportError
        If Optuna is not installed.
    """
    optuna = import_optuna()
    own = not isinstance(store, TrialStore)
    source = (
        store if isinstance(store, TrialStore) else TrialStore(store, readonly=True)
    )
    try:
        row = source.find_search(name)
        if row is None:
            names = [s["name"] for s in source.list_searches()]
            msg = f"no search named {name!r} in {source.display_url}; it has {names}"
            raise DasktuneError(msg)
        trials = source.trials(row["id"])
        curves = source.curves(row["id"])  # each trial's reported values
    finally:
        if own:
            source.close()
    space = None
    if row["space"]:
        space = Space.from_json(json.loads(row["space"]))
        dists = distributions(space)
    else:
        dists = _inferred(optuna, trials)
    study_name = study_name or name
    try:
        optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        pass  # no such study yet: what an export needs
    else:
        msg = (
            f"the target already has a study named {study_name!r}; export to a "
            "new file, or give another study name (dasktune export --study-name)"
        )
        raise DasktuneError(msg)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    directions = search_directions(row)
    # every trial converted before anything is written: a failure leaves no
    # half-made study behind
    for t in trials:
        why = None if space is None else space.outside(t["params"])
        if why is not None:
            msg = (
                f"trial {t['number']} of {name!r} cannot be an Optuna trial of the "
                f"search's space: {why}; nothing was exported (it was recorded "
                "from an optimizer that declares no space, or by an earlier "
                "dasktune that did not compare an optimizer's space with the "
                "search's)"
            )
            raise DasktuneError(msg)
    frozen = [
        _frozen(optuna, t, dists, len(directions), curves.get(t["number"], ()))
        for t in trials
    ]
    study = optuna.create_study(
        study_name=study_name, storage=storage, directions=directions
    )
    for key, value in study_user_attrs(row).items():
        study.set_user_attr(key, value)
    metric_names = search_metric_names(row)
    if metric_names is not None:
        with warnings.catch_warnings():  # experimental in Optuna 3.2 to 5 at least
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(metric_names)
    study.add_trials(frozen)
    return study


def study_user_attrs(row: dict[str, Any]) -> dict[str, Any]:
    """A stored search's row as an Optuna study's user attributes: its name
    (``dasktune_search``) and metadata (``dasktune_metadata``)."""
    metadata = json.loads(row["metadata"]) if row.get("metadata") else {}
    return {"dasktune_search": row["name"], "dasktune_metadata": metadata}


def optuna_storage(store: str | os.PathLike[str] | TrialStore) -> Any:
    """A read-only, live Optuna storage over a dasktune store.

    Each search is an Optuna study of the same name, each trial a trial of it,
    converted as :func:`to_optuna` converts them (states, every objective's
    value, reported values as intermediate values, distributions, user
    attributes), but read from the store at each call: a running search's new
    trials appear without a copy. ``optuna.load_study`` and optuna-dashboard
    read it directly.

    Parameters
    ----------
    store : str, path-like or TrialStore
        The dasktune store: a URL (SQLite or PostgreSQL), a SQLite file's
        path (opened read-only, closed by the storage's ``close()``), or an
        open :class:`~dasktune.store.sql.TrialStore` (read, never closed).

    Returns
    -------
    optuna.storages.BaseStorage
        Every method that would write raises
        :class:`~dasktune.exceptions.StoreError`: the store is written by
        dasktune's drivers only.

    Raises
    ------
    ImportError
        If Optuna is not installed.
    StoreError
        If the store cannot be opened, or is not a dasktune store.

    Examples
    --------
    >>> import optuna  # doctest: +SKIP
    >>> storage = dasktune.optuna_storage("runs.db")  # doctest: +SKIP
    >>> study = optuna.load_study(study_name="tpe", storage=storage)  # doctest: +SKIP
    >>> study.best_value  # doctest: +SKIP
    """
    import_optuna()
    from dasktune.optuna_view import ReadOnlyStorage

    if isinstance(store, TrialStore):
        return ReadOnlyStorage(store, own=False)
    return ReadOnlyStorage(TrialStore(store, readonly=True), own=True)


def _frozen(
    optuna: Any,
    t: dict[str, Any],
    dists: dict[str, Any],
    objectives: int = 1,
    curve: Iterable[tuple[int, float]] = (),
    trial_id: int | None = None,
) -> Any:
    """Trial ``t`` (a store's trial dict) as an Optuna ``FrozenTrial``; its
    ``trial_id`` is its number unless given."""
    state = optuna.trial.TrialState
    states = {
        "done": state.COMPLETE,
        "failed": state.FAIL,
        "running": state.RUNNING,
        "queued": state.WAITING,
        "pruned": state.PRUNED,
    }
    params = {k: _hashable(v) for k, v in t["params"].items() if k in dists}
    attrs = {
        "dasktune_number": t["number"],
        "worker": t["worker"],
        "host": t["host"],
        "attempts": t["attempts"],
        "duration": t["duration"],
    }
    extra = {k: v for k, v in t["params"].items() if k not in dists}
    if extra:  # recorded beside the space's (LCBSelector's "method"): kept too
        attrs["params_outside_space"] = extra
    if t["aux"]:
        attrs["aux"] = t["aux"]
    if t["error"]:
        attrs["error"] = t["error"]
    kind = states[t["status"]]
    values = None
    if kind == state.COMPLETE and objectives > 1:
        values = t.get("objectives")
        if values is None or len(values) != objectives:
            kind = state.FAIL  # a done trial without every objective's value
    system_attrs = {}
    if t.get("constraints") is not None:
        # Optuna's own key for a trial's constraints (c <= 0 feasible)
        system_attrs["constraints"] = tuple(t["constraints"])
    started = _time(t["started"])
    finished = _time(t["finished"])
    trial = optuna.trial.FrozenTrial(
        number=t["number"],
        state=kind,
        value=t["value"]
        if kind in (state.COMPLETE, state.PRUNED) and objectives == 1
        else None,
        values=values if kind == state.COMPLETE else None,
        datetime_start=started
        if kind != state.WAITING
        else None,  # Optuna: a waiting trial has not started
        datetime_complete=finished if kind.is_finished() else None,
        params=params,
        distributions={k: dists[k] for k in params},
        user_attrs=attrs,
        system_attrs=system_attrs,
        # what the trial reported (Optuna's trial.report): its learning curve
        intermediate_values={int(step): float(value) for step, value in curve},
        trial_id=t["number"] if trial_id is None else trial_id,
    )
    if trial.datetime_start is None and kind != state.WAITING:
        trial.datetime_start = finished or datetime.datetime.now()
    if kind.is_finished() and trial.datetime_complete is None:
        trial.datetime_complete = trial.datetime_start
    return trial
