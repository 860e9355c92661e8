"""Pruners: stop bad trials early from the values they report as they learn.

A pruner lives on the driver. A trial reports ``(step, value)`` as it trains (a
loss after each epoch, say); the driver hands each report to the pruner, whose
:meth:`Pruner.report` says whether to stop the trial, and why. The protocol,
small enough to write your own pruner against:

- ``report(number, step, value) -> Verdict``: record a report and decide. Steps
  of one trial must increase strictly and values be finite (``ValueError``
  otherwise). A :class:`Verdict` is truthy when the trial should stop, and
  carries a one-line ``reason`` either way;
- ``observe(number, step, value)``: record a report without deciding (what
  :meth:`Pruner.restore` replays); a step not beyond the trial's last is ignored;
- ``complete(number, value=None)``: the trial finished without being pruned;
- ``restore(reports, completed)``: rebuild the state of a resumed search from
  its stored curves, replayed in the order they were reported.

Subclasses implement ``_decide(number, step)`` (the trial's curve is in
``self.curves[number]``, the finished trials in ``self.completed``); the
records and the checks are the base class's. Values are minimised unless
the search is to maximise them (a pruner takes the search's direction, as
Optuna's take the study's). Decisions depend only on the reports and their
order (and :class:`HyperbandPruner`'s ``seed``), so replaying a search's
stored curves gives the same decisions.

The three pruners follow Optuna's semantics (``MedianPruner``,
``SuccessiveHalvingPruner``, ``HyperbandPruner``):

- :class:`MedianPruner` (and :class:`PercentilePruner`): stop a trial whose best
  value so far is worse than the median of the completed trials' values at the
  same step;
- :class:`SuccessiveHalvingPruner`: asynchronous successive halving, ASHA (Li et
  al. 2020, "A System for Massively Parallel Hyperparameter Tuning"): rungs at
  ``min_resource * eta**k`` steps; a trial reaching a rung goes on only if it is
  in the top ``1/eta`` of the trials that reached that rung so far — decided at
  once, never waiting for a rung to fill;
- :class:`HyperbandPruner`: Hyperband's brackets (Li et al. 2018) of successive
  halving, each starting at a larger resource; each trial is assigned to a
  bracket by a random draw seeded with ``(seed, number)``, so the assignment does
  not depend on the order in which trials start.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from dasktune.direction import Direction

__all__ = [
    "HyperbandPruner",
    "MedianPruner",
    "PercentilePruner",
    "Pruner",
    "SuccessiveHalvingPruner",
    "Verdict",
    "check_report",
]


@dataclass(frozen=True)
class Verdict:
    """A pruner's decision on one report: stop the trial or not, and why.

    Truthy when the trial should stop.

    >>> bool(Verdict(True, "worse than the median"))
    True
    """

    prune: bool
    reason: str

    def __bool__(self) -> bool:
        return self.prune


def _check_direction(direction: str | None) -> Direction:
    if direction is None:
        return Direction.MINIMIZE  # until a search gives its own
    return Direction.parse(direction)


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        msg = f"{name} must be an integer >= {low}, got {value!r}"
        raise TypeError(msg)
    if value < low:
        msg = f"{name} must be an integer >= {low}, got {value!r}"
        raise ValueError(msg)
    return int(value)


def _resources(min_resource: Any, max_resource: Any) -> tuple[int, int | None]:
    """``min_resource`` and ``max_resource`` checked: integers, min <= max."""
    lowest = _check_int("min_resource", min_resource, 1)
    if max_resource is None:
        return lowest, None
    highest = _check_int("max_resource", max_resource, 1)
    if highest < lowest:
        msg = f"max_resource ({highest}) must be >= min_resource ({lowest})"
        raise ValueError(msg)
    return lowest, highest


def _fmt(value: float) -> str:
    return f"{value:.6g}"


class Pruner:
    """The base of every pruner: the records, the checks, the protocol.

    Parameters
    ----------
    direction : {"minimize", "maximize"}, optional
        Whether lower or higher reported values are better. By default the
        search's direction, as Optuna's pruners take the study's (a pruner
        used on its own minimises); a direction given that is not the
        search's is refused by ``Search.run``.
    """

    def __init__(self, *, direction: str | None = None) -> None:
        #: the direction given (``None``: the search's)
        self.given_direction = (
            None if direction is None else _check_direction(direction)
        )
        self.direction = _check_direction(direction)
        #: number -> {step: value}, in the order reported
        self.curves: dict[int, dict[int, float]] = {}
        #: the trials that finished without being pruned
        self.completed: set[int] = set()

    def report(self, number: int, step: int, value: float) -> Verdict:
        """Record trial ``number``'s ``value`` at ``step`` and decide.

        Raises
        ------
        ValueError
            If ``value`` is not finite, or ``step`` does not come after the
            trial's last reported step.
        """
        step, value = check_report(step, value)
        last = self.last_step(number)
        if last is not None and step <= last:
            msg = (
                f"trial {number} reported step {step} after step {last}; steps must "
                "increase (report each step once, in order)"
            )
            raise ValueError(msg)
        self.observe(number, step, value)
        return self._decide(number, step)

    def observe(self, number: int, step: int, value: float) -> None:
        """Record a report without deciding; a step not beyond the last is ignored."""
        curve = self.curves.setdefault(number, {})
        last = self.last_step(number)
        if last is not None and step <= last:
            return
        curve[step] = float(value)
        self._observed(number, step, float(value))

    def complete(self, number: int, value: float | None = None) -> None:
        """Trial ``number`` finished without being pruned (``value``: its result)."""
        self.completed.add(number)

    def restore(
        self,
        reports: Iterable[tuple[int, int, float]],
        completed: Iterable[int] = (),
    ) -> None:
        """Rebuild the state from stored ``(number, step, value)`` reports.

        ``reports`` come in the order they were reported (the store's order);
        ``completed`` are the numbers of the trials that finished unpruned.
        """
        for number, step, value in reports:
            self.observe(int(number), int(step), float(value))
        for number in completed:
            self.complete(int(number))

    def for_search(self, name: str, direction: str) -> None:
        """Take the direction of search ``name`` (before any report).

        Raises
        ------
        ValueError
            When the pruner was given the other direction: it would stop the
            best trials and keep the worst.
        """
        if self.given_direction not in (None, direction):
            msg = (
                f"{type(self).__name__}(direction={self.given_direction!r}) on "
                f"search {name!r}, which is to {direction} its value: it would "
                "stop the best trials and keep the worst; leave direction out (a "
                "pruner takes the search's) or give the search's"
            )
            raise ValueError(msg)
        if self.curves and direction != self.direction:
            msg = (
                f"{type(self).__name__} holds the curves of {len(self.curves)} "
                f"trials to {self.direction} and search {name!r} is to {direction} "
                "its value: make a new pruner for this search"
            )
            raise ValueError(msg)
        self._set_direction(direction)

    def _set_direction(self, direction: str) -> None:
        self.direction = Direction(direction)

    def last_step(self, number: int) -> int | None:
        """The last step trial ``number`` reported, or ``None``."""
        curve = self.curves.get(number)
        return next(reversed(curve)) if curve else None

    def _better(self, a: float, b: float) -> bool:
        """Whether ``a`` is at least as good as ``b``."""
        return a <= b if self.direction == "minimize" else a >= b

    def _observed(self, number: int, step: int, value: float) -> None:
        """Hook: a new report was recorded (state beyond the curves)."""

    def _decide(self, number: int, step: int) -> Verdict:
        raise NotImplementedError

    def describe(self) -> str:
        """A one-line description, recorded with a search's run."""
        return f"{type(self).__name__}(direction={self.direction!r})"


def check_report(step: object, value: object) -> tuple[int, float]:
    """A report's step and value, checked (by the trial's handle and the pruner).

    >>> check_report(3, 0.5)
    (3, 0.5)
    """
    if isinstance(step, bool) or not isinstance(step, int | np.integer):
        msg = (
            f"report(step, value): step must be an integer (an epoch or iteration "
            f"count), got {type(step).__name__}: {step!r}; the step comes first "
            "(Optuna's trial.report(value, step) is trial.report(step, value) "
            "here; keywords work in both: report(step=..., value=...))"
        )
        raise TypeError(msg)
    if step < 0:
        msg = f"report(step, value): step must be >= 0, got {step}"
        raise ValueError(msg)
    try:
        if isinstance(value, str | bytes):
            raise TypeError(value)
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as err:
        msg = (
            f"report(step, value): value must be a real number, got "
            f"{type(value).__name__}: {value!r}"
        )
        raise TypeError(msg) from err
    if not math.isfinite(number):
        msg = (
            f"report(step, value): value must be finite, got {number} at step "
            f"{step}; report a finite loss, or raise to fail the trial"
        )
        raise ValueError(msg)
    return int(step), number


class PercentilePruner(Pruner):
    """Stop a trial whose best value so far is worse than a percentile of the
    completed trials' values at the same step (Optuna's ``PercentilePruner``).

    Parameters
    ----------
    percentile : float
        In [0, 100]; 50 is the median rule. For ``minimize`` a trial is stopped
        when its best value is above the ``percentile``-th percentile (for
        ``maximize``: below the ``100 - percentile``-th).
    n_startup_trials : int, default 5
        No pruning until this many trials have completed.
    n_warmup_steps : int, default 0
        No pruning at steps below this.
    interval_steps : int, default 1
        Check once per interval of steps after the warm-up: at the first step a
        trial reports in each interval.
    n_min_trials : int, default 1
        No pruning at a step fewer completed trials reported.
    direction : {"minimize", "maximize"}, optional
        The search's by default (see :class:`Pruner`).
    """

    def __init__(
        self,
        percentile: float,
        n_startup_trials: int = 5,
        n_warmup_steps: int = 0,
        interval_steps: int = 1,
        *,
        n_min_trials: int = 1,
        direction: str | None = None,
    ) -> None:
        super().__init__(direction=direction)
        if not 0.0 <= float(percentile) <= 100.0:
            msg = f"percentile must be in [0, 100], got {percentile!r}"
            raise ValueError(msg)
        self.percentile = float(percentile)
        self.n_startup_trials = _check_int("n_startup_trials", n_startup_trials, 0)
        self.n_warmup_steps = _check_int("n_warmup_steps", n_warmup_steps, 0)
        self.interval_steps = _check_int("interval_steps", interval_steps, 1)
        self.n_min_trials = _check_int("n_min_trials", n_min_trials, 1)

    def _first_in_interval(self, number: int, step: int) -> bool:
        window = (step - self.n_warmup_steps) // self.interval_steps
        return not any(
            s >= self.n_warmup_steps
            and (s - self.n_warmup_steps) // self.interval_steps == window
            for s in self.curves[number]
            if s < step
        )

    def _decide(self, number: int, step: int) -> Verdict:
        done = len(self.completed)
        if done < self.n_startup_trials:
            reason = f"{done} of {self.n_startup_trials} startup trials completed"
            return Verdict(False, reason)
        if step < self.n_warmup_steps:
            return Verdict(False, f"step {step} is a warm-up step")
        if not self._first_in_interval(number, step):
            return Verdict(False, f"step {step} is not a check step")
        others = [
            self.curves[m][step]
            for m in self.completed
            if m != number and step in self.curves.get(m, {})
        ]
        if len(others) < self.n_min_trials:
            reason = f"{len(others)} completed trials reported step {step}"
            return Verdict(False, reason)
        q = self.percentile if self.direction == "minimize" else 100 - self.percentile
        cut = float(np.percentile(others, q))
        curve = [v for s, v in self.curves[number].items() if s <= step]
        best = min(curve) if self.direction == "minimize" else max(curve)
        what = "median" if self.percentile == 50 else f"{_fmt(q)}th percentile"
        facts = (
            f"best value {_fmt(best)} up to step {step}, {what} of {len(others)} "
            f"completed trials at that step {_fmt(cut)}"
        )
        if self._better(best, cut):
            return Verdict(False, facts)
        return Verdict(True, f"{facts}: worse")

    def describe(self) -> str:
        return (
            f"{type(self).__name__}(percentile={self.percentile:g}, "
            f"n_startup_trials={self.n_startup_trials}, "
            f"n_warmup_steps={self.n_warmup_steps}, "
            f"interval_steps={self.interval_steps}, direction={self.direction!r})"
        )


class MedianPruner(PercentilePruner):
    """The median rule: :class:`PercentilePruner` at the 50th percentile.

    >>> pruner = MedianPruner(n_startup_trials=2)
    >>> for number, loss in [(0, 1.0), (1, 3.0)]:
    ...     _ = pruner.report(number, 0, loss)
    ...     pruner.complete(number)
    >>> verdict = pruner.report(2, 0, 2.5)
    >>> bool(verdict), verdict.reason
    (True, 'best value 2.5 up to step 0, median of 2 completed trials at that step 2: worse')
    """

    def __init__(
        self,
        n_startup_trials: int = 5,
        n_warmup_steps: int = 0,
        interval_steps: int = 1,
        *,
        n_min_trials: int = 1,
        direction: str | None = None,
    ) -> None:
        super().__init__(
            50.0, n_startup_trials, n_warmup_steps, interval_steps,
            n_min_trials=n_min_trials, direction=direction,
        )  # fmt: skip

    def describe(self) -> str:
        return (
            f"MedianPruner(n_startup_trials={self.n_startup_trials}, "
            f"n_warmup_steps={self.n_warmup_steps}, "
            f"interval_steps={self.interval_steps}, direction={self.direction!r})"
        )


class SuccessiveHalvingPruner(Pruner):
    """Asynchronous successive halving (ASHA; Li et al. 2020).

    Rung ``k`` sits at ``min_resource * reduction_factor**(min_early_stopping_rate
    + k)`` steps, below ``max_resource``. When a trial first reports a step at or
    past a rung, its value there joins the rung, and the trial goes on only if
    that value is in the top ``1/reduction_factor`` of the values the rung holds
    (its own included; the first trials to reach a rung go on while they are the
    best of it). Nothing waits for a rung to fill.

    Parameters
    ----------
    min_resource : int, default 1
        The steps every trial runs before its first check.
    reduction_factor : int, default 3
        ``eta``: one trial in ``eta`` goes on from each rung.
    min_early_stopping_rate : int, default 0
        ``s``: the first rung is at ``min_resource * eta**s``.
    max_resource : int, optional
        The steps of a complete trial: no rung at or beyond it.
    direction : {"minimize", "maximize"}, optional
        The search's by default (see :class:`Pruner`).

    Examples
    --------
    >>> asha = SuccessiveHalvingPruner(min_resource=1, reduction_factor=2)
    >>> asha.report(0, 1, 0.5).prune
    False
    >>> asha.report(1, 1, 0.9).reason
    'value 0.9 at rung 0 (step 1), top 1/2 of 2 trials there ends at 0.5: not in it'
    """

    def __init__(
        self,
        min_resource: int = 1,
        reduction_factor: int = 3,
        min_early_stopping_rate: int = 0,
        max_resource: int | None = None,
        *,
        direction: str | None = None,
    ) -> None:
        super().__init__(direction=direction)
        self.min_resource, self.max_resource = _resources(min_resource, max_resource)
        self.reduction_factor = _check_int("reduction_factor", reduction_factor, 2)
        self.min_early_stopping_rate = _check_int(
            "min_early_stopping_rate", min_early_stopping_rate, 0
        )
        #: rung -> {number: value at the rung}, in the order trials reached it
        self.rungs: dict[int, dict[int, float]] = {}
        self._entered: dict[int, list[int]] = {}  # number -> rungs of its last report

    def rung_resource(self, rung: int) -> int:
        """The step at which rung ``rung`` checks trials."""
        return self.min_resource * self.reduction_factor ** (
            self.min_early_stopping_rate + rung
        )

    def _observed(self, number: int, step: int, value: float) -> None:
        entered = []
        rung = sum(number in r for r in self.rungs.values())
        while True:
            resource = self.rung_resource(rung)
            if resource > step or (
                self.max_resource is not None and resource >= self.max_resource
            ):
                break
            self.rungs.setdefault(rung, {})[number] = value
            entered.append(rung)
            rung += 1
        self._entered[number] = entered

    def _decide(self, number: int, step: int) -> Verdict:
        entered = self._entered.pop(number, [])
        if not entered:
            return Verdict(False, f"step {step} reaches no new rung")
        eta = self.reduction_factor
        for rung in entered:
            values = sorted(
                self.rungs[rung].values(), reverse=self.direction == "maximize"
            )
            cut = values[max(len(values) // eta - 1, 0)]
            value = self.rungs[rung][number]
            facts = (
                f"value {_fmt(value)} at rung {rung} (step "
                f"{self.rung_resource(rung)}), top 1/{eta} of {len(values)} trials "
                f"there ends at {_fmt(cut)}"
            )
            if not self._better(value, cut):
                return Verdict(True, f"{facts}: not in it")
        return Verdict(False, f"{facts}: promoted")

    def describe(self) -> str:
        return (
            f"SuccessiveHalvingPruner(min_resource={self.min_resource}, "
            f"reduction_factor={self.reduction_factor}, "
            f"min_early_stopping_rate={self.min_early_stopping_rate}, "
            f"max_resource={self.max_resource}, direction={self.direction!r})"
        )


class HyperbandPruner(Pruner):
    """Hyperband (Li et al. 2018): brackets of asynchronous successive halving.

    Bracket ``b`` (of ``floor(log_eta(max_resource / min_resource)) + 1``) is a
    :class:`SuccessiveHalvingPruner` whose first rung is at ``min_resource *
    eta**b``: bracket 0 prunes hardest, the last runs every trial to
    ``max_resource``. A trial is assigned to a bracket by a draw from
    ``numpy.random.default_rng([seed, number])``, weighted as Hyperband sizes its
    brackets (``ceil((s_max + 1) / (s + 1) * eta**s)`` trials for a bracket of
    ``s`` halvings), and is compared only with trials of its bracket.

    Parameters
    ----------
    min_resource : int, default 1
    max_resource : int
        The steps of a complete trial.
    reduction_factor : int, default 3
    seed : int, optional
        Seeds the bracket assignment (a random seed is drawn and kept in
        ``self.seed`` when not given; pass it back to reproduce a search).
    direction : {"minimize", "maximize"}, optional
        The search's by default (see :class:`Pruner`).
    """

    def __init__(
        self,
        min_resource: int = 1,
        max_resource: int = 81,
        reduction_factor: int = 3,
        *,
        seed: int | None = None,
        direction: str | None = None,
    ) -> None:
        super().__init__(direction=direction)
        lowest, highest = _resources(min_resource, max_resource)
        assert highest is not None
        self.min_resource, self.max_resource = lowest, highest
        self.reduction_factor = _check_int("reduction_factor", reduction_factor, 2)
        s_max = 0
        while min_resource * reduction_factor ** (s_max + 1) <= max_resource:
            s_max += 1
        self.brackets = [
            SuccessiveHalvingPruner(
                min_resource, reduction_factor, b, max_resource, direction=direction
            )
            for b in range(s_max + 1)
        ]
        sizes = [
            math.ceil((s_max + 1) / (s_max - b + 1) * reduction_factor ** (s_max - b))
            for b in range(s_max + 1)
        ]
        self.weights = np.array(sizes, dtype=float) / sum(sizes)
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        self.seed = _check_int("seed", seed, 0)
        self._bracket: dict[int, int] = {}

    def _set_direction(self, direction: str) -> None:
        self.direction = Direction(direction)
        for bracket in self.brackets:
            bracket._set_direction(direction)

    def bracket_of(self, number: int) -> int:
        """The bracket of trial ``number``: the same for a seed, in any order."""
        bracket = self._bracket.get(number)
        if bracket is None:
            rng = np.random.default_rng([self.seed, number])
            bracket = self._bracket[number] = int(
                rng.choice(len(self.brackets), p=self.weights)
            )
        return bracket

    def _observed(self, number: int, step: int, value: float) -> None:
        self.brackets[self.bracket_of(number)].observe(number, step, value)

    def _decide(self, number: int, step: int) -> Verdict:
        b = self.bracket_of(number)
        verdict = self.brackets[b]._decide(number, step)
        return Verdict(verdict.prune, f"bracket {b}: {verdict.reason}")

    def complete(self, number: int, value: float | None = None) -> None:
        super().complete(number, value)
        self.brackets[self.bracket_of(number)].complete(number, value)

    def describe(self) -> str:
        return (
            f"HyperbandPruner(min_resource={self.min_resource}, "
            f"max_resource={self.max_resource}, "
            f"reduction_factor={self.reduction_factor}, seed={self.seed}, "
            f"direction={self.direction!r})"
        )
