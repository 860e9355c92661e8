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
from typing import Any

import distributed

from dasktune.optim.base import AskTell
from dasktune.run.here import HereWindow
from dasktune.run.options import RunOptions
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
        here: bool = False,
    ) -> None:
        self.name, self.execution = name, execution
        self.batch, self.vectorized, self.resources = batch, vectorized, resources
        #: the run begins in the caller's process (``dasktune.run.here``),
        #: which says where its trials went: a task each once moved
        self.here = here
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
        if self.here:  # a task each once moved: said by the run here
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
            "moved from the caller's process"
            if self.here
            else "a batch objective, evaluated whole"
            if self.batch
            else "a vectorized objective, called once per group"
            if self.vectorized
            else f"resources={self.resources!r}, held by each trial's task"
        )
        return ExecutionDecision("tasks", f"a task per trial or group: {why}")

    def decide(
        self,
        optimizer: AskTell,
        client: distributed.Client,
        options: RunOptions,
    ) -> bool:
        """``execution="auto"``, at the first ask (made, so a batch-synchronous
        optimizer has declared its batch), by :class:`FeedChoice`: an
        optimizer that waits on its results (a sequential sampler: Optuna's
        TPE, a Gaussian process, Nevergrad; or a batch-synchronous one: DE,
        SPSA) on a cluster that does not scale sends its first trials as
        tasks, timed, and feeds the rest when they are short (:meth:`timed`),
        or is fed at once when its evaluations were timed before the run
        (``options.cost``, seconds); a batch-synchronous run with few batches
        left (of ``options.expected`` evaluations) and sources that do not
        learn (grids, random) keep a task each, on the dashboard's task
        stream.

        Returns
        -------
        bool
            Whether to feed from now on (nothing sent yet).
        """
        learns = bool(optimizer.wants_values)
        size, expected = optimizer.batch_size, options.expected
        choice = FeedChoice(
            "auto", sequential=learns and not size, batched=learns and size > 0,
            scales=cluster_scales(client), cost=options.cost,
            batches=None if expected is None or not size else expected // size,
        )  # fmt: skip
        self.fed = False  # the first trials go as tasks, if undecided
        if choice.decision is None:
            self.choice = choice  # timed: timed
            return False
        self._decided(choice.decision)
        return choice.decision.where == "feed"

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

    def report(self, report: RunReport, here: HereWindow[Any] | None = None) -> None:
        """Say on ``report`` how the trials went, and why (``here``: where
        a run begun in the caller's process went, as it says)."""
        if here is not None:
            report.execution, report.execution_reason = here.execution()
            return
        decision = self.decision
        if decision is None:
            decision = ExecutionDecision(
                "tasks",
                "a task per trial: the run ended within its first trials (sent "
                "as tasks and timed, to decide whether to feed the rest)",
            )
        report.execution, report.execution_reason = decision.where, decision.reason
