"""Any Nevergrad optimizer as a dasktune ask/tell optimizer.

:class:`NevergradOptimizer` runs an optimizer of Nevergrad's registry (``NGOpt``,
``CMA``, ``TwoPointsDE``, ``PSO``, ``OnePlusOne``, ...) through its own
ask/tell interface over an ``ng.p.Dict`` parametrization of a dasktune space:

- at most ``num_workers`` candidates are in flight, the parallelism the
  optimizer was built for (Nevergrad's contract); ``ask()`` returns ``None``
  beyond it until one is told;
- ``tell()`` takes the candidates back in any order; a failed trial (told
  ``+inf``) is told as ``+inf``, which Nevergrad clips to its largest loss;
- ``budget`` asks in all, then ``finished``;
- ``warm_start(results)`` tells the optimizer the store's trials as candidates
  it did not ask (``parametrization.spawn_child(new_value=...)``), for the
  optimizers that accept them (most do; the others raise
  ``TellNotAskedNotSupportedError``, and are left untaught with a warning).

Nevergrad is an optional dependency (``pip install -e ".[nevergrad]"``),
imported when the first adapter is made.
"""

from __future__ import annotations

import json
import warnings
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from dasktune.optim.base import Optimizer
from dasktune.space import Bool, Categorical, Dimension, Float, Int, Space

__all__ = ["NevergradOptimizer", "import_nevergrad", "parametrization"]


def import_nevergrad() -> Any:
    """The ``nevergrad`` module, or an ``ImportError`` saying how to install it."""
    try:
        import nevergrad
    except ImportError as err:
        msg = (
            "NevergradOptimizer needs Nevergrad, which is not installed; "
            "pip install nevergrad (or dasktune's extra, from its clone: "
            "pip install -e '.[nevergrad]')"
        )
        raise ImportError(msg) from err
    return nevergrad


def _parameter(ng: Any, name: str, dim: Dimension) -> Any:
    if isinstance(dim, Float):
        if dim.log:
            return ng.p.Log(lower=dim.low, upper=dim.high)
        return ng.p.Scalar(lower=dim.low, upper=dim.high)
    if isinstance(dim, Int):
        kind = ng.p.Log if dim.log else ng.p.Scalar
        return kind(lower=dim.low, upper=dim.high).set_integer_casting()
    if isinstance(dim, Bool):
        return ng.p.Choice([False, True])
    if isinstance(dim, Categorical):
        return ng.p.Choice(dim.choices)
    msg = (
        f"parameter {name!r}: {type(dim).__name__} has no Nevergrad parameter; "
        "use Float, Int, Categorical or Bool"
    )
    raise TypeError(msg)


def parametrization(space: Space | Mapping[str, Any]) -> Any:
    """An ``ng.p.Dict`` for a dasktune space.

    ``Float`` becomes ``ng.p.Scalar`` (``ng.p.Log`` with ``log=True``), ``Int``
    the same with integer casting, ``Categorical`` ``ng.p.Choice`` of its
    choices and ``Bool`` ``ng.p.Choice([False, True])``.
    """
    ng = import_nevergrad()
    return ng.p.Dict(
        **{
            name: _parameter(ng, name, dim)
            for name, dim in Space(space).dimensions.items()
        }
    )


def _plain(dim: Dimension, value: Any) -> Any:
    """A candidate's value as the Python value a dasktune space gives."""
    if isinstance(dim, Float):
        return float(min(max(float(value), dim.low), dim.high))
    if isinstance(dim, Int):
        return int(min(max(round(float(value)), dim.low), dim.high))
    if isinstance(dim, Bool):
        return bool(value)
    return value.item() if isinstance(value, np.generic) else value


class NevergradOptimizer(Optimizer):
    """A Nevergrad optimizer as an ask/tell optimizer over a named space.

    Parameters
    ----------
    name_or_optimizer : str or Nevergrad optimizer class
        A name of ``ng.optimizers.registry`` (``"NGOpt"``, ``"CMA"``, ...) or an
        optimizer class or configured family (``ng.optimizers.TwoPointsDE``,
        ``ng.families.ParametrizedCMA(popsize=8)``); it is built over the
        space's parametrization.
    space : Space or dict
        The named parameter space.
    budget : int
        Trials to ask in all (Nevergrad's optimizers plan with it).
    num_workers : int, default 1
        Trials in flight at once; ``ask()`` returns ``None`` beyond them.
    seed : int, optional
        Seeds the parametrization's random state: the same seed and the same
        values told give the same trials.

    Raises
    ------
    ImportError
        If Nevergrad is not installed (with the command that installs it).
    ValueError
        For an unknown optimizer name (listing close ones), or a ``budget``
        or ``num_workers`` below 1.
    """

    def __init__(
        self,
        name_or_optimizer: Any,
        space: Space | Mapping[str, Any],
        *,
        budget: int,
        num_workers: int = 1,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        ng = import_nevergrad()
        for label, value in (("budget", budget), ("num_workers", num_workers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                msg = f"{label} must be an integer >= 1, got {value!r}"
                raise ValueError(msg)
        if isinstance(name_or_optimizer, str):
            registry = ng.optimizers.registry
            if name_or_optimizer not in registry:
                close = sorted(
                    n for n in registry if name_or_optimizer.lower() in n.lower()
                )[:8]
                msg = (
                    f"{name_or_optimizer!r} is not in ng.optimizers.registry; "
                    f"give one of its names (such as {close or ['NGOpt', 'CMA']})"
                )
                raise ValueError(msg)
            factory = registry[name_or_optimizer]
        elif isinstance(name_or_optimizer, ng.optimizers.base.Optimizer):
            msg = (
                "give the optimizer's name or class (NevergradOptimizer('CMA', ...) "
                "or ng.optimizers.CMA), not a built optimizer: the adapter builds "
                "it over the space's parametrization"
            )
            raise TypeError(msg)
        elif callable(name_or_optimizer):
            factory = name_or_optimizer
        else:
            msg = (
                "name_or_optimizer must be a name of ng.optimizers.registry or an "
                f"optimizer class, got {type(name_or_optimizer).__name__}: "
                f"{name_or_optimizer!r}"
            )
            raise TypeError(msg)
        self.space = Space(space)
        self.budget = budget
        self.num_workers = num_workers
        self.seed = seed
        self._ng = ng
        self._untaught = 0  # results of requeued points it could not be told
        self._requeued: deque[dict[str, Any]] = deque()  # interrupted trials
        param = parametrization(self.space)
        param.random_state = np.random.RandomState(seed)
        self.optimizer = factory(
            parametrization=param, budget=budget, num_workers=num_workers
        )
        self._name = getattr(factory, "__name__", None) or repr(factory)
        self._asked: dict[int, Any] = {}  # dasktune number -> candidate

    def _ask(self) -> dict[str, Any] | None:
        if self.finished or len(self._asked) >= self.num_workers:
            return None
        if self._requeued:  # an interrupted trial, exactly as recorded
            params = self._requeued.popleft()
            self._asked[self._next_number] = self.optimizer.parametrization.spawn_child(
                new_value=params
            )
            return dict(params)
        try:
            candidate = self.optimizer.ask()
        except Exception as err:
            err.add_note(
                f"raised inside nevergrad's {self._name}.ask(), not by dasktune; "
                "the trials recorded so far are kept: run the search again with "
                "another optimizer ('CMA', 'TwoPointsDE', ...) to go on"
            )
            raise
        self._asked[self._next_number] = candidate
        return {
            name: _plain(dim, candidate.value[name])
            for name, dim in self.space.dimensions.items()
        }

    def _tell(self, number: int, params: Any, value: float) -> None:
        candidate = self._asked.pop(number)
        try:
            self._tell_candidate(candidate, value)
        except self._ng.errors.TellNotAskedNotSupportedError:
            # a requeued point (not asked), which this optimizer cannot learn:
            # its result is in the store all the same
            if not self._untaught:
                warnings.warn(
                    f"Nevergrad's {self._name} cannot learn the results of the "
                    "interrupted trials it proposed again; they are recorded, "
                    "not learned",
                    UserWarning,
                    stacklevel=2,
                )
            self._untaught += 1

    def _tell_candidate(self, candidate: Any, value: float) -> None:
        with warnings.catch_warnings():
            # a failed trial's +inf: Nevergrad clips it to its largest loss, as
            # wanted, and says so every time
            warnings.simplefilter("ignore", self._ng.errors.LossTooLargeWarning)
            self.optimizer.tell(candidate, value)

    def requeue(self, points: Sequence[Any]) -> int:
        """Propose a resumed search's interrupted trials first, in the order
        they were first asked, as Nevergrad's ``suggest`` would (exactly as
        recorded: a log-scaled value does not go through the parametrization
        and back), each told to the optimizer as a point it did not ask, and
        each using an ask of the budget; parameter sets outside the space are
        left out, and those past the budget.

        Returns
        -------
        int
            How many it will propose.
        """
        picked: dict[str, dict[str, Any]] = {}  # by canonical key: once each
        for params in points:
            if self.space.contains(params):
                point = {name: params[name] for name in self.space.names}
                picked.setdefault(json.dumps(point, sort_keys=True), point)
        left = max(0, self.budget - self._next_number)
        # a later run of the same optimizer hands the same trials back: they
        # replace the earlier ones, not join them
        self._requeued = deque(list(picked.values())[:left])
        return len(self._requeued)

    @property
    def finished(self) -> bool:
        return self._next_number >= self.budget

    def warm_start(self, results: Iterable[tuple[Any, ...]]) -> int:
        """Tell the optimizer results it did not ask (a resumed search's).

        Parameter sets outside the space are left out; an optimizer that
        cannot be told points it did not ask is left untaught, with a warning.

        Returns
        -------
        int
            How many results were told.
        """
        told = 0
        param = self.optimizer.parametrization
        for params, value, *_ in results:  # constraints: not used
            if not self.space.contains(params):
                continue  # a point of another space (an earlier run's source)
            picked = {name: params[name] for name in self.space.names}
            candidate = param.spawn_child(new_value=picked)
            try:
                self._tell_candidate(candidate, float(value))
            except self._ng.errors.TellNotAskedNotSupportedError:
                warnings.warn(
                    f"Nevergrad's {self._name} cannot be told points it did not "
                    "ask; the resumed search starts it afresh (the store still "
                    "answers trials it proposes again)",
                    UserWarning,
                    stacklevel=2,
                )
                return told
            told += 1
        return told

    def spaces(self) -> list[tuple[Space, Optimizer]]:
        return [(self.space, self)]

    def describe(self) -> str:
        return (
            f"NevergradOptimizer({self._name}, budget={self.budget}, "
            f"num_workers={self.num_workers}, seed={self.seed})"
        )
