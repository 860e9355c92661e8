"""The one loop that runs every ask/tell optimizer on Dask.

:class:`Driver` keeps a bounded window of trials in flight as futures, harvests
them with ``distributed.as_completed(..., with_results=True)`` (never by
polling), tells the optimizer, hands the outcomes to a recorder (the trial store,
or an in-memory cache) and asks again, until ``n_trials``, a ``timeout``, or the
optimizer is finished. One recorder transaction per turn of the loop writes the
outcomes harvested and claims the trials asked next. The window, the harvest,
the deadline and the cancelling on exit are :mod:`dasktune.run.submit`'s.

A turn (:meth:`Driver._turn`, on the run's state :class:`_Run`) asks within the
window (``_ask_round``), writes and claims in one transaction, acts on the
store's decisions (``_apply``), submits, then either stops when nothing is in
flight (``_idle``) or waits for the next results (``_harvest``).

- A batch-synchronous optimizer's batch (``batch_size`` > 0: a DE generation,
  an SPSA iteration, L-BFGS-B's finite differences) goes as one task per
  worker, running its share on a pool of the worker's threads.
- Trials another driver holds are looked at read-only
  (:meth:`Recorder.peek`) every 0.25 s and claimed only once their holder
  finished or is gone: waiting takes no write lock.
- While every claim of a turn is reused (a re-run over done trials), the next
  turn claims twice as many, up to 1,024 per transaction.

Objectives
----------
- A plain function is called as ``objective(params)``. It returns a number,
  ``(number, dict)``, or a dict with a ``"loss"`` key (the rest of a dict is kept
  as auxiliary data). Fast trials are grouped: while the measured duration of a
  trial is far below Dask's per-task cost (about a millisecond), several trials
  go in one task, sized to run about 50 ms; each is still claimed, timed and
  recorded on its own. A raising trial is re-run ``retries`` times on its
  worker, then recorded as failed with its traceback, and the optimizer is told
  ``+inf``; the trial's own exception travels back with its outcome (never
  stored), so that when telling ``+inf`` makes the optimizer stop, the error it
  raises has the trial's exception as its cause, and a run asked to
  (``raise_if_all_failed``, as ``minimize`` and ``SPSA`` do) raises the first
  failure itself when no evaluation succeeded.
- A :class:`BatchObjective` (a ``ProducerConsumer`` with a reduction) takes the
  whole batch of parameter sets asked in a turn of the loop and returns their
  values, evaluating them in one round trip per shard where the data lives.
- An objective taking a ``trial`` argument is called as ``objective(params,
  trial=TrialHandle(number, key))``: its reports reach the run's
  :class:`~dasktune.run.report.ReportChannel` and its ``pruner``, and are
  written through the recorder once per turn of the loop. A trial that raises
  ``TrialPruned``, or returns once the pruner stopped it, is recorded
  ``pruned`` (the pruner's reason as its error) and the optimizer is told its
  last value; a done trial is passed to ``pruner.complete``.
- With ``resources`` (Dask worker resources, ``{"GPU": 1}``) every trial is a
  task of its own, so that each holds the resource while it runs (a group of
  trials would share one task's resources).
- With ``trial_timeout``, a trial still running after that many seconds is
  interrupted on its worker and recorded as failed, "timed out after N s"
  (told ``+inf``, as any failure); a trial that does not stop (blocked in C
  code) is left in its thread, and its worker restarted once its task's result
  is in (:mod:`dasktune.run.timelimit`), on every path: a task per trial,
  grouped trials, a worker's batch, the feed.
"""

from __future__ import annotations

import logging
import math
import os
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import distributed

from dasktune._heartbeat import Heartbeat
from dasktune.exceptions import DasktuneError, TooManyFailuresError
from dasktune.optim.base import AskTell
from dasktune.records import (
    Claim,
    Decision,
    DecisionKind,
    Outcome,
    Recorder,
    Trial,
    TrialStatus,
    canonical,
)
from dasktune.run.announce import Announcer
from dasktune.run.base import (
    ALL_FAILED_STOP,
    BatchObjective,
    check_trial_timeout,
)
from dasktune.run.cluster import capacity, check_resources
from dasktune.run.elsewhere import peek_elsewhere
from dasktune.run.evaluate import (
    evaluate_columns,
    evaluate_group,
    failure,
    failure_exception,
    outcome_of,
)
from dasktune.run.feed import FedWindow
from dasktune.run.here import HereWindow
from dasktune.run.mapping import Shipped
from dasktune.run.options import RunOptions, check_execution
from dasktune.run.progress import progress_bar
from dasktune.run.report import ReportChannel, wants_trial
from dasktune.run.routing import Routing
from dasktune.run.sending import Sender
from dasktune.run.submit import (
    ChunkSizer,
    Submitter,
    Window,
)
from dasktune.run.summary import RunReport, all_failed_error
from dasktune.run.tell import Teller
from dasktune.run.timelimit import free_workers, stuck_worker

logger = logging.getLogger("dasktune")

__all__ = [
    "BatchObjective",
    "Driver",
    "RunReport",
    "check_batch_objective",
    "check_execution",
    "check_pruned_objective",
    "check_trial_timeout",
]

_TARGET_TASK_SECONDS = 0.05
_ANNOUNCE_SECONDS = 1.0  # between a run's events to the dashboard's page
_MAX_GROUP = 256
_GROWTH = 8
# minimize/SPSA: stop once this many evaluations (at least two windows) all failed
_ALL_FAILED_STOP = ALL_FAILED_STOP
# a source that proposed only known parameter sets this many times in a row is
# taken to have nothing new to propose
_MAX_KNOWN_IN_A_ROW = 1000
# a trial's last report may come after its result: waited for this long at most
_REPORT_WAIT_SECONDS = 5.0
# fed trials: the asks of a turn go out after this many seconds of asking
_ASK_SLICE = 0.025


def check_pruned_objective(objective: object, pruner: object) -> None:
    """Raise ``TypeError`` unless ``objective`` takes the ``trial`` a pruner needs."""
    if isinstance(objective, BatchObjective) or not wants_trial(objective):  # type: ignore[arg-type]
        name = getattr(objective, "__qualname__", type(objective).__qualname__)
        msg = (
            f"a pruner ({type(pruner).__name__}) was given but the objective {name} "
            "takes no 'trial' argument, so it can never report; define it as "
            "def objective(params, trial): ... calling trial.report(step, value), "
            "or run without pruner="
        )
        raise TypeError(msg)


def check_batch_objective(objective: object) -> None:
    """Raise ``TypeError`` for a batch objective that cannot reduce its values."""
    if (
        isinstance(objective, BatchObjective)
        and getattr(objective, "reduce", 0) is None
    ):
        msg = (
            f"{objective!r} is used as an objective but has no reduction; give "
            "ProducerConsumer(..., reduce=sum) or pass pc.objective(reduce=sum)"
        )
        raise TypeError(msg)


@dataclass
class _Pending:
    """A trial claimed by this driver: what was asked, and who waits for it."""

    param_hash: str
    record: dict[str, Any]
    call: Any
    trials: list[Trial] = field(default_factory=list)
    number: int = -1


@dataclass
class _Run:
    """The state of one run of the driver's loop."""

    report: RunReport
    deadline: float | None  # time.monotonic() of the timeout
    peeked: float  # when trials held elsewhere were last looked at
    claimed: dict[str, _Pending] = field(default_factory=dict)  # in flight here
    waiting: list[_Pending] = field(default_factory=list)  # held by another driver
    recheck: list[_Pending] = field(default_factory=list)  # no longer held: claim
    taking: int = 0  # of those, the ones to evaluate: within n_trials, as new ones
    outcomes: list[Outcome] = field(default_factory=list)  # to write next turn
    last_error: str | None = None  # the last failure's traceback
    submitted: int = 0
    more: bool = False  # the last asks stopped with room left (an ask slice)

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline


class _Known:
    """Whether the source still proposes anything new.

    Counts the proposals in a row that were parameter sets already pending
    (a re-run over sets done earlier, each proposed once, is not stopped) and,
    when the number of distinct parameter sets is known (an all-discrete
    space), the distinct ones done.
    """

    def __init__(self, space_size: int | None) -> None:
        self.space_size = space_size
        self.in_a_row = 0
        self.done_hashes: set[str] | None = None if space_size is None else set()

    def new(self) -> None:
        """A new parameter set was claimed."""
        self.in_a_row = 0

    def again(self, count: int) -> None:
        """``count`` proposals were parameter sets already pending."""
        self.in_a_row += count

    def done(self, param_hash: str) -> None:
        """A parameter set is done."""
        if self.done_hashes is not None:
            self.done_hashes.add(param_hash)

    def why_stop(self) -> str | None:
        """Why asking again is pointless, or ``None``."""
        if (
            self.done_hashes is not None
            and self.space_size is not None
            and len(self.done_hashes) >= self.space_size
        ):
            return f"the space has {self.space_size} points; all are done"
        if self.in_a_row >= _MAX_KNOWN_IN_A_ROW:
            return (
                f"the source proposed only known parameter sets {self.in_a_row} "
                "times in a row"
            )
        return None


def _threads(client: distributed.Client | None) -> int:
    """The cluster's threads; with no client (the run begins in the caller's
    process), as many as the cluster dasktune starts: one per core."""
    if client is None:
        return os.cpu_count() or 1
    return capacity(client, max_age=2.0)


class _Unheard:
    """The page's announcer of a run in the caller's process: no cluster, no
    page, nothing sent."""

    def send(self, state: dict[str, Any], *, final: bool = False) -> None:
        pass


def _announcer(
    client: distributed.Client | None, name: str, token: str
) -> Announcer | _Unheard:
    """What tells the Dask dashboard's page where the run is."""
    if client is None:
        return _Unheard()
    return Announcer(client, name, token, _ANNOUNCE_SECONDS)


def _cluster(driver: Driver) -> distributed.Client:
    """The driver's client, where only a run on the cluster gets (the
    execution policy sends a run that needs one there)."""
    assert driver.client is not None, "a run in the caller's process"
    return driver.client


def _moved(driver: Driver, client: distributed.Client) -> None:
    """The run begun in the caller's process moved to ``client``'s cluster
    (told by its :class:`HereWindow`): its layout and the page are its."""
    driver.client = driver._sender.client = client
    threads = driver.threads = driver._sender.threads = _threads(client)
    driver.task_window = driver._sender.task_window = threads + max(2, threads // 4)
    driver._announcer = _announcer(client, driver.name, driver.token)


def _clean_up_note(name: str, err: BaseException) -> str:
    return (
        f"dasktune: {name}: while cleaning up after this error, "
        f"{type(err).__qualname__}: {err}"
    )


class Driver:
    """Run ``optimizer`` against ``objective`` on ``client``; see the module notes.

    Parameters
    ----------
    optimizer : AskTell
    objective : callable or BatchObjective
    client : distributed.Client or None
        ``None``: the trials run in the caller's process first, through
        ``here``, which gives the driver its client if it moves the run to
        the cluster (:meth:`_moved`).
    recorder : Recorder
    options : RunOptions
        Everything else the run is told (its name, limits, signs, pruner,
        resources, ...), checked when it was made.
    here : HereWindow, optional
        With ``client=None``: runs the trials here while the execution
        policy keeps them here (:mod:`dasktune.run.here`).

    Raises
    ------
    TypeError
        For a ``pruner`` with an objective that takes no ``trial`` argument.
    ValueError
        For ``resources`` that no worker of the cluster declared, or an
        ``execution`` or ``trial_timeout`` the objective cannot run with.
    """

    def __init__(
        self,
        optimizer: AskTell,
        objective: Callable[[Any], Any] | BatchObjective,
        client: distributed.Client | None,
        recorder: Recorder,
        options: RunOptions,
        here: HereWindow[list[_Pending]] | None = None,
    ) -> None:
        if not isinstance(options, RunOptions):
            msg = (
                "options must be a dasktune.run.options.RunOptions, got "
                f"{type(options).__name__}: {options!r:.60}"
            )
            raise TypeError(msg)
        self.options = options
        o = options
        self.optimizer = optimizer
        self.objective = objective
        self.batch = isinstance(objective, BatchObjective)
        self.client = client
        self._here = here
        self.recorder = recorder
        self.name = o.name
        self.n_trials = o.n_trials
        self.max_in_flight = o.max_in_flight
        self.timeout = o.timeout
        self.retries = o.retries
        self.max_failures = o.max_failures
        self.progress = o.progress
        self.to_call = o.to_call or (lambda p: p)
        self.to_record = o.to_record or (lambda p: p)
        self._call_is_record = o.to_call is not None and o.to_call == o.to_record
        self.sign = o.sign
        self.signs = o.signs
        self.objectives = 1 if self.signs is None else len(self.signs)
        self.metric_names = None if o.metric_names is None else list(o.metric_names)
        self._teller = Teller(optimizer, self.sign, self.signs)
        self.keep = o.keep
        self.heartbeat_seconds = o.heartbeat_seconds
        self.raise_if_all_failed = o.raise_if_all_failed
        self.vectorized = o.vectorized
        self.reports = not self.batch and not o.vectorized and wants_trial(objective)  # type: ignore[arg-type]
        if o.pruner is not None and not self.reports:
            check_pruned_objective(objective, o.pruner)
        self.pruner = o.pruner
        self.resources = None if o.resources is None else dict(o.resources)
        if self.resources and client is not None:  # forced to a cluster else
            check_resources(client, self.resources)
        self.execution = check_execution(
            o.execution,
            batch=self.batch,
            vectorized=o.vectorized,
            resources=self.resources,
        )
        check_trial_timeout(o.trial_timeout, batch=self.batch)
        self.trial_timeout = o.trial_timeout
        self._channel: ReportChannel | None = None
        self.space_size = o.space_size
        # the bar counts proposals (reused ones too) when it has their total
        self.total = o.n_trials if o.n_trials is not None else o.total
        self._count_proposals = o.n_trials is None and o.total is not None
        self.token = uuid.uuid4().hex[:8]
        self.sizer = ChunkSizer(_TARGET_TASK_SECONDS, growth=_GROWTH, limit=_MAX_GROUP)
        self.reuse_room = 0  # extra claims per turn while every claim is reused
        # and at most this many: the recorder's, for its store
        self.reuse_burst = recorder.reuse_burst
        # what tells the Dask dashboard's dasktune page where the run is
        self._announcer = _announcer(client, self.name, self.token)
        self._runner: Any = None  # a batch objective is evaluated here, whole
        if not self.batch:
            evaluate = evaluate_columns if o.vectorized else evaluate_group
            self._runner = Shipped(partial(evaluate, objective), objective)  # type: ignore[arg-type]

    # -- the loop --------------------------------------------------------------

    def run(self) -> RunReport:
        """Drive the optimizer to the end; see the module notes."""
        report = RunReport()
        started = time.perf_counter()
        threads = self.threads = _threads(self.client)
        self.task_window = threads + max(2, threads // 4)
        self._sender = Sender(
            self.client, name=self.name, token=self.token, runner=self._runner,
            sizer=self.sizer, threads=threads, task_window=self.task_window,
            max_in_flight=self.max_in_flight, resources=self.resources,
            vectorized=self.vectorized, retries=self.retries,
            objectives=self.objectives, trial_timeout=self.trial_timeout,
        )  # fmt: skip
        self._routing = Routing(
            self.name, self.execution, batch=self.batch,
            vectorized=self.vectorized, resources=self.resources,
            here=self._here is not None,
        )  # fmt: skip
        self._deadline = (
            None if self.timeout is None else time.monotonic() + self.timeout
        )
        if self.reports:
            # subscribed before anything is submitted (the feed's servers, or
            # the first trials): the scheduler takes the subscription and the
            # submissions in order from one stream, so no report can reach it
            # first and be dropped as no one's
            self._channel = ReportChannel(_cluster(self), self.pruner)
        self._flying: Submitter[list[_Pending]]
        if self._here is not None:
            self._flying, self._here.on_move = self._here, partial(_moved, self)
        elif self._routing.fed:
            self._flying = self._fed_window()
            self._flying.start()  # while the first trials are asked
        else:
            self._flying = Window[list[_Pending]](
                _cluster(self), self.timeout, what=self.name
            )
        self._known = _Known(self.space_size)
        self._bar = progress_bar(self.progress, total=self.total, desc=self.name)
        state = _Run(report, self._deadline, peeked=time.monotonic())
        beat = Heartbeat(self.recorder.heartbeat, self.heartbeat_seconds, self.name)
        beat.start()
        try:
            while not self._turn(state):
                pass
            if state.outcomes or self._channel is not None:
                self._sync(state.outcomes, [])
                state.outcomes = []
        except BaseException as err:
            # the loop's error wins; the clean-up's go in its notes
            raised: BaseException = err
            first = report.first_failure
            if (
                isinstance(err, Exception)
                and self.raise_if_all_failed
                and report.all_failed
                and first is not None
            ):
                raised = self._all_failed_error(report, first)
                if raised is not err:
                    raised.__cause__ = err
            # interrupted: its tasks stop at their next trial, and none runs
            # once this returns
            running = self._flying.interrupt()
            if running is not None:
                raised.add_note(f"dasktune: {running}")
            for late in self._clean_up(beat, state.outcomes):
                raised.add_note(_clean_up_note(self.name, late))
            if raised is err:
                raise
            raise raised from err
        errors = self._clean_up(beat, state.outcomes)
        if errors:
            for late in errors[1:]:
                errors[0].add_note(_clean_up_note(self.name, late))
            raise errors[0]
        report.elapsed = time.perf_counter() - started
        self._routing.report(report, self._here)
        self._announce(report, finished=True)
        if self.raise_if_all_failed and report.first_failure and report.all_failed:
            raise self._all_failed_error(report, report.first_failure)
        if report.best_value < math.inf:
            report.best_value *= self.sign
        if self.signs is not None:
            signs = self.signs
            report.front = sorted(
                tuple(s * v for s, v in zip(signs, point, strict=True))
                for point in self._teller.front.values()
            )
        return report

    def _turn(self, state: _Run) -> bool:
        """One turn of the loop: ask, record and claim in one transaction,
        submit, then wait for the next results. True when the run is over
        (``report.stopped`` says why)."""
        report = state.report
        if state.expired():
            report.stopped = "timeout"
            return True
        asking, asked_any = self._ask_round(state)
        claims = [Claim(p.param_hash, p.record) for p in asking]
        decisions = []
        if state.outcomes or claims:
            decisions = self._sync(state.outcomes, claims)
            state.outcomes = []
        to_run, told_any = self._apply(state, asking, decisions)
        self._grow_reuse(decisions)
        state.submitted += len(to_run)
        if to_run and self.batch:
            # evaluated now, whole: tell, record, and ask the next batch
            outcomes = self._evaluate_batch(to_run)
            for pending, outcome in zip(to_run, outcomes, strict=True):
                self._record(state, pending, outcome)
            self._check_failures(report, state.outcomes, state.last_error)
            return False
        if to_run:
            self._submit(to_run)
            self._announce(report, state)  # the new trials: the page draws them
        if state.waiting:
            # read-only: claim again only trials their holder gave up
            left = None if self.n_trials is None else self.n_trials - state.submitted
            state.peeked, state.recheck, state.waiting, state.taking = peek_elsewhere(
                self.recorder, state.waiting, state.peeked, self._flying, left
            )
            if state.recheck:
                return False
        if not len(self._flying):
            return self._idle(state, asked_any or told_any)
        if state.more:
            # the asks stopped part-way to send what they had: ask on, with
            # the results already in
            state.more = False
            return self._harvest(state, block=False)
        return self._harvest(state)

    def _ask_round(self, state: _Run) -> tuple[list[_Pending], bool]:
        """Ask within the window and the trial budget: the new claims (and the
        trials to claim again), and whether anything was asked."""
        fresh: dict[str, _Pending] = {}
        asked_any = False
        known, report = self._known, state.report
        # the trials other drivers hold, by hash: a repeat joins them
        held = {p.param_hash: p for p in (*state.waiting, *state.recheck)}
        # fed trials start as soon as they are asked: a slow sampler's asks
        # go out every _ASK_SLICE seconds, not once the whole window is asked
        # (its first trials would wait for the last asks, and the workers idle
        # while the driver asks, then the driver while the workers run)
        if self._routing.draining:
            if len(self._flying):
                return [], False  # no trial asked until the tasks are back
            if self.optimizer.finished or self._budget_spent(state.submitted):
                self._routing.draining = False  # nothing left to feed
            else:
                self._start_feed()
        sliced = time.monotonic() + _ASK_SLICE if self._routing.fed else None
        while (
            known.why_stop() is None
            and self._room(state.claimed, fresh, state.submitted + state.taking)
            and not self._space_covered(state, fresh)
        ):
            if state.expired():
                break
            if fresh and sliced is not None and time.monotonic() > sliced:
                state.more = True
                break
            if sliced is not None and self._flying.arrived():
                # results that came in while it asked: told before its next ask
                # (as a thread of Optuna's own loop tells, then asks)
                self._harvest(state, block=False)
            trial = self.optimizer.ask()
            if trial is None:
                break
            if self._routing.fed is None and self._routing.decide(
                self.optimizer, _cluster(self), self.options
            ):
                self._start_feed()  # decided at once: nothing sent yet
            asked_any = True
            skipped = report.skipped
            pending = self._admit(trial, state.claimed, fresh, held, report)
            if pending is not None:
                fresh[pending.param_hash] = pending
            elif report.skipped == skipped:
                known.again(1)  # joined a trial already pending
                report.joined += 1
        asking = [*fresh.values(), *state.recheck]
        state.recheck, state.taking = [], 0
        return asking, asked_any

    def _apply(
        self, state: _Run, asking: list[_Pending], decisions: Sequence[Decision]
    ) -> tuple[list[_Pending], bool]:
        """Act on the store's decisions: the trials to evaluate, and whether a
        recorded result was told (reused)."""
        to_run: list[_Pending] = []
        told_any = False
        known = self._known
        for pending, decision in zip(asking, decisions, strict=True):
            pending.number = decision.number
            kind = decision.kind
            if kind == DecisionKind.EVALUATE:
                state.claimed[pending.param_hash] = pending
                to_run.append(pending)
                known.new()
            elif kind == DecisionKind.ELSEWHERE:
                # waited for (or taken over once its holder is gone) before the
                # run may report finished
                state.waiting.append(pending)
            else:
                # a pruned trial's value is the last one it reported
                final = kind in (DecisionKind.DONE, DecisionKind.PRUNED)
                self._teller.tell(
                    pending,
                    decision.value if final else None,
                    state.report,
                    best=kind == DecisionKind.DONE,
                    values=decision.values,
                    constraints=decision.constraints,
                )
                state.report.reused += 1
                told_any = True
                known.done(pending.param_hash)
                if self._count_proposals:
                    self._bar.update(len(pending.trials))
        return to_run, told_any

    def _idle(self, state: _Run, moved: bool) -> bool:
        """Nothing of this driver's in flight: whether the run is over (and
        why), or raise for an optimizer that can never propose again."""
        report = state.report
        if state.waiting:
            return False
        if self._budget_spent(state.submitted) or self.optimizer.finished:
            report.stopped = "finished" if self.optimizer.finished else "n_trials"
            return True
        why = self._known.why_stop()
        if why is not None:
            report.stopped = why
            return True
        if not moved:
            msg = (
                f"{type(self.optimizer).__name__}.ask() returned None while no "
                "trial was pending and the optimizer is not finished: it can never "
                "propose again"
            )
            raise DasktuneError(msg)
        return False

    def _harvest(self, state: _Run, block: bool = True) -> bool:
        """Wait for the next results (``block=False``: take those in) and
        record them; True on the timeout."""
        report = state.report
        try:
            batch = self._flying.next_batch(block)
        except TimeoutError:
            report.stopped = "timeout"
            return True
        channel = self._channel
        stuck: list[tuple[str, str]] = []
        carriers: list[distributed.Future] = []
        for future, result, group in batch:
            done = self._sender.outcomes(future, result, group)
            if self._routing.choice is not None:
                self._routing.timed(
                    [o.duration for o in done if o.duration is not None]
                )
            for pending, outcome in zip(group, done, strict=True):
                worker = stuck_worker(outcome.exception)
                if worker is not None:
                    stuck.append((worker, f"trial {pending.number}"))
                    if isinstance(future, distributed.Future):
                        carriers.append(future)
            if channel is not None:
                # the trials' last reports first: stored, and seen by the
                # pruner, before the trials are recorded and completed
                steps = {
                    p.number: o.reported
                    for p, o in zip(group, done, strict=True)
                    if o.reported is not None
                }
                if steps:
                    channel.wait_for(steps, _REPORT_WAIT_SECONDS)
            for pending, outcome in zip(group, done, strict=True):
                self._record(state, pending, outcome)
        if stuck:
            batch = []  # the stuck tasks' futures: released before the restart
            free_workers(_cluster(self), stuck, self.trial_timeout or 0.0, carriers)
            carriers = []
        if report.best_value < math.inf:
            self._bar.set_postfix_str(f"best={self.sign * report.best_value:.6g}")
        elif self._teller.front:
            self._bar.set_postfix_str(f"Pareto front: {len(self._teller.front)}")
        self._announce(report, state)
        self._check_failures(report, state.outcomes, state.last_error)
        return False

    def _announce(
        self,
        report: RunReport,
        state: _Run | None = None,
        finished: bool = False,
    ) -> None:
        """Tell the Dask dashboard's dasktune page where the run is (a Dask
        event, at most once a second, and once at the end); for trials that
        report, with the numbers of those in flight and the topic key their
        reports travel on, so the page draws their curves."""
        channel = self._channel
        running, trials = 0, []
        if state is not None:  # submitted by this run, not yet back
            ended = report.evaluated + report.pruned + report.failed
            running = max(state.submitted - ended, 0)
            if channel is not None:
                trials = [p.number for p in state.claimed.values()]
        best = report.best_value
        message = {
            "done": report.evaluated + report.reused,
            "pruned": report.pruned,
            "failed": report.failed,
            "running": running,
            "total": self.total,
            "best": None if best == math.inf else self.sign * best,
            "execution": "feed" if self._routing.fed else "tasks",
            "finished": finished,
            "reports": None if channel is None else channel.key,
            "trials": trials,
            "metrics": self.metric_names,
            "front": None if self.signs is None else len(self._teller.front),
        }
        self._announcer.send(message, final=finished)

    def _clean_up(self, beat: Heartbeat, outcomes: list[Outcome]) -> list[Exception]:
        """End the run: every step is tried; return the errors of those that
        raised (the caller decides which error wins)."""
        errors: list[Exception] = []
        steps: list[Callable[[], Any]] = [
            beat.stop,
            self._bar.close,
            self._flying.cancel,
        ]
        if outcomes or self._channel is not None:
            # the outcomes harvested and the reports received: written last
            steps.append(partial(self._sync, list(outcomes), [], raise_errors=False))
        if self._channel is not None:
            steps.append(self._channel.close)
        steps.append(self.recorder.release)
        for step in steps:
            try:
                step()
            except Exception as err:
                errors.append(err)
        return errors

    def _grow_reuse(self, decisions: Sequence[Any]) -> None:
        """Claim more per transaction while every claim is reused (a re-run)."""
        if not decisions:
            return
        reused = (DecisionKind.DONE, DecisionKind.PRUNED, DecisionKind.FAILED)
        if all(d.kind in reused for d in decisions):
            self.reuse_room = min(
                self.reuse_burst, max(2 * self.reuse_room, 2 * self.task_window)
            )
        elif any(d.kind == DecisionKind.EVALUATE for d in decisions):
            self.reuse_room = 0

    def _record(self, state: _Run, pending: _Pending, outcome: Outcome) -> None:
        """Tell the optimizer and queue the outcome; keep a failure's error."""
        report = state.report
        del state.claimed[pending.param_hash]
        state.outcomes.append(outcome)
        self._known.done(pending.param_hash)
        self._bar.update(len(pending.trials) if self._count_proposals else 1)
        channel = self._channel
        verdict = None if channel is None else channel.verdict(pending.number)
        if outcome.status == TrialStatus.DONE and verdict is not None:
            # stopped by the pruner, and returned (its stop not seen, or obeyed
            # by returning): pruned, as the pruner counts it
            outcome.status = TrialStatus.PRUNED
        if outcome.status == TrialStatus.PRUNED:
            outcome.error = (
                verdict.reason
                if verdict is not None
                else "the objective raised TrialPruned (no pruner decision)"
            )
            report.pruned += 1
            self._teller.tell(
                pending, outcome.value, report, best=False,
                values=outcome.values, constraints=outcome.constraints,
            )  # fmt: skip
            return
        if outcome.status == TrialStatus.DONE:
            report.evaluated += 1
            if channel is not None:
                channel.complete(pending.number, outcome.value)
            self._teller.tell(
                pending, outcome.value, report,
                values=outcome.values, constraints=outcome.constraints,
            )  # fmt: skip
            return
        report.failed += 1
        if report.first_failure is None:
            report.first_failure = outcome
        try:
            self._teller.tell(pending, None, report)
        except Exception as err:
            # the optimizer stopped on the +inf of a failure: say which
            if self.raise_if_all_failed and report.all_failed:
                raise self._all_failed_error(report, report.first_failure) from err
            raise err from failure_exception(outcome)
        if outcome.error:
            state.last_error = outcome.error

    def _all_failed_error(self, report: RunReport, first: Outcome) -> BaseException:
        return all_failed_error(failure_exception(first), self.name, report.failed)

    def _check_failures(
        self, report: RunReport, outcomes: list[Outcome], last_error: str | None
    ) -> None:
        if (
            self.raise_if_all_failed
            and report.all_failed
            and report.first_failure is not None
            and report.failed >= max(_ALL_FAILED_STOP, 2 * self.task_window)
        ):
            # nothing has ever worked: stop now, not after maxiter generations
            self._sync(outcomes, [])
            outcomes.clear()
            raise self._all_failed_error(report, report.first_failure)
        if self.max_failures is None or report.failed < self.max_failures:
            return
        self._sync(outcomes, [])
        outcomes.clear()
        msg = (
            f"{self.name}: stopped after {report.failed} failed trials "
            f"(max_failures={self.max_failures}); the last one raised:\n{last_error}"
        )
        raise TooManyFailuresError(msg)

    def _evaluate_batch(self, to_run: list[_Pending]) -> list[Outcome]:
        objective: BatchObjective = self.objective  # type: ignore[assignment]
        started = time.time()
        try:
            raw = objective.evaluate_batch([p.call for p in to_run])
        except Exception as err:
            if len(to_run) == 1:
                return [
                    failure(to_run[0].param_hash, traceback.format_exc(), started, err)
                ]
            # find which parameter sets fail: the others are still good
            return [o for p in to_run for o in self._evaluate_batch([p])]
        finished = time.time()
        return [
            outcome_of(p.call, p.param_hash, r, started, finished, self.objectives)
            for p, r in zip(to_run, raw, strict=True)
        ]

    def _sync(
        self,
        outcomes: Sequence[Outcome],
        claims: Sequence[Claim],
        *,
        raise_errors: bool = True,
    ) -> list[Any]:
        """Write the reports received since the last turn, then the outcomes
        and claims (:meth:`Recorder.sync`)."""
        if self._channel is not None:
            values = self._channel.drain(raise_errors=raise_errors)
            if values:
                self.recorder.add_values(values)
        if outcomes or claims:
            return self.recorder.sync(outcomes, claims)
        return []

    @property
    def optimizer_wants_values(self) -> bool:
        return bool(self.optimizer.wants_values)

    def _room(
        self, claimed: dict[str, _Pending], fresh: dict[str, _Pending], submitted: int
    ) -> bool:
        if self._budget_spent(submitted + len(fresh)):
            return False
        # the claimed trials are exactly those in flight
        n_flying = len(claimed) + len(fresh)
        if self.max_in_flight is not None:
            return n_flying < self.max_in_flight
        # a batch-synchronous optimizer's whole batch goes out at once; a re-run
        # over done trials claims more per transaction
        batch = int(self.optimizer.batch_size)
        window = self.task_window * self.sizer.size
        return n_flying < max(window, batch, len(claimed) + self.reuse_room)

    def _space_covered(self, state: _Run, fresh: dict[str, _Pending]) -> bool:
        """Whether every point of a finite space is done or pending: another
        ask could only repeat one (a join) until results come back, so none is
        made (a space of 4 points asked for 1,000 trials counted 1,000 joins)."""
        done, size = self._known.done_hashes, self.space_size
        if done is None or size is None:
            return False
        others = (*state.waiting, *state.recheck)
        if len(done) + len(state.claimed) + len(fresh) + len(others) < size:
            return False
        seen = done | state.claimed.keys() | fresh.keys()
        return len(seen | {p.param_hash for p in others}) >= size

    def _budget_spent(self, count: int) -> bool:
        return self.n_trials is not None and count >= self.n_trials

    def _admit(
        self,
        trial: Trial,
        claimed: dict[str, _Pending],
        fresh: dict[str, _Pending],
        held: dict[str, _Pending],
        report: RunReport,
    ) -> _Pending | None:
        """A new claim for ``trial``, or ``None`` when it joins one in flight."""
        source = self.to_record(trial.params)
        record, h = canonical(source)
        same = claimed.get(h) or fresh.get(h) or held.get(h)
        if same is not None:
            same.trials.append(trial)
            return None
        if self.keep is not None and not self.keep(record):
            report.skipped += 1
            if self._count_proposals:
                self._bar.update(1)
            if self.optimizer_wants_values:
                self.optimizer.tell(trial, math.inf)
            return None
        # one mapping for both (a Search's): canonical copied what it records
        call = source if self._call_is_record else self.to_call(trial.params)
        return _Pending(h, record, call, [trial])

    # -- submission and results --------------------------------------------------

    def _submit(self, to_run: list[_Pending]) -> None:
        """Send ``to_run`` as tasks into the window (:class:`Sender`): a
        batch-synchronous optimizer's batch as one task per worker, unless
        fed (fed trials pay no task each: grouped as others)."""
        if self._routing.fed is None and self._routing.decide(
            self.optimizer, _cluster(self), self.options
        ):
            self._start_feed()  # decided at once: nothing sent yet
        whole_batch = (
            self.max_in_flight is None
            and self.optimizer.batch_size > 0
            and not self._routing.fed
        )
        channel = None if self._channel is None else self._channel.route
        self._sender.submit(
            self._flying, to_run, whole_batch=whole_batch, channel=channel
        )

    def _start_feed(self) -> None:
        """The tasks sent while undecided are back: feed the rest."""
        self._flying.cancel()
        window = self._fed_window()
        window.start()
        self._flying = window
        self._routing.started_feed()

    def _fed_window(self) -> FedWindow[list[_Pending]]:
        """A window feeding this run's trials, timed out at the run's deadline."""
        left = None
        if self._deadline is not None:
            left = max(0.0, self._deadline - time.monotonic())
        return FedWindow(_cluster(self), self._runner, left, name=self.name)
