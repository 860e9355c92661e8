"""A search's arguments, checked before any work: names, directions, the
stale-after delay, the objective a run needs, its pruner and filters, and
whether an optimizer can take the search's objectives and space.

Each function raises a ``ValueError`` or ``TypeError`` that names the
argument, shows the value given and says what to do; :class:`~dasktune.search.Search`
calls them in the order it has always raised in.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pandas as pd

from dasktune._checks import check_callable
from dasktune.direction import Direction, parse_directions
from dasktune.optim.base import AskTell, Optimizer
from dasktune.optim.pruners import Pruner
from dasktune.run.base import BatchObjective
from dasktune.run.driver import check_batch_objective, check_pruned_objective
from dasktune.run.report import check_trial_first
from dasktune.space import Space
from dasktune.store.table import COLUMNS

__all__ = [
    "RESERVED",
    "RESERVED_COLUMNS",
    "check_directions",
    "check_filters",
    "check_metric_names",
    "check_objective",
    "check_objectives",
    "check_pruner",
    "check_reserved",
    "check_runnable",
    "check_stale_after",
]

#: the trials table's own columns (``step`` once trials report): not parameters
RESERVED_COLUMNS = ("number", *COLUMNS, "step", "constraints", "feasible")
RESERVED = frozenset(RESERVED_COLUMNS)

#: a filter: ``f(params, trials) -> bool``
Filter = Callable[[dict[str, Any], pd.DataFrame], bool]


def check_objective(name: object, objective: object) -> None:
    """A search's name and objective (``None``: a search opened to be read)."""
    if not isinstance(name, str) or not name.strip():
        msg = f"name must be a non-empty string, got {name!r}"
        raise ValueError(msg)
    if objective is not None:  # None: a search opened to be read
        if not isinstance(objective, BatchObjective):
            check_callable("objective", objective)
        check_batch_objective(objective)


def check_stale_after(stale_after: object) -> float:
    """Seconds after which a silent driver's trials are taken over."""
    if (
        isinstance(stale_after, bool)
        or not isinstance(stale_after, int | float)
        or not 0 < stale_after < math.inf  # NaN too
    ):
        msg = (
            "stale_after must be a positive, finite number of seconds (after "
            "which a silent driver's trials are taken over), got "
            f"{stale_after!r}"
        )
        raise ValueError(msg)
    return float(stale_after)


def check_runnable(objective: object, name: str) -> None:
    """Refuse to run a search opened without an objective, or one whose
    objective takes Optuna's ``trial`` first."""
    if objective is None:
        msg = (
            f"search {name!r} was opened without an objective: it can be "
            "read (trials, best, plot), not run; give Search(name, objective, ...)"
        )
        raise TypeError(msg)
    if not isinstance(objective, BatchObjective):
        check_trial_first(objective)  # type: ignore[arg-type]  # Optuna's objective(trial)


def check_pruner(
    pruner: object, objective: object, name: str, directions: Sequence[Direction]
) -> None:
    """A run's ``pruner``: a :class:`Pruner`, for one objective, with an
    objective that takes the ``trial`` it reports through."""
    if pruner is not None and len(directions) > 1:
        msg = (
            f"search {name!r} has {len(directions)} objectives; "
            "pruners compare one objective's curves (as Optuna's do): run it "
            "without a pruner"
        )
        raise ValueError(msg)
    if pruner is not None:
        if not isinstance(pruner, Pruner):
            msg = (
                "pruner must be a dasktune.optim.pruners.Pruner (MedianPruner, "
                "SuccessiveHalvingPruner, ... or a subclass), got "
                f"{type(pruner).__name__}: {pruner!r}"
            )
            raise TypeError(msg)
        check_pruned_objective(objective, pruner)


def check_filters(filters: Sequence[Filter] | Filter) -> list[Filter]:
    """A run's ``filters`` as a list of callables (one function: a list of it)."""
    if callable(filters):  # one filter: a list of it
        filters = [filters]
    if isinstance(filters, str | bytes) or not isinstance(filters, Iterable):
        msg = (
            "filters must be a list of functions (record, trials) -> bool, or "
            f"one such function, got {type(filters).__name__}: {filters!r:.60}"
        )
        raise TypeError(msg)
    filters = list(filters)
    for f in filters:
        check_callable("each filter", f)
    return filters


def check_objectives(
    optimizer: AskTell,
    space: Space | None,
    directions: list[Direction],
    name: str,
) -> None:
    """Give an optimizer made without them the search's directions and
    space (an ``OptunaSampler``'s ``adopt_directions``/``adopt_space``),
    then refuse, before anything runs, one that cannot take this search's
    objectives or proposes points outside its space."""
    # the hooks beyond AskTell's members are an Optimizer's (declared on
    # the base class); an object of the user's takes their defaults
    declared = optimizer if isinstance(optimizer, Optimizer) else None
    if declared is not None:
        declared.adopt_directions(directions)  # an OptunaSampler's
        declared.adopt_space(space)  # one made without a space
    if space is not None and declared is not None:
        for searched, owner in declared.spaces():
            why = searched.outside_of(space)
            if why is not None:
                msg = (
                    f"{owner.describe()} searches a space whose points are not "
                    f"all points of search {name!r}'s space: {why}; give it "
                    "the search's space (an OptunaSampler made without one "
                    "takes it), or run it in a search of its own"
                )
                raise ValueError(msg)
    k = len(directions)
    wants, n = bool(optimizer.wants_values), int(optimizer.n_objectives)
    if wants and n != k:
        several = (
            "a sampler of several objectives such as OptunaSampler("
            f"optuna.samplers.NSGAIISampler(), space, directions={directions})"
            ", or a source that ignores values (a grid, random sampling)"
        )
        msg = (
            f"search {name!r} has {k} objective(s) (directions="
            f"{directions}) but {optimizer.describe()} takes {n}; "
            + (f"use {several}" if k > 1 else "give the search as many directions")
        )
        raise ValueError(msg)
    theirs = None if declared is None else declared.directions
    if wants and theirs is not None and list(theirs) != directions:
        assert declared is not None  # only an Optimizer has directions
        if declared.directions_given:
            advice = "give both the same directions"
        else:  # made without directions, but already in use
            advice = (
                "it was made without directions but its study already holds "
                "trials (enqueued, or of another search), so it cannot take the "
                f"search's: make it with directions={directions}"
            )
        msg = (
            f"search {name!r} has directions={directions} but "
            f"{optimizer.describe()} has directions={list(theirs)}; {advice}"
        )
        raise ValueError(msg)


def check_metric_names(names: Sequence[str], directions: Sequence[str]) -> list[str]:
    """``names`` as a list of distinct, non-empty strings, one per objective."""
    if isinstance(names, str) or not isinstance(names, Sequence):
        msg = (
            f"metric_names must be a list of strings, one per objective, got {names!r}"
        )
        raise TypeError(msg)
    names = list(names)
    bad = [n for n in names if not isinstance(n, str) or not n.strip()]
    if bad or len(set(names)) != len(names) or len(names) != len(directions):
        msg = (
            f"metric_names must be {len(directions)} distinct non-empty strings, "
            f"one per objective (directions={directions}), got {names!r}"
        )
        raise ValueError(msg)
    return names


def check_directions(
    directions: Sequence[str] | None, direction: Direction
) -> list[Direction]:
    """Every objective's direction, from ``directions`` or the one ``direction``."""
    if directions is None:
        return [direction]
    wanted = parse_directions(directions)
    if direction is not Direction.MINIMIZE and direction != wanted[0]:
        msg = (
            f"give direction= or directions=, not both: direction={direction!r} "
            f"but directions={wanted!r}"
        )
        raise ValueError(msg)
    return wanted


def check_reserved(names: Iterable[str]) -> None:
    clash = sorted(
        n for n in names if n in RESERVED or re.fullmatch(r"values_\d+", str(n))
    )
    if clash:
        msg = (
            f"parameter names {clash} are reserved for the trials table's columns "
            f"{list(RESERVED_COLUMNS)} and values_0, values_1, ...; rename them"
        )
        raise ValueError(msg)
