"""Where evaluations run: decided from the work, not fixed (DESIGN.md).

One policy, :class:`ExecutionPolicy`, decides whether a run's evaluations stay
in the caller's process ("local") or cross a Dask cluster ("cluster"), and says
why. It imports no Dask: a run that stays local never imports ``distributed``.

How it decides
--------------
1. What forces a choice is taken first. The cluster, when the run needs it: a
   client was given or one is current, ``resources=`` (only a worker has them),
   a batch objective holding resident data (a ``ProducerConsumer``),
   ``trial_timeout=`` (a call is interrupted on a worker), a trial store or a
   progress bar (recorded and shown by the cluster's driver), or
   ``execution="tasks"``/``"feed"``. The caller's process, with
   ``execution="local"``.
2. Otherwise (``execution="auto"``) the first evaluations are timed where they
   run, in the caller's process: one that takes less than :data:`LOCAL_BELOW`
   keeps the run local; :data:`PROBE_EVALUATIONS` evaluations, or
   :data:`PROBE_SECONDS` of them, all above it move the run to the cluster,
   started then. The threshold is one task's dispatch cost on a Dask cluster
   (about 2 ms a task, DASK-FACTS.md): an evaluation cheaper than that gains
   nothing from crossing to a worker; on two cores the cluster cannot pay back
   its own overhead below it. A run whose length is known (DE's generations,
   SPSA's iterations) also stays when the time the machine's cores could save
   on what is left is less than a cluster takes to start
   (:data:`STARTUP_SECONDS`).
3. As a local run goes on, each batch (a DE generation, an SPSA iteration) is
   looked at again: when its evaluations average more than
   :data:`CLUSTER_ABOVE`, the rest of the run moves to the cluster.

The choice never changes a result: the same ask/tell optimizer is told the
same values in the same order, wherever they were computed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CLUSTER_ABOVE",
    "DISPATCH_SECONDS",
    "EXECUTIONS",
    "LOCAL_BELOW",
    "PROBE_EVALUATIONS",
    "PROBE_SECONDS",
    "STARTUP_SECONDS",
    "ExecutionDecision",
    "ExecutionPolicy",
    "seconds_text",
]

#: the choices of ``execution=``: measure ("auto"), the caller's process
#: ("local"), a task per trial or grouped tasks ("tasks"), long-lived tasks fed
#: trials ("feed"; a batch-synchronous optimizer's batches still go as tasks)
EXECUTIONS = ("auto", "local", "tasks", "feed")
#: one task's dispatch cost on a Dask cluster, seconds (``client.map`` of a
#: no-op, measured: DASK-FACTS.md)
DISPATCH_SECONDS = 2e-3
#: an evaluation faster than this stays in the caller's process
LOCAL_BELOW = DISPATCH_SECONDS
#: a local run whose batch averages more than this per evaluation moves to the
#: cluster (ten times the threshold, so that noise around it does not move it)
CLUSTER_ABOVE = 10 * LOCAL_BELOW
#: at most this many evaluations (or this many seconds of them) are timed
#: before an "auto" run goes to the cluster
PROBE_EVALUATIONS = 3
PROBE_SECONDS = 0.1
#: what starting dasktune's cluster costs, seconds: ``import distributed``
#: (~0.65 s) and a 2-process ``LocalCluster`` (0.6-0.9 s), DASK-FACTS.md
STARTUP_SECONDS = 1.5


def seconds_text(seconds: float) -> str:
    """A duration for a message, in the unit that reads best.

    >>> seconds_text(4.1e-6), seconds_text(0.0123), seconds_text(2.5)
    ('4.1 µs', '12.3 ms', '2.50 s')
    """
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


@dataclass(frozen=True)
class ExecutionDecision:
    """Where a run's evaluations go, and why.

    Attributes
    ----------
    where : {"local", "cluster"}
    reason : str
        One sentence a user can read (it goes on the result and in a debug log
        line of the ``dasktune`` logger).
    """

    where: str
    reason: str


class ExecutionPolicy:
    """The one decision of where a run's evaluations go (see the module notes).

    Parameters
    ----------
    execution : {"auto", "local", "tasks", "feed"}
    what : str
        The run, for messages (``"minimize('differential_evolution')"``).
    client : object, optional
        The ``client=`` argument as given.
    resources : mapping, optional
    batch : bool
        The objective is a batch objective (a ``ProducerConsumer``).
    trial_timeout : float, optional
    store : bool
        A trial store records the run.
    progress : bool
        A progress bar was asked for.
    cluster_only : str, optional
        Why this run can only run on the cluster (e.g. replicas run whole as
        tasks), or ``None``.
    expected : int, optional
        How many evaluations the run makes at most, when known.

    Raises
    ------
    ValueError
        For an ``execution`` not in :data:`EXECUTIONS`, or ``"local"`` with what
        only a cluster can do.
    """

    def __init__(
        self,
        execution: object = "auto",
        *,
        what: str,
        client: Any = None,
        resources: Mapping[str, float] | None = None,
        batch: bool = False,
        trial_timeout: float | None = None,
        store: bool = False,
        progress: bool = False,
        cluster_only: str | None = None,
        expected: int | None = None,
    ) -> None:
        if execution not in EXECUTIONS:
            msg = (
                f"{what}: execution must be one of "
                f"{', '.join(map(repr, EXECUTIONS))}; got {execution!r}. Use "
                "'auto' to let dasktune choose from the objective's cost, 'local' "
                "for the caller's process, 'tasks' or 'feed' for the cluster"
            )
            raise ValueError(msg)
        self.execution = str(execution)
        self.what = what
        self.expected = expected
        needs = _needs_cluster(
            client, resources, batch, trial_timeout, store, progress, cluster_only
        )
        if self.execution == "local" and needs is not None:
            msg = (
                f"{what}: execution='local' cannot run with {needs}; drop one "
                "of the two (or use execution='auto' to let dasktune choose)"
            )
            raise ValueError(msg)
        self.forced: ExecutionDecision | None = None
        if self.execution == "local":
            self.forced = ExecutionDecision(
                "local", "execution='local' was asked for: the caller's process"
            )
        elif self.execution in ("tasks", "feed"):
            self.forced = ExecutionDecision(
                "cluster", f"execution={self.execution!r} was asked for"
            )
        elif needs is not None:
            self.forced = ExecutionDecision("cluster", f"the run has {needs}")
        else:
            current = _current_client()
            if current is not None:
                self.forced = ExecutionDecision(
                    "cluster", f"a Dask client is current ({current!r}): it is used"
                )

    @property
    def driver_execution(self) -> str:
        """What the cluster's driver is told: "tasks", "feed" or "auto"."""
        return self.execution if self.execution in ("tasks", "feed") else "auto"

    def after_probe(
        self, durations: Sequence[float], done: int | None = None
    ) -> ExecutionDecision | None:
        """The decision from the first evaluations' ``durations`` (seconds, in
        the caller's process; ``done`` evaluations made so far, default as
        many), or ``None`` to time one more.

        >>> p = ExecutionPolicy(what="f")
        >>> p.after_probe([4e-6]).where
        'local'
        >>> p.after_probe([0.02]) is None, p.after_probe([0.02] * 3).where
        (True, 'cluster')
        """
        fastest = min(durations)
        if fastest < LOCAL_BELOW:
            reason = (
                f"an evaluation took {seconds_text(fastest)} in the caller's "
                f"process, less than one task's dispatch cost on a cluster "
                f"({seconds_text(LOCAL_BELOW)}): no cluster started"
            )
            return ExecutionDecision("local", reason)
        if len(durations) >= PROBE_EVALUATIONS or sum(durations) >= PROBE_SECONDS:
            short = self._too_short(fastest, len(durations) if done is None else done)
            if short is not None:
                return ExecutionDecision("local", short)
            reason = (
                f"{len(durations)} evaluation(s) took {seconds_text(fastest)} or "
                f"more, above {seconds_text(LOCAL_BELOW)} (one task's dispatch "
                "cost): the cluster's workers run them in parallel"
            )
            return ExecutionDecision("cluster", reason)
        return None

    def revisit(
        self, evaluated: int, seconds: float, done: int = 0
    ) -> ExecutionDecision | None:
        """Look again at a local run after a batch of ``evaluated`` evaluations
        that took ``seconds`` (``done`` made so far): the cluster when they
        grew expensive, else ``None`` (stay). Only an "auto" run moves.

        >>> ExecutionPolicy(what="f").revisit(10, 1.0).where
        'cluster'
        >>> ExecutionPolicy(what="f").revisit(10, 1e-4) is None
        True
        """
        if self.execution != "auto" or evaluated == 0:
            return None
        mean = seconds / evaluated
        if mean <= CLUSTER_ABOVE or self._too_short(mean, done) is not None:
            return None
        reason = (
            f"evaluations grew to {seconds_text(mean)} on average in the caller's "
            f"process, above {seconds_text(CLUSTER_ABOVE)}: the rest of the run "
            "moved to the cluster"
        )
        return ExecutionDecision("cluster", reason)

    def _too_short(self, cost: float, done: int) -> str | None:
        """Why what is left of the run is too short to pay for starting a
        cluster, if it is (the run's length known)."""
        if self.expected is None:
            return None
        left = max(self.expected - done, 0)
        cores = os.cpu_count() or 1
        saved = cost * left * (1 - 1 / cores)  # at best, on every core
        if saved >= STARTUP_SECONDS:
            return None
        return (
            f"evaluations take {seconds_text(cost)}, but the {left} left of the "
            f"run would save at most {seconds_text(saved)} on {cores} cores, less "
            f"than a cluster takes to start (~{seconds_text(STARTUP_SECONDS)}): "
            "no cluster started"
        )


def _needs_cluster(
    client: Any,
    resources: Mapping[str, float] | None,
    batch: bool,
    trial_timeout: float | None,
    store: bool,
    progress: bool,
    cluster_only: str | None,
) -> str | None:
    """What in the run's arguments needs the cluster, said for a message."""
    if client is not None:
        return "a client given (client=)"
    if resources:
        return f"resources={dict(resources)!r} (only a worker has them)"
    if batch:
        return "a batch objective (a ProducerConsumer: its data lives on workers)"
    if trial_timeout is not None:
        return "trial_timeout= (a call is interrupted on a worker)"
    if store:
        return "a trial store (store=)"
    if progress:
        return "progress=True"
    return cluster_only


def _current_client() -> Any:
    """The current Dask client, if ``distributed`` is loaded and has one."""
    if "distributed" not in sys.modules:
        return None  # nothing imported it: no client can be current
    from dasktune.run.cluster import _current_client as current

    return current()
