"""Any Optuna sampler as a dasktune ask/tell optimizer.

:class:`OptunaSampler` drives an Optuna sampler (TPE, CMA-ES, GP, NSGA-II,
random, QMC, ...) through Optuna's own ask/tell interface on an in-memory
study, so that a :class:`~dasktune.Search` runs it on Dask with dasktune's
store, de-duplication and resume:

- ``ask()`` is ``study.ask(distributions)`` with the whole space given up front
  (Optuna's "define-and-run" form), so every parameter is drawn at once and
  relative samplers (CMA-ES, GP, multivariate TPE) see the whole space;
- trials in flight stay ``RUNNING`` in the study, as with Optuna's own parallel
  workers; TPE accounts for them only with ``constant_liar=True`` (Optuna's
  advice for parallel runs, its default from Optuna 5, and the default sampler
  here), so a ``TPESampler(constant_liar=False)`` gets a warning that parallel
  asks may cluster;
- ``tell()`` completes the trial in any order, a failed one (told ``+inf``)
  as ``FAIL``, as Optuna records a trial whose objective raised;
- ``warm_start(results)`` adds the store's done and failed trials to the study
  (``study.add_trial``), so a resumed search re-teaches the sampler what it
  learnt before;
- several objectives (``directions=["minimize", "maximize"]``, e.g. with
  ``NSGAIISampler``) are told as the tuple of their values;
- constraints a trial returned reach the sampler as Optuna expects them:
  from Optuna 5 on, set on the trial as ``trial.set_constraint("0", c0)``,
  ``("1", c1)``, ... (``NSGAIISampler``, ``TPESampler``, ``GPSampler`` read
  them with nothing more to give); before Optuna 5, kept as the trial's user
  attribute ``"constraints"``, which :func:`stored_constraints` reads back:
  give it to the sampler as its ``constraints_func``.

Optuna is an optional dependency (``pip install -e ".[optuna]"``),
imported when the first adapter is made. The space converts as
:func:`distributions` shows.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dasktune._checks import check_int
from dasktune.direction import Direction, parse_directions
from dasktune.optim.base import Optimizer, is_failure
from dasktune.space import Bool, Categorical, Dimension, Float, Int, Space

__all__ = ["OptunaSampler", "distributions", "import_optuna", "stored_constraints"]

#: the user attribute of a study's trial holding the constraints it returned
CONSTRAINTS_ATTR = "constraints"


def stored_constraints(trial: Any) -> tuple[float, ...]:
    """The constraint values an Optuna trial run by dasktune returned
    (``c <= 0`` satisfied): the ``constraints_func`` to give a sampler before
    Optuna 5 (from Optuna 5 on, samplers find them without it).

    >>> sampler = optuna.samplers.NSGAIISampler(
    ...     constraints_func=stored_constraints)  # doctest: +SKIP
    """
    if CONSTRAINTS_ATTR in trial.user_attrs:
        return tuple(trial.user_attrs[CONSTRAINTS_ATTR])
    named = getattr(trial, "constraints", None) or {}
    return tuple(named[key] for key in sorted(named, key=int))


def import_optuna() -> Any:
    """The ``optuna`` module, or an ``ImportError`` saying how to install it."""
    try:
        import optuna
    except ImportError as err:
        msg = (
            "OptunaSampler needs Optuna, which is not installed; "
            "pip install optuna (or dasktune's extra, from its clone: "
            "pip install -e '.[optuna]')"
        )
        raise ImportError(msg) from err
    return optuna


def _distribution(optuna: Any, name: str, dim: Dimension) -> Any:
    d = optuna.distributions
    if isinstance(dim, Float):
        return d.FloatDistribution(dim.low, dim.high, log=dim.log)
    if isinstance(dim, Int):
        return d.IntDistribution(dim.low, dim.high, log=dim.log)
    if isinstance(dim, Bool):
        return d.CategoricalDistribution([False, True])
    if isinstance(dim, Categorical):
        return d.CategoricalDistribution(dim.choices)
    msg = (
        f"parameter {name!r}: {type(dim).__name__} has no Optuna distribution; "
        "use Float, Int, Categorical or Bool"
    )
    raise TypeError(msg)


def distributions(space: Space | Mapping[str, Any]) -> dict[str, Any]:
    """Optuna distributions for a dasktune space.

    ``Float`` becomes ``FloatDistribution`` (``log`` kept; a ``power`` has no
    Optuna form and samples log-uniformly), ``Int`` ``IntDistribution``,
    ``Categorical`` ``CategoricalDistribution`` of its choices and ``Bool``
    ``CategoricalDistribution([False, True])``.
    """
    optuna = import_optuna()
    return {
        name: _distribution(optuna, name, dim)
        for name, dim in Space(space).dimensions.items()
    }


def _check_directions(directions: Sequence[str] | str | None) -> list[Direction]:
    if directions is None:
        return [Direction.MINIMIZE]
    return parse_directions([directions] if isinstance(directions, str) else directions)


def _needs_space(space: Space | None) -> Space:
    if space is None:
        msg = (
            "OptunaSampler needs a space: give it one, OptunaSampler(sampler, "
            "space), or to the search, Search(..., space={...})"
        )
        raise TypeError(msg)
    return space


class OptunaSampler(Optimizer):
    """An Optuna sampler as an ask/tell optimizer over a named space.

    Parameters
    ----------
    sampler : optuna.samplers.BaseSampler, optional
        Any Optuna sampler. Default: ``TPESampler(constant_liar=True,
        seed=seed)``, Optuna's advice for parallel runs.
    space : Space or dict, optional
        The named parameter space (``Float``, ``Int``, ``Categorical``,
        ``Bool``). By default the search's, taken when its run starts.
    directions : sequence of str, optional
        Each objective's direction in the study, ``["minimize"]``,
        ``["maximize"]``, or one per objective for several
        (``["minimize", "maximize"]``), the same as the search's. By default
        the search's, taken when its run starts (``["minimize"]`` on its own);
        given ones that differ from the search's are refused. The values
        told are dasktune's, always minimised (a ``Search(direction="maximize")``
        negates them), and are turned back so that :attr:`study` holds the
        objective's own values.
    seed : int, optional
        For the default sampler; recorded with the search. Give your own
        sampler its seed (``TPESampler(seed=0)``) for reproducible trials, and
        the same ``seed=`` here to have it recorded: Optuna does not expose a
        sampler's seed, so a run records ``None`` otherwise.
    n_trials : int, optional
        Finished after this many asks (default: never, as an Optuna study
        asked in a loop). The sampler is unbounded (see
        :mod:`dasktune.optim.base`): it proposes as many trials as it is
        asked before any value is told, each ``RUNNING`` in the study, and the
        asker bounds them (a search's window, its ``n_trials``).

    Attributes
    ----------
    study : optuna.Study
        The in-memory study: ``sampler.study.trials_dataframe()`` and
        ``optuna.visualization`` work on it.

    Raises
    ------
    ImportError
        If Optuna is not installed (with the command that installs it).
    TypeError, ValueError
        For a ``sampler`` that is not an Optuna sampler, or bad ``directions``.

    Examples
    --------
    >>> import optuna  # doctest: +SKIP
    >>> space = {"x": Float(-5, 5), "kind": Categorical(["a", "b"])}
    >>> sampler = OptunaSampler(optuna.samplers.TPESampler(
    ...     constant_liar=True, seed=0), space)  # doctest: +SKIP
    >>> Search("tpe", f, space=space).run(sampler, n_trials=200)  # doctest: +SKIP
    """

    def __init__(
        self,
        sampler: Any = None,
        space: Space | Mapping[str, Any] | None = None,
        *,
        directions: Sequence[str] | str | None = None,
        seed: int | None = None,
        n_trials: int | None = None,
    ) -> None:
        super().__init__()
        check_int("n_trials", n_trials, 1, optional=True)
        optuna = import_optuna()
        #: ``None`` until a search gives its own
        self.space: Space | None = None if space is None else Space(space)
        #: whether directions were given (else a search may set its own)
        self.directions_given = directions is not None
        checked = _check_directions(directions)
        self.directions = checked
        if sampler is None:
            sampler = optuna.samplers.TPESampler(constant_liar=True, seed=seed)
        elif not isinstance(sampler, optuna.samplers.BaseSampler):
            msg = (
                "sampler must be an Optuna sampler (optuna.samplers.TPESampler(), "
                f"CmaEsSampler(), ...), got {type(sampler).__name__}: {sampler!r}"
            )
            if isinstance(sampler, type) and issubclass(
                sampler, optuna.samplers.BaseSampler
            ):
                msg += f"; make one: {sampler.__name__}(...)"
            elif isinstance(sampler, optuna.Study):
                msg += "; give the study's sampler: study.sampler"
            raise TypeError(msg)
        elif isinstance(sampler, optuna.samplers.TPESampler) and not getattr(
            sampler, "_constant_liar", True
        ):
            warnings.warn(
                "a TPESampler without constant_liar=True ignores the trials in "
                "flight, so parallel asks cluster; Optuna advises "
                "TPESampler(constant_liar=True) for parallel runs",
                UserWarning,
                stacklevel=2,
            )
        self.sampler = sampler
        self.seed = seed
        self.n_trials = n_trials
        self._optuna = optuna
        self._distributions: dict[str, Any] = (
            {} if self.space is None else distributions(self.space)
        )
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._make_study(checked)
        self._asked: dict[int, Any] = {}  # dasktune number -> optuna Trial
        self._warned_constraints = False
        self._named_constraints = hasattr(optuna.trial.Trial, "set_constraint")

    def _make_study(self, directions: Sequence[str]) -> None:
        self.directions = [Direction(d) for d in directions]
        self.study = self._optuna.create_study(
            storage=self._optuna.storages.InMemoryStorage(),
            sampler=self.sampler,
            directions=directions,
        )
        self._signs = [Direction(d).sign for d in directions]
        self._sign = self._signs[0]
        self.n_objectives = len(directions)

    def adopt_directions(self, directions: Sequence[str]) -> None:
        """Take a search's directions, when none were given and nothing was
        asked yet (as a pruner takes the search's direction); given ones are
        kept, for the search to compare. Taking them makes a new
        :attr:`study`: take ``sampler.study`` after the run starts."""
        wanted = _check_directions(directions)
        if self.directions_given or wanted == self.directions:
            return
        if self._next_number or self.study.trials:
            return  # in use: the search refuses the difference
        self._make_study(wanted)

    def adopt_space(self, space: Space | None) -> None:
        """Take a search's space when none was given (a space given is kept).

        Raises
        ------
        TypeError
            When neither the sampler nor the search has a space.
        """
        if self.space is None:
            self.space = _needs_space(space)
            self._distributions = distributions(self.space)

    def spaces(self) -> list[tuple[Space, Optimizer]]:
        return [] if self.space is None else [(self.space, self)]

    def _the_space(self) -> Space:
        """The space asked in: the sampler's, or the search's it took."""
        return _needs_space(self.space)

    @property
    def finished(self) -> bool:
        """True once ``n_trials`` trials were asked (never without it)."""
        return self.n_trials is not None and self._next_number >= self.n_trials

    def _ask(self) -> dict[str, Any] | None:
        if self.finished:
            return None
        space = self._the_space()
        trial = self.study.ask(self._distributions)
        self._asked[self._next_number] = trial
        params = trial.params  # a copy made on each access: taken once
        return {name: params[name] for name in space.names}

    def _tell(self, number: int, params: Any, value: Any) -> None:
        trial = self._asked.pop(number)
        if is_failure(value):
            self.study.tell(trial, state=self._optuna.trial.TrialState.FAIL)
        else:
            self.study.tell(trial, self._own(value))

    def _tell_constrained(
        self, number: int, params: Any, value: Any, constraints: tuple[float, ...]
    ) -> None:
        trial = self._asked[number]
        if hasattr(trial, "set_constraint"):  # Optuna 5: what samplers read
            for i, c in enumerate(constraints):
                trial.set_constraint(str(i), c)
        else:
            trial.set_user_attr(CONSTRAINTS_ATTR, list(constraints))
            if not self._warned_constraints and not _takes_constraints(self.sampler):
                self._warned_constraints = True
                warnings.warn(
                    f"{type(self.sampler).__name__} was made without a "
                    "constraints_func, so it ignores the constraints trials "
                    "return; give it constraints_func="
                    "dasktune.optim.optuna.stored_constraints",
                    UserWarning,
                    stacklevel=3,
                )
        self._tell(number, params, value)

    def _own(self, value: Any) -> Any:
        """A minimised value told by dasktune, as the study's objective(s) gave it."""
        if self.n_objectives == 1:
            return self._sign * float(value)
        return [s * float(v) for s, v in zip(self._signs, value, strict=True)]

    def requeue(self, points: Sequence[Any]) -> int:
        """Enqueue a resumed search's interrupted trials in the study
        (``study.enqueue_trial``), so that its next asks propose them again;
        parameter sets outside the space are left out.

        Returns
        -------
        int
            How many were enqueued.
        """
        taken = 0
        space = self._the_space()
        for params in points:
            if space.contains(params):
                picked = {name: params[name] for name in space.names}
                self.study.enqueue_trial(picked, skip_if_exists=False)
                taken += 1
        return taken

    def warm_start(self, results: Iterable[tuple[Any, ...]]) -> int:
        """Add results not asked here (a resumed search's) to the study.

        Each ``(params, value)`` or ``(params, value, constraints)`` becomes a
        finished trial of :attr:`study` (``COMPLETE``, or ``FAIL`` for
        ``+inf``), with its constraints where the sampler's
        ``constraints_func`` finds them; parameter sets outside the space (a
        search whose earlier runs used another source) are left out.

        Returns
        -------
        int
            How many results were added.
        """
        create_trial = self._optuna.trial.create_trial
        state = self._optuna.trial.TrialState
        added = []
        space = self._the_space()
        for params, value, *rest in results:
            if not space.contains(params):
                continue
            picked = {name: params[name] for name in space.names}
            if is_failure(value):
                frozen = create_trial(
                    params=picked, distributions=self._distributions, state=state.FAIL
                )
            else:
                own = self._own(value)
                limits: dict[str, Any] = {}
                if rest and rest[0] is not None:
                    limits = (
                        {"constraints": {str(i): c for i, c in enumerate(rest[0])}}
                        if self._named_constraints
                        else {
                            "user_attrs": {CONSTRAINTS_ATTR: list(rest[0])},
                            # what the sampler's after_trial would have stored
                            "system_attrs": {"constraints": tuple(rest[0])},
                        }
                    )
                frozen = create_trial(
                    params=picked,
                    distributions=self._distributions,
                    **({"value": own} if self.n_objectives == 1 else {"values": own}),
                    **limits,
                )
            added.append(frozen)
        self.study.add_trials(added)
        return len(added)

    def describe(self) -> str:
        return (
            f"OptunaSampler({type(self.sampler).__name__}, "
            f"directions={self.directions}, seed={self.seed})"
        )


def _takes_constraints(sampler: Any) -> bool:
    """Whether an Optuna sampler was given a ``constraints_func``."""
    return getattr(sampler, "_constraints_func", None) is not None
