"""What every run shares, without importing Dask: the batch-objective
protocol, the run's report, and the check of ``trial_timeout``.

Kept apart from :mod:`dasktune.run.driver` so that a run evaluated in the
caller's process (:mod:`dasktune.run.local`) never imports ``distributed``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from dasktune._checks import check_timeout
from dasktune.records import Outcome

__all__ = ["ALL_FAILED_STOP", "BatchObjective", "RunReport", "check_trial_timeout"]

#: a run that must raise when every evaluation failed (minimize, SPSA) stops
#: once this many failed and none gave a value, not after its last generation
ALL_FAILED_STOP = 64


@runtime_checkable
class BatchObjective(Protocol):
    """An objective that evaluates a whole batch of parameter sets at once.

    ``evaluate_batch`` blocks until every value is known and returns one raw
    result per parameter set, in order (a ``ProducerConsumer`` does it in one
    round trip per shard, rebuilding shards lost with their workers). When it
    raises, the driver evaluates the sets one by one to record which failed.
    """

    def evaluate_batch(self, params: Sequence[Any]) -> list[Any]:
        """One raw result per parameter set."""
        ...


def check_trial_timeout(trial_timeout: object, *, batch: bool = False) -> None:
    """Raise ``ValueError`` unless ``trial_timeout`` is ``None`` or a positive,
    finite number of seconds, and the objective's calls can be limited (not a
    batch objective's, evaluated whole in the driver's process)."""
    check_timeout(trial_timeout, "trial_timeout")
    if batch and trial_timeout is not None:
        msg = (
            "trial_timeout cannot limit a batch objective (a ProducerConsumer): "
            "its batches are evaluated whole, not trial by trial; bound the run "
            "with timeout=, or give a plain function"
        )
        raise ValueError(msg)


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
    #: where the evaluations ran ("local": in the caller's process; "cluster")
    #: and why, as :class:`dasktune.run.policy.ExecutionPolicy` decided
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
