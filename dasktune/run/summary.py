"""The summary of one run: :class:`RunReport`, what ``Search.run`` returns.

Its counts (``evaluated``, ``failed``, ``pruned``, ``reused``, ``joined``,
``skipped``), elapsed time, why it stopped, its best (or Pareto front), and
where its evaluations ran and why. Not to be mistaken for a trial's reports
of intermediate values (``trial.report(step, value)``, :mod:`dasktune.run.report`).

Imports neither Dask nor the store: a run in the caller's process
(:mod:`dasktune.run.local`) makes one too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from dasktune.records import Outcome

__all__ = ["RunReport"]


@dataclass
class RunReport:
    """What one run of the driver did."""

    evaluated: int = 0
    failed: int = 0
    pruned: int = 0
    reused: int = 0
    skipped: int = 0
    #: asks that repeated a trial in flight in this run: told its result, not
    #: evaluated again (``reused`` counts asks answered from the store)
    joined: int = 0
    elapsed: float = 0.0
    stopped: str = ""
    #: one objective: this run's best value and its parameters (``inf`` and
    #: ``None`` when it has none; with several objectives, see ``front``)
    best_value: float = math.inf
    best_params: Any = None
    first_failure: Outcome | None = None
    #: several objectives: the values of this run's Pareto front (feasible
    #: done trials, reused ones too), by first objective
    front: list[tuple[float, ...]] = field(default_factory=list)
    #: where the evaluations ran ("local": in the caller's process; "cluster";
    #: a cluster's driver says how its trials went: "tasks" or "feed") and why,
    #: as :mod:`dasktune.run.policy` decided
    execution: str = "cluster"
    execution_reason: str = ""

    @property
    def all_failed(self) -> bool:
        """Whether trials failed and none gave a value."""
        return (
            self.first_failure is not None
            and self.evaluated == 0
            and self.best_value == math.inf
        )


def all_failed_error(
    exc: BaseException, name: str, failed: int, where: str = ""
) -> BaseException:
    """``exc``, the first failure of a run whose every evaluation failed, noted
    once as such (``where``: the caller's process, when the run was there).

    The driver and the caller's-process run raise it the same way: one rule.
    """
    place = f"; run in {where}" if where else ""
    note = (
        f"dasktune: {name}: every evaluation failed ({failed} so far{place}); "
        "this is the first failure"
    )
    if not any("every evaluation failed" in n for n in getattr(exc, "__notes__", ())):
        exc.add_note(note)
    return exc
