"""What a search's run asks: its source made an optimizer.

A source is an ask/tell optimizer (taken as it is), ``None`` (random sampling
of the search's space), or an iterable of parameter dicts (a scikit-learn
``ParameterGrid`` or ``ParameterSampler``, a list, a generator), wrapped in
an :class:`~dasktune.optim.base.IterableSource`. Anything else is refused
before any work, with how to wrap an Optuna or Nevergrad object.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from dasktune._checks import short_repr
from dasktune.optim.base import (
    AskTell,
    IterableSource,
    RandomSampler,
    missing_members,
)
from dasktune.search_checks import check_reserved
from dasktune.space import Space

__all__ = ["check_point", "length", "optimizer_of", "space_size", "wrap_hint"]


def optimizer_of(
    source: Iterable[Mapping[str, Any]] | AskTell | None,
    space: Space | None,
    name: str,
    n_trials: int | None,
    seed: int | None,
) -> AskTell:
    """The optimizer a run asks: ``source`` itself (an ask/tell optimizer),
    random sampling of ``space`` (``None``), or an iterable of parameter dicts
    made one (each point checked against ``space``: a list or a grid before
    any work, a generator as it comes)."""
    if source is None:
        if space is None or n_trials is None:
            msg = (
                "run() without a source samples the search's space at random: "
                "give Search(space=...) and run(n_trials=...), or pass a source"
            )
            raise ValueError(msg)
        return RandomSampler(space, seed=seed)
    if isinstance(source, AskTell):
        return source
    wrap = wrap_hint(source)
    if hasattr(source, "ask") and hasattr(source, "tell"):
        missing = missing_members(source)
        msg = f"{type(source).__name__} has ask() and tell() but lacks {missing} "
        if wrap:
            msg += f"of dasktune's ask/tell contract{wrap}"
        else:
            msg += (
                "of the ask/tell contract; subclass dasktune.optim.base.Optimizer "
                "(which declares them all with defaults) or define them"
            )
        raise TypeError(msg)
    if isinstance(source, str | bytes | Mapping) or not isinstance(source, Iterable):
        msg = (
            "source must be an iterable of parameter dicts (a ParameterGrid, a "
            "list, a generator) or an ask/tell optimizer, got "
            f"{type(source).__name__}: {source!r}"
        )
        if wrap:
            msg += wrap
        elif callable(source):
            msg += (
                "; a function is not a source (dasktune.SPSA and minimize run "
                "on their own): pass an optimizer object, such as "
                "dasktune.optim.spsa.SPSAOptimizer(space.encode(start), "
                "bounds=space.bounds)"
            )
        raise TypeError(msg)
    grid = getattr(source, "param_grid", None) or getattr(
        source, "param_distributions", None
    )
    for part in grid if isinstance(grid, list) else [grid] if grid else []:
        check_reserved(part)
    if space is not None:
        if isinstance(source, Sequence) or hasattr(source, "param_grid"):
            for params in source:  # a list, a grid: before any work
                check_point(space, name, params)
        else:  # a generator, a sampler: each point as it comes
            source = _checked(source, space, name)
    return IterableSource(source)


def check_point(space: Space, name: str, params: Any) -> None:
    """Refuse a parameter dict of the source that is not a point of the
    search's space (a vector is decoded by the space, so always is)."""
    if not isinstance(params, Mapping):
        return
    why = space.outside(params)
    if why is not None:
        msg = (
            f"the source's parameter set {short_repr(params)} is not a point of "
            f"search {name!r}'s space: {why}; give points of the space "
            "(or run them in a search of their own)"
        )
        raise ValueError(msg)


def _checked(source: Iterable[Any], space: Space, name: str) -> Iterator[Any]:
    for params in source:
        check_point(space, name, params)
        yield params


def space_size(
    space: Space | None, source: Iterable[Mapping[str, Any]] | AskTell | None
) -> int | None:
    """How many distinct parameter sets the source can propose, if known:
    the search's all-discrete space, sampled or searched by an optimizer
    (an iterable of dicts may hold sets outside the space)."""
    if space is None or not (source is None or isinstance(source, AskTell)):
        return None
    return space.size


def length(source: object) -> int | None:
    """How many parameter sets an iterable source holds, if it says (a
    ``ParameterGrid``, a list)."""
    if source is None or isinstance(source, AskTell):
        return None
    try:
        return len(source)  # type: ignore[arg-type]
    except TypeError:
        return None


def wrap_hint(source: Any) -> str:
    """How to make an Optuna or Nevergrad object a source, or ``""``."""
    kind = source if isinstance(source, type) else type(source)
    module = kind.__module__.split(".")[0]
    if module == "optuna":
        if hasattr(source, "sampler") and hasattr(source, "optimize"):  # a study
            return "; wrap its sampler: dasktune.OptunaSampler(study.sampler, space)"
        return "; wrap optuna's in dasktune.OptunaSampler(sampler, space)"
    if module == "nevergrad":
        return (
            "; wrap nevergrad's in dasktune.NevergradOptimizer(name or optimizer, "
            "space, budget=N)"
        )
    return ""
