"""Running an ask/tell optimizer in the caller's process, as the policy chose.

:class:`LocalRun` is the driver loop without a cluster: it asks a batch, calls
the objective on each trial here, tells the optimizer, and asks again. It
follows the cluster driver's rules where they bear on a result: a value is read
by :func:`dasktune._values.read_result` and a NaN refused; a failing call is
told ``+inf`` and the run goes on, and when every evaluation failed the first
failure's own exception is raised; a point asked again is answered from this
run's cache, as the cluster driver's in-memory recorder answers it.

While the :class:`~dasktune.run.policy.ExecutionPolicy` has not decided
("auto"), the first evaluations are timed; when it sends the run to the
cluster, :meth:`LocalRun.run` returns the trials asked and not yet evaluated,
and :class:`Handover` gives them to the cluster's driver first.
"""

from __future__ import annotations

import collections
import logging
import math
import time
import traceback
from collections.abc import Callable, Hashable
from functools import partial
from typing import Any, cast

from dasktune._values import check_not_nan, read_result
from dasktune.optim.base import AskTell
from dasktune.records import Outcome, Trial, TrialStatus
from dasktune.run.base import ALL_FAILED_STOP
from dasktune.run.points import VectorObjective, point_key, point_record
from dasktune.run.policy import (
    ExecutionDecision,
    ExecutionPolicy,
    ended_while_timing,
    with_trials,
)
from dasktune.run.startup import BackgroundStart, Overlap
from dasktune.run.summary import RunReport, all_failed_error

__all__ = ["Handover", "LocalRun", "continued", "run_here_first"]

logger = logging.getLogger("dasktune")


class LocalRun:
    """Drive ``optimizer`` on ``objective`` in this process (see the module notes).

    Parameters
    ----------
    optimizer : AskTell
    objective : callable
        ``objective(params) -> raw result``, called here.
    policy : ExecutionPolicy
    name : str
        The run, for messages.
    to_record : callable
        A trial's parameters as recorded (a JSON-able dict): the report's
        ``best_params``.
    to_key : callable
        A trial's parameters as a hashable key of this run's cache: equal for
        the points ``to_record`` records alike.
    n_trials : int, optional
        Evaluate at most this many.
    timeout : float, optional
        Seconds; checked between evaluations (a call is never interrupted).
    start : callable, optional
        Called once when the policy moves the run to the cluster: starts it
        in the background (a :class:`~dasktune.run.startup.BackgroundStart`);
        the run goes on here until it is ready. ``None``: the run stops here
        at once (a cluster runs already).
    """

    def __init__(
        self,
        optimizer: AskTell,
        objective: Callable[[Any], Any],
        *,
        policy: ExecutionPolicy,
        name: str,
        to_record: Callable[[Any], dict[str, Any]],
        to_key: Callable[[Any], Hashable],
        n_trials: int | None = None,
        timeout: float | None = None,
        start: Callable[[], BackgroundStart] | None = None,
        timed: tuple[int, float] = (0, 0.0),
    ) -> None:
        self.optimizer = optimizer
        self.objective = objective
        self.policy = policy
        self.name = name
        self.to_record = to_record
        self.to_key = to_key
        self.n_trials = n_trials
        self.timeout = timeout
        self.start = start
        self.starting: BackgroundStart | None = None
        #: evaluations made here after the move was decided, while the
        #: cluster started
        self.overlapped = 0
        self._overlap = Overlap()  # whether they starve the start
        self.decision: ExecutionDecision | None = policy.forced
        self._cache: dict[Hashable, float | None] = {}  # by hash: value, None failed
        self._probe: list[float] = []
        self._timed = timed  # evaluations made here (before too), their seconds

    @property
    def cost(self) -> float | None:
        """Seconds an evaluation took here on average (``None``: none made)."""
        count, seconds = self._timed
        return seconds / count if count else None

    def run(self) -> tuple[RunReport, list[Trial]]:
        """Run until the optimizer finishes, ``n_trials``, the timeout, or the
        policy moves the run to the cluster.

        Returns
        -------
        report : RunReport
            ``execution`` is ``"local"``, or ``"cluster"`` when the run is to go
            on there, with the reason.
        handed : list of Trial
            The trials asked and not yet told, for the cluster's driver (empty
            unless the run moves to the cluster).
        """
        report = RunReport(execution="local")
        started = time.perf_counter()
        deadline = None if self.timeout is None else started + self.timeout
        asked: collections.deque[Trial] = collections.deque()
        batch_seconds, batch_evaluated = 0.0, 0
        try:
            while True:
                if not asked:
                    moved = self.policy.revisit(
                        batch_evaluated, batch_seconds, report.evaluated + report.failed
                    )
                    if moved is not None and self._local():
                        self._decide(moved)
                    batch_seconds, batch_evaluated = 0.0, 0
                    moving = self.decision is not None and not self._local()
                    if moving and self._moved():
                        break
                    if self.optimizer.finished or self._spent(report):
                        report.stopped = (
                            "finished" if self.optimizer.finished else "n_trials"
                        )
                        break
                    self._ask(asked, report)
                    if not asked:  # it finished while asked
                        continue
                if deadline is not None and time.perf_counter() > deadline:
                    report.stopped = "timeout"
                    break
                trial = asked.popleft()
                mark = None if self.starting is None else self._overlap.mark()
                seconds = self._evaluate(trial, report)
                if mark is not None:  # made while the cluster starts
                    self._overlap.add(mark)
                if seconds is not None:
                    self._timed = (self._timed[0] + 1, self._timed[1] + seconds)
                    batch_seconds += seconds
                    batch_evaluated += 1
                    if self.decision is None:
                        self._probe.append(seconds)
                        decided = self.policy.after_probe(
                            self._probe, report.evaluated + report.failed
                        )
                        if decided is not None:
                            self._decide(decided)
                            if decided.where != "local" and self._moved():
                                break
                    elif self.decision.where != "local":
                        self.overlapped += 1  # while the cluster starts
        finally:
            report.elapsed = time.perf_counter() - started
        if report.all_failed and report.first_failure is not None:
            raise self._all_failed_error(report, report.first_failure)
        if self.decision is None:  # finished while still timing
            self._decide(ended_while_timing(self._probe))
        assert self.decision is not None
        report.execution = self.decision.where
        report.execution_reason = self.decision.reason
        return report, list(asked)

    def _local(self) -> bool:
        return self.decision is not None and self.decision.where == "local"

    def _moved(self) -> bool:
        """Whether the run, sent to the cluster, stops here now: at once
        without ``start``, else once the cluster started in the background
        is ready (the start begun at the first look)."""
        if self.start is None:
            return True
        if self.starting is None:
            self.starting = self.start()
        if not self.starting.ready and self._overlap.starves:
            self.starting.client()  # waits, bounded; raises the start's error
        return self.starting.ready

    def _decide(self, decision: ExecutionDecision) -> None:
        self.decision = decision
        logger.debug("%s: execution %s: %s", self.name, decision.where, decision.reason)

    def _spent(self, report: RunReport) -> bool:
        return self.n_trials is not None and report.evaluated + report.failed >= (
            self.n_trials
        )

    def _ask(self, asked: collections.deque[Trial], report: RunReport) -> None:
        """Ask the optimizer's next batch (within ``n_trials``)."""
        room = (
            math.inf
            if self.n_trials is None
            else self.n_trials - report.evaluated - report.failed
        )
        while len(asked) < room:
            trial = self.optimizer.ask()
            if trial is None:
                break
            asked.append(trial)
        if not asked and not self.optimizer.finished:
            msg = (
                f"{type(self.optimizer).__name__}.ask() returned None while no "
                "trial was pending and the optimizer is not finished: it can never "
                "propose again"
            )
            raise RuntimeError(msg)

    def _evaluate(self, trial: Trial, report: RunReport) -> float | None:
        """Evaluate ``trial`` here (or answer it from the cache) and tell the
        optimizer; return the seconds the call took (``None``: from the cache)."""
        h = self.to_key(trial.params)
        if h in self._cache:
            report.reused += 1
            known = self._cache[h]
            self.optimizer.tell(trial, math.inf if known is None else known)
            return None
        started = time.time()
        t0 = time.perf_counter()
        try:
            raw = self.objective(trial.params)
            if type(raw) is float and raw == raw:  # a number, not NaN: as read
                value = raw
            else:
                values, _, _ = read_result(raw)
                check_not_nan(values, trial.params)
                value = values[0]
        except Exception as err:
            seconds = time.perf_counter() - t0
            self._failed(trial, h, err, started, seconds, report)
            return seconds
        seconds = time.perf_counter() - t0
        self._cache[h] = value
        report.evaluated += 1
        if value < report.best_value:
            report.best_value = value
            report.best_params = self.to_record(trial.params)
        self.optimizer.tell(trial, value)
        return seconds

    def _failed(
        self,
        trial: Trial,
        h: Hashable,
        err: Exception,
        started: float,
        seconds: float,
        report: RunReport,
    ) -> None:
        outcome = Outcome(
            "",  # not recorded: no store
            TrialStatus.FAILED,
            error="".join(traceback.format_exception(err)),
            exception=err,
            started=started,
            finished=time.time(),
            duration=seconds,
        )
        self._cache[h] = None
        report.failed += 1
        if report.first_failure is None:
            report.first_failure = outcome
        if report.all_failed and report.failed >= ALL_FAILED_STOP:
            # nothing has ever worked: stop now, not after maxiter generations
            raise self._all_failed_error(report, report.first_failure)
        try:
            self.optimizer.tell(trial, math.inf)
        except Exception as told:
            # the optimizer stopped on the +inf of a failure: say which
            if report.all_failed and report.first_failure is not None:
                raise self._all_failed_error(report, report.first_failure) from told
            raise told from err

    def _all_failed_error(self, report: RunReport, first: Outcome) -> BaseException:
        exc = first.exception
        assert exc is not None  # kept with every local failure
        return all_failed_error(exc, self.name, report.failed, "the caller's process")


class Handover:
    """``optimizer`` whose next asks return ``trials`` (asked already, by a
    local run moving to the cluster) before its own; everything else is the
    optimizer's."""

    def __init__(self, optimizer: AskTell, trials: list[Trial]) -> None:
        self._optimizer = optimizer
        self._queue = collections.deque(trials)

    def ask(self) -> Trial | None:
        if self._queue:
            return self._queue.popleft()
        return self._optimizer.ask()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._optimizer, name)


def continued(local: RunReport, rest: RunReport, overlapped: int = 0) -> RunReport:
    """The report of a run begun in the caller's process (``local``) and ended
    on the cluster (``rest``); ``overlapped`` evaluations ran here while the
    cluster started."""
    best = local if local.best_value <= rest.best_value else rest
    reason = local.execution_reason
    if overlapped:
        reason += (
            f"; {overlapped} evaluation(s) ran in the caller's process while "
            "the cluster started"
        )
    reason = with_trials(reason, rest.execution, rest.execution_reason)
    return RunReport(
        evaluated=local.evaluated + rest.evaluated,
        failed=local.failed + rest.failed,
        pruned=local.pruned + rest.pruned,
        reused=local.reused + rest.reused,
        skipped=local.skipped + rest.skipped,
        joined=local.joined + rest.joined,
        elapsed=local.elapsed + rest.elapsed,
        stopped=rest.stopped,
        best_value=best.best_value,
        best_params=best.best_params,
        first_failure=local.first_failure or rest.first_failure,
        front=rest.front,
        execution="cluster",
        execution_reason=reason,
    )


def run_here_first(
    optimizer: AskTell,
    fun: Callable[..., Any],
    args: tuple[Any, ...],
    *,
    policy: ExecutionPolicy,
    name: str,
    paired: bool = False,
    n_trials: int | None = None,
    timeout: float | None = None,
    security: Any = None,
    timed: tuple[int, float] = (0, 0.0),
) -> RunReport:
    """Run ``fun(x, *args)`` on ``optimizer`` in this process while the policy
    keeps it local; when it moves the run to the cluster, go on there: on the
    current client's, or on dasktune's own, started in the background while
    the run goes on here (``distributed`` is imported only then).

    The policy must not have forced the cluster (the caller runs it there).
    ``timed``: evaluations made here before this run and their seconds (a
    run replayed after scipy ran in this thread), so that the cluster part
    knows their cost.
    """
    objective = VectorObjective(fun, args, paired)
    start = None
    if policy.startup > 0:  # no cluster runs yet: start one meanwhile
        start = partial(BackgroundStart, security)
    local = LocalRun(
        optimizer, objective, policy=policy, name=name, to_record=point_record,
        to_key=point_key, n_trials=n_trials, timeout=timeout, start=start,
        timed=timed,
    )  # fmt: skip
    report, handed = local.run()
    done = report.evaluated + report.failed
    if (
        report.execution == "local"
        or report.stopped
        or (n_trials is not None and done >= n_trials)
    ):
        if local.starting is not None:
            # the run ended here while the cluster started: it goes on
            # starting (dasktune's own, for later calls; closed at exit)
            report.execution = "local"
            report.execution_reason += (
                f"; the run ended in the caller's process ({local.overlapped} "
                "evaluation(s) more) while the cluster started"
            )
        report.stopped = report.stopped or "n_trials"
        return report
    from dasktune.run.cluster import get_client
    from dasktune.run.options import RunOptions
    from dasktune.run.vector import run_vector

    client = (
        get_client(None, security=security)
        if local.starting is None
        else local.starting.client()
    )
    options = RunOptions(
        name=name,
        n_trials=None if n_trials is None else n_trials - done,  # done < n_trials
        timeout=None if timeout is None else max(timeout - report.elapsed, 1e-3),
        execution=policy.driver_execution,
        cost=local.cost,  # timed here: how trials go is decided at once
        expected=None if policy.expected is None else max(policy.expected - done, 0),
    )
    rest, _ = run_vector(
        cast(AskTell, Handover(optimizer, handed)), fun, args, options,
        client=client, paired=paired,
    )  # fmt: skip
    return continued(report, rest, local.overlapped)
