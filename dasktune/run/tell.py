"""Telling the optimizer a trial's value, the way the run counts it.

:class:`Teller` turns a trial's recorded value into what the optimizer is
told: minimised (``sign``, or each objective's ``signs``), a tuple for
several objectives, ``+inf`` for a failure, with the constraints when the
objective returned some. It keeps the run's best (one objective, feasible
trials only) on the report, and the run's Pareto front (several objectives).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

from dasktune._values import feasible
from dasktune.optim.base import AskTell
from dasktune.records import Trial
from dasktune.run.summary import RunReport

__all__ = ["Teller"]


class Asked(Protocol):
    """A trial claimed by the driver and the asks that wait for its value."""

    param_hash: str
    record: dict[str, Any]
    trials: list[Trial]


class Teller:
    """Tell ``optimizer`` the trials' values; keep the run's best and front.

    Parameters
    ----------
    optimizer : AskTell
    sign : float
        ``1`` to minimise, ``-1`` to maximise (one objective).
    signs : sequence of float, optional
        Each objective's sign, for several objectives.
    """

    def __init__(
        self, optimizer: AskTell, sign: float, signs: Sequence[float] | None
    ) -> None:
        self.optimizer, self.sign, self.signs = optimizer, sign, signs
        # this run's Pareto front (minimised), by trial: a trial told again (a
        # repeat, a reused result) is on it once, as search.best counts it
        self.front: dict[str, tuple[float, ...]] = {}

    def tell(
        self,
        pending: Asked,
        value: float | None,
        report: RunReport,
        *,
        best: bool = True,
        values: tuple[float, ...] | None = None,
        constraints: tuple[float, ...] | None = None,
    ) -> None:
        """Tell the optimizer a trial's value (``None``: failed, told ``+inf``):
        each objective's, minimised, as a tuple when there are several; with
        the constraints when the objective returned some. Only a feasible
        trial of one objective can be the run's best."""
        told: Any
        satisfied = feasible(constraints)
        if value is None:
            told = math.inf
        elif self.signs is None:
            told = self.sign * value
            if best and satisfied and told < report.best_value:
                report.best_value, report.best_params = told, pending.record
        elif values is None or len(values) != len(self.signs):
            told = math.inf  # a pruned trial of several objectives: no values
        else:
            told = tuple(s * v for s, v in zip(self.signs, values, strict=True))
            if best and satisfied:
                self.on_front(pending.param_hash, told)
            if self.optimizer.n_objectives == 1:
                # a source that ignores values (a grid): the first objective's
                told = told[0]
        for trial in pending.trials:
            if constraints is None:
                self.optimizer.tell(trial, told)
            else:
                self.optimizer.tell(trial, told, constraints=constraints)

    def on_front(self, key: str, point: tuple[float, ...]) -> None:
        """Keep this run's Pareto front (for the progress bar and the report)
        with trial ``key``'s ``point``."""
        if key in self.front or any(
            all(a <= b for a, b in zip(q, point, strict=True)) and q != point
            for q in self.front.values()
        ):
            return
        self.front = {
            k: q
            for k, q in self.front.items()
            if not all(a <= b for a, b in zip(point, q, strict=True)) or q == point
        }
        self.front[key] = point
