"""The ask/tell protocol every dasktune optimizer speaks.

An optimizer proposes trials with :meth:`Optimizer.ask` and is told their
values with :meth:`Optimizer.tell`, in any order. The contract, written once
here on the base class and checked for every optimizer:

- ``ask()`` returns a :class:`Trial` ``(number, params)`` — so cotengra-style
  ``n, params = opt.ask()`` works — or ``None`` when nothing can be proposed until
  a pending trial is told, or when the optimizer is finished (``finished`` tells
  the two apart). ``ask()`` never blocks forever.
- Numbers count from 0 in the order of the asks.
- ``tell(trial_or_number, value)`` takes the trial or its number, once each, in
  any order; values are minimised (a failed trial is told ``+inf``). An
  optimizer of several objectives (``n_objectives`` > 1) is told a tuple of
  that many values, each minimised (still ``+inf`` alone for a failure).
- ``tell(..., constraints=(c0, c1, ...))`` passes the constraint values a
  trial returned (``c <= 0`` satisfied); optimizers that use them (the Optuna
  adapter) override ``_tell_constrained``, the others ignore them.
- ``close()`` releases what the optimizer holds (threads, files); ``with``
  does it too. A closed optimizer refuses to ask.
- ``pause()`` releases its threads but keeps the optimizer usable: the next
  ``ask()`` starts again (a pool of scipy replicas starts new ones, keeping
  what it was told). For loops that stop and resume an optimizer, such as
  cotengra's, whose ``cleanup`` ends every search; trials asked before a pause
  and never told are given up. Nothing to release: it does nothing.

What the driver reads of an optimizer is declared here too, with its default,
and nowhere read by guesswork:

- ``batch_size`` (0): how many trials of the current batch are not yet told; a
  batch-synchronous optimizer (an SPSA iteration, a DE generation) has its
  whole batch sent at once;
- ``wants_values`` (True): False for sources that ignore what they are told
  (a grid, a list), so the driver need not wait for trials another driver holds;
- ``seed`` (None): recorded with each run of a search;
- ``n_objectives`` (1): how many values ``tell`` takes per trial;
- ``describe()``: a one-line description, recorded with each run;
- ``warm_start(results)`` (ignores them, returns 0): teach the optimizer
  results it did not ask for — the done and failed trials a store already
  holds when a search resumes — as ``(params, value)`` pairs, the parameters
  as recorded and the value minimised (``+inf`` for a failed trial), or
  ``(params, value, constraints)`` for a trial that returned constraints. Model-based
  samplers (the Optuna and Nevergrad adapters) learn from them; the rest
  ignore them, since a trial they propose again is answered from the store;
- ``requeue(points)`` (ignores them, returns 0): propose a resumed search's
  interrupted trials first;
- ``directions`` (None) and ``directions_given`` (True): the directions of the
  optimizer's own study, if it keeps one (the Optuna adapter), which a search
  compares with its own; ``adopt_directions(directions)`` (ignores them) takes
  a search's directions when none were given;
- ``adopt_space(space)`` (ignores it): take a search's space when none was
  given; ``spaces()`` (none): the named spaces the optimizer proposes points
  of, each with the optimizer holding it, which a search checks against its
  own before anything runs.

How many trials ``ask()`` proposes before it needs a value is the optimizer's
to say, and one of two things:

- it returns ``None`` until it is told some (a batch: an SPSA iteration, a DE
  generation; Nevergrad's ``num_workers``), keeping ``batch_size`` > 0 while a
  batch the driver should send whole is out;
- or it is *unbounded*: a sampler that can always propose another point (an
  Optuna sampler, a ``RandomSampler``) keeps proposing, and keeps
  ``batch_size`` at 0 — whoever asks bounds what is in flight (the driver's
  window, ``max_in_flight``) — and it is ``finished`` only once a budget it was
  given (``n_trials=``) is spent.

Subclasses implement ``_ask()`` (return the parameters, or ``None``) and
``_tell(number, params, value)``, and may override ``finished``,
``batch_size`` and ``describe``, and the hooks above. An object of your own
that is not an :class:`Optimizer` works anywhere an optimizer does if it has
all of :class:`AskTell`'s members; the hooks beyond them are read only from an
:class:`Optimizer`, and take their defaults for such an object.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, Self, runtime_checkable

import numpy as np

from dasktune._values import as_constraints, as_value, as_values
from dasktune.records import Trial
from dasktune.space import Space

__all__ = [
    "AskTell",
    "IterableSource",
    "Optimizer",
    "RandomSampler",
    "Trial",
    "missing_members",
]


@runtime_checkable
class AskTell(Protocol):
    """What the driver loop needs of an optimizer (see the module notes)."""

    seed: int | None
    wants_values: bool
    n_objectives: int

    def ask(self) -> Trial | None: ...

    def tell(
        self,
        trial: Trial | int,
        value: Any,
        constraints: Sequence[float] | None = None,
    ) -> None: ...

    @property
    def finished(self) -> bool: ...

    @property
    def batch_size(self) -> int: ...

    def describe(self) -> str: ...

    def close(self) -> None: ...


def is_failure(value: Any) -> bool:
    """Whether a told value is a failure's ``+inf`` (told alone, whatever the
    number of objectives)."""
    return isinstance(value, float | int) and math.isinf(value) and value > 0


def missing_members(obj: object) -> list[str]:
    """The :class:`AskTell` members ``obj`` lacks (empty for an optimizer).

    >>> missing_members(object())[:2]
    ['ask', 'batch_size']
    """
    members = ("ask", "batch_size", "close", "describe", "finished",
               "n_objectives", "seed", "tell", "wants_values")  # fmt: skip
    return [m for m in members if not hasattr(obj, m)]


class Optimizer:
    """Base class writing the ask/tell contract once (see the module notes).

    Attributes
    ----------
    seed : int or None
        The seed the optimizer was made with, recorded with a search.
    wants_values : bool
        False for sources that ignore what they are told (a grid, a list), so
        the driver need not wait for trials another driver is evaluating.
    n_objectives : int
        How many values ``tell`` takes per trial (1; more for a sampler of
        several objectives).
    directions : list of str or None
        The directions of the optimizer's own study (None: it keeps none, and
        minimises what it is told).
    directions_given : bool
        Whether ``directions`` were given when it was made (else a search may
        give its own, through :meth:`adopt_directions`).
    """

    seed: int | None = None
    wants_values: bool = True
    n_objectives: int = 1
    directions: Sequence[str] | None = None
    directions_given: bool = True

    def __init__(self) -> None:
        self._pending: dict[int, Any] = {}
        self._next_number = 0
        self._closed = False

    # -- the template ----------------------------------------------------------

    def ask(self) -> Trial | None:
        """Propose the next trial, or ``None`` (see the module notes)."""
        if self._closed:
            msg = f"{type(self).__name__} is closed; create a new one to ask again"
            raise RuntimeError(msg)
        params = self._ask()
        if params is None:
            return None
        trial = Trial(self._next_number, params)
        self._next_number += 1
        self._pending[trial.number] = params
        return trial

    def tell(
        self,
        trial: Trial | int,
        value: Any,
        constraints: Sequence[float] | None = None,
    ) -> None:
        """Report the value of a pending trial (its ``Trial`` or its number).

        Parameters
        ----------
        trial : Trial or int
        value : float or sequence of float
            The minimised value; ``n_objectives`` of them for several
            objectives; ``+inf`` (or NaN) for a failed trial.
        constraints : sequence of float, optional
            The trial's constraint values (``c <= 0`` satisfied).
        """
        number = trial.number if isinstance(trial, Trial) else trial
        if type(number) is not int:  # the common case checked first: an int
            if isinstance(number, bool) or not isinstance(number, int | np.integer):
                msg = f"tell() takes a Trial or a trial number, got {trial!r}"
                raise TypeError(msg)
            number = int(number)
        if number not in self._pending:
            asked = 0 <= number < self._next_number
            state = "was already told" if asked else "was never asked"
            msg = f"trial {number} {state}; tell() takes each asked trial once"
            raise ValueError(msg)
        told: Any
        if self.n_objectives == 1 or is_failure(value):
            # the common case first: a float, told as it is
            told = (
                value
                if type(value) is float
                else as_value(value, f"the value told for trial {number}")
            )
            if math.isnan(told):
                told = math.inf
        else:
            told = as_values(
                value, self.n_objectives, f"the values told for trial {number}"
            )
            if any(math.isnan(v) for v in told):
                told = math.inf
        limits = None if constraints is None else as_constraints(constraints)
        params = self._pending.pop(number)
        if limits is None:
            self._tell(number, params, told)
        else:
            self._tell_constrained(number, params, told, limits)

    @property
    def n_pending(self) -> int:
        """Trials asked and not yet told."""
        return len(self._pending)

    @property
    def finished(self) -> bool:
        """True when the optimizer will propose nothing more."""
        return False

    @property
    def batch_size(self) -> int:
        """Trials of the current batch not yet told (0: no batch; asked one by
        one as the window frees)."""
        return 0

    def close(self) -> None:
        """Release what the optimizer holds; idempotent."""
        self._closed = True

    def pause(self) -> None:
        """Release the threads the optimizer holds, staying usable: the next
        ``ask()`` starts again (see the module notes). Here: nothing to release."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> str:
        """A one-line description, stored with a search."""
        return type(self).__name__

    def requeue(self, points: Sequence[Any]) -> int:
        """Propose ``points`` first: a resumed search's interrupted trials
        (queued, or running under a driver that is gone), which an adaptive
        optimizer would otherwise never ask again.

        Parameters
        ----------
        points : sequence of dict
            Recorded parameter sets, in the order they were first asked.

        Returns
        -------
        int
            How many it will propose (0: it ignores them, the default; the
            trials then stay as they are until a source proposes them).
        """
        return 0

    def warm_start(self, results: Iterable[tuple[Any, ...]]) -> int:
        """Learn results this optimizer did not ask for (see the module notes).

        Parameters
        ----------
        results : iterable of (dict, float) or (dict, float, tuple)
            Recorded parameters and their minimised value (``+inf``: failed; a
            tuple for several objectives), and their constraints if any.

        Returns
        -------
        int
            How many results the optimizer took (0: it ignores them).
        """
        return 0

    def adopt_directions(self, directions: Sequence[str]) -> None:
        """Take a search's directions when none were given (an Optuna
        adapter's study); by default the optimizer keeps no directions and
        ignores them."""

    def adopt_space(self, space: Space | None) -> None:
        """Take a search's space when none was given (an Optuna adapter made
        without one); by default the optimizer ignores it."""

    def spaces(self) -> list[tuple[Space, Optimizer]]:
        """The named spaces this optimizer proposes points of, each with the
        optimizer holding it (its own; a selector's samplers'), which a search
        checks against its own before anything runs. By default none: it
        proposes vectors, or points of no declared space."""
        return []

    # -- for subclasses --------------------------------------------------------

    def _ask(self) -> Any | None:
        raise NotImplementedError

    def _tell(self, number: int, params: Any, value: float) -> None:
        pass

    def _tell_constrained(
        self, number: int, params: Any, value: Any, constraints: tuple[float, ...]
    ) -> None:
        """``_tell`` with the trial's constraints; by default they are ignored
        (the optimizer minimises the value; the search still never reports an
        infeasible trial as its best)."""
        self._tell(number, params, value)


class IterableSource(Optimizer):
    """Trials from any iterable of parameter dicts.

    A ``ParameterGrid``, a ``ParameterSampler``, a list or a generator. What it
    is told is ignored; it is finished when the iterable is exhausted.
    """

    wants_values = False

    def __init__(self, iterable: Iterable[Mapping[str, Any]]) -> None:
        super().__init__()
        self._source = iterable
        self._iterator: Iterator[Mapping[str, Any]] = iter(iterable)
        self._exhausted = False

    def _ask(self) -> dict[str, Any] | None:
        if self._exhausted:
            return None
        try:
            params = next(self._iterator)
        except StopIteration:
            self._exhausted = True
            return None
        if type(params) is not dict and not isinstance(params, Mapping):
            msg = (
                f"a search source yields parameter dicts, got "
                f"{type(params).__name__}: {params!r}"
            )
            raise TypeError(msg)
        return dict(params)

    @property
    def finished(self) -> bool:
        return self._exhausted

    def describe(self) -> str:
        return f"IterableSource({type(self._source).__name__})"


class RandomSampler(Optimizer):
    """Independent random draws from a named space.

    Parameters
    ----------
    space : Space or dict
    seed : int or numpy.random.Generator, optional
    n_trials : int, optional
        Finished after this many asks (default: never).
    """

    wants_values = False

    def __init__(
        self,
        space: Space | Mapping[str, Any],
        seed: int | np.random.Generator | None = None,
        n_trials: int | None = None,
    ) -> None:
        super().__init__()
        self.space = Space(space)
        self.seed = seed if isinstance(seed, int) else None
        self.rng = np.random.default_rng(seed)
        self.n_trials = n_trials

    def _ask(self) -> dict[str, Any] | None:
        if self.finished:
            return None
        return self.space.sample(self.rng)

    @property
    def finished(self) -> bool:
        return self.n_trials is not None and self._next_number >= self.n_trials

    def spaces(self) -> list[tuple[Space, Optimizer]]:
        return [(Space(self.space), self)]

    def describe(self) -> str:
        return f"RandomSampler(seed={self.seed})"
