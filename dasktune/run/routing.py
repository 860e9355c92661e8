"""How a run's trials reach the workers: as tasks, or fed to long-lived
tasks (:mod:`dasktune.run.feed`), and why.

:class:`Routing` decides it from the run's arguments when they do
(``execution="tasks"`` or ``"feed"``, a batch or vectorized objective,
``resources``); otherwise (``execution="auto"``) at the first ask, by
:class:`~dasktune.run.policy.FeedChoice`, maybe from the first trials' times.
The driver switches its window when the decision says to feed; the report
says how the trials went and why.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import distributed

from dasktune.optim.base import AskTell
from dasktune.run.policy import ExecutionDecision, FeedChoice, cluster_scales
from dasktune.run.summary import RunReport

__all__ = ["Routing"]

logger = logging.getLogger("dasktune")


class Routing:
    """Whether a run's trials are fed, decided once; see the module notes.

    Attributes
    ----------
    fed : bool or None
        Whether trials are fed; ``None`` until decided at the first ask.
    choice : FeedChoice or None
        While the first trials, sent as tasks, are timed.
    draining : bool
        Decided to feed: trials wait while the tasks in flight drain.
    decision : ExecutionDecision or None
        The decision and its reason, once made.
    """

    def __init__(
        self,
        name: str,
        execution: str,
        *,
        batch: bool,
        vectorized: bool,
        resources: Mapping[str, float] | None,
    ) -> None:
        self.name, self.execution = name, execution
        self.batch, self.vectorized, self.resources = batch, vectorized, resources
        self.fed = self._feeds()
        # "auto": how trials go is decided at the first ask, maybe from the
        # first trials' times (FeedChoice); trials wait while tasks drain
        self.decision: ExecutionDecision | None = None
        self.choice: FeedChoice | None = None  # while the first trials are timed
        self.draining = False
        if self.fed is not None:
            self._decided(self._fixed_choice())

    def started_feed(self) -> None:
        """The driver feeds the rest: the tasks sent while undecided are back."""
        self.fed, self.draining = True, False

    def _feeds(self) -> bool | None:
        """Whether this run's trials are fed to long-lived tasks
        (:mod:`dasktune.run.feed`) rather than sent as tasks; ``None``: decided
        at the first ask (:meth:`decide`)."""
        if self.execution == "tasks" or self.batch or self.vectorized:
            return False
        if self.resources:  # each trial holds them: a task each
            return False
        return True if self.execution == "feed" else None

    def _fixed_choice(self) -> ExecutionDecision:
        """How trials go when the run's arguments decided it (:meth:`_feeds`)."""
        if self.execution in ("tasks", "feed"):
            return ExecutionDecision(
                self.execution, f"execution={self.execution!r} was asked for"
            )
        why = (
            "a batch objective, evaluated whole"
            if self.batch
            else "a vectorized objective, called once per group"
            if self.vectorized
            else f"resources={self.resources!r}, held by each trial's task"
        )
        return ExecutionDecision("tasks", f"a task per trial or group: {why}")

    def decide(self, optimizer: AskTell, client: distributed.Client) -> None:
        """``execution="auto"``, at the first ask (made, so a batch-synchronous
        optimizer has declared its batch), by :class:`FeedChoice`: a
        sequential sampler (its next ask waits on a result: Optuna's TPE, a
        Gaussian process, Nevergrad) on a cluster that does not scale sends
        its first trials as tasks, timed, and feeds the rest when they are
        short (:meth:`timed`); sources that do not learn (grids, random) and
        known batches keep a task each, on the dashboard's task stream."""
        sequential = bool(optimizer.wants_values) and optimizer.batch_size == 0
        choice = FeedChoice(
            "auto", sequential=sequential, scales=cluster_scales(client)
        )
        self.fed = False  # the first trials go as tasks, if undecided
        if choice.decision is not None:
            self._decided(choice.decision)
        else:
            self.choice = choice  # timed: timed

    def timed(self, durations: list[float]) -> None:
        """Trials sent as tasks while undecided took ``durations``: decide,
        once they say; to feed, the tasks in flight drain first."""
        assert self.choice is not None
        decision = self.choice.observe(durations)
        if decision is None:
            return
        self.choice = None
        self._decided(decision)
        if decision.where == "feed":
            self.draining = True

    def _decided(self, decision: ExecutionDecision) -> None:
        self.decision = decision
        logger.debug(
            "%s: trials %s: %s",
            self.name,
            "fed" if decision.where == "feed" else "as tasks",
            decision.reason,
        )

    def report(self, report: RunReport) -> None:
        """Say on ``report`` how the trials went, and why."""
        decision = self.decision
        if decision is None:
            decision = ExecutionDecision(
                "tasks",
                "a task per trial: the run ended within its first trials (sent "
                "as tasks and timed, to decide whether to feed the rest)",
            )
        report.execution, report.execution_reason = decision.where, decision.reason
