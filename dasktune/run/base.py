"""What every run shares, without importing Dask: the batch-objective
protocol and the check of ``trial_timeout`` (the run's summary, ``RunReport``,
is :mod:`dasktune.run.summary`'s).

Kept apart from :mod:`dasktune.run.driver` so that a run evaluated in the
caller's process (:mod:`dasktune.run.local`) never imports ``distributed``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from dasktune._checks import check_timeout

__all__ = ["ALL_FAILED_STOP", "BatchObjective", "check_trial_timeout"]

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
