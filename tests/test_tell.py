"""Teller: what the optimizer is told of a trial, and the run's best and front."""

import math
from dataclasses import dataclass, field
from typing import Any

from dasktune.records import Trial
from dasktune.run.summary import RunReport
from dasktune.run.tell import Teller


class Told:
    """An optimizer that keeps what it is told."""

    def __init__(self, n_objectives: int = 1):
        self.n_objectives = n_objectives
        self.told: list[tuple[Any, ...]] = []

    def tell(self, trial, value, **kwargs):
        self.told.append((trial.number, value, kwargs))


@dataclass
class Asked:
    param_hash: str
    record: dict[str, Any]
    trials: list[Trial] = field(default_factory=list)


def asked(number: int) -> Asked:
    return Asked(f"h{number}", {"x": number}, [Trial(number, {"x": number})])


def test_one_objective_is_told_minimised_and_the_best_kept_feasible_only():
    optimizer, report = Told(), RunReport()
    teller = Teller(optimizer, -1.0, None)  # maximise
    teller.tell(asked(0), 2.0, report)
    teller.tell(asked(1), 5.0, report, constraints=(1.0,))  # violates c <= 0
    teller.tell(asked(2), None, report)  # failed
    assert [(n, v) for n, v, _ in optimizer.told] == [
        (0, -2.0),
        (1, -5.0),
        (2, math.inf),
    ]
    assert optimizer.told[1][2] == {"constraints": (1.0,)}
    assert (report.best_value, report.best_params) == (-2.0, {"x": 0})


def test_several_objectives_keep_the_front_once_per_trial():
    optimizer, report = Told(n_objectives=2), RunReport()
    teller = Teller(optimizer, 1.0, (1.0, -1.0))
    teller.tell(asked(0), 1.0, report, values=(1.0, 1.0))
    teller.tell(asked(1), 2.0, report, values=(2.0, 3.0))  # beats 0 on the 2nd
    teller.tell(asked(2), 3.0, report, values=(3.0, 2.0))  # dominated by 1
    teller.tell(asked(1), 2.0, report, values=(2.0, 3.0))  # told again: once
    assert optimizer.told[0][1] == (1.0, -1.0)
    assert teller.front == {"h0": (1.0, -1.0), "h1": (2.0, -3.0)}
    assert report.best_value == math.inf  # a front, not a best
