"""Where evaluations run: decided from the work, not fixed (DESIGN.md).

One policy, :class:`ExecutionPolicy`, decides whether a run's evaluations stay
in the caller's process ("local") or cross a Dask cluster ("cluster"), and says
why. It imports no Dask: a run that stays local never imports ``distributed``.

How it decides
--------------
1. What forces a choice is taken first. The cluster, when the run needs it: a
   client was given, ``resources=`` (only a worker has them),
   a batch objective holding resident data (a ``ProducerConsumer``),
   ``trial_timeout=`` (a call is interrupted on a worker), a trial store or a
   progress bar (recorded and shown by the cluster's driver), or
   ``execution="tasks"``/``"feed"``. The caller's process, with
   ``execution="local"``.
2. Otherwise (``execution="auto"``) the first evaluations are timed where they
   run, in the caller's process, whether or not a Dask client is current:
   one that takes less than :data:`LOCAL_BELOW` keeps the run local;
   :data:`PROBE_EVALUATIONS` evaluations, or :data:`PROBE_SECONDS` of them,
   all above it move the run to the cluster (the current client's, and then
   one evaluation decides; else one started then). The threshold is one task's dispatch cost on a Dask cluster
   (about 2 ms a task, DASK-FACTS.md): an evaluation cheaper than that gains
   nothing from crossing to a worker; on two cores the cluster cannot pay back
   its own overhead below it. A run whose length is known (DE's generations,
   SPSA's iterations) also stays when the time the machine's cores could save
   on what is left is less than a cluster takes to start
   (:data:`STARTUP_SECONDS`; nothing with a client current).
3. An evaluation that waits goes to threads here instead of the cluster
   (DE's generations, ``dasktune.run.threads_here``): when the probe's thread
   spent less than :data:`WAITS_BELOW` of its time on the CPU (a sleep, I/O,
   native code releasing the GIL), the current client's workers all run on
   this host with more than one thread each (the user accepts concurrent
   calls; what they wait on is here), and the rest of the run would last less
   than :data:`THREADS_WITHIN` on as many threads, it runs on those in the
   caller's process: no round trip per generation, no feed to start. Only
   "auto" with nothing forcing the cluster, a client current (none given)
   and the run's length known. The first evaluation then runs in one of
   those threads: a millisecond into it, when its thread has mostly waited,
   the rest of its generation starts at once.
4. As a local run goes on, each batch (a DE generation, an SPSA iteration) is
   looked at again: when its evaluations average more than
   :data:`CLUSTER_ABOVE`, the rest of the run moves to the cluster; a run in
   threads moves when its rest would last :data:`THREADS_WITHIN` or more.

On the cluster, how a run's trials reach the workers (:class:`FeedChoice`):
a task per trial (or a group of fast ones), or fed to long-lived tasks
(``dasktune.run.feed``), which saves Dask's per-task latency but hides the
trials from the dashboard's task stream and holds every worker thread and,
through its actors, every worker. It pays for an optimizer that waits on its
results: a sequential sampler (each trial waits on the last result) and a
batch-synchronous one (DE's generations, SPSA's iterations: each batch waits
on the last, and a batch of tasks pays a round trip through the scheduler,
20-40 ms here, that a fed batch does not). With ``execution="auto"`` such a
run's first :data:`FEED_PROBE` trials go as tasks and are timed on their
workers; when all took less than :data:`FEED_BELOW`, the rest are fed. A run
whose evaluations were timed already, in the caller's process, is decided at
once from that time; a batch-synchronous run with fewer than
:data:`FEED_MIN_BATCHES` batches left to feed keeps its tasks (the feed's
start would cost what it saves). Never on a cluster that scales (adaptive, or
dask-jobqueue's batch jobs): a worker holding the feed's actor cannot be
retired.

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
    "FEED_BELOW",
    "FEED_MIN_BATCHES",
    "FEED_PROBE",
    "LOCAL_BELOW",
    "PROBE_EVALUATIONS",
    "PROBE_SECONDS",
    "STARTUP_SECONDS",
    "THREADS_WITHIN",
    "WAITS_BELOW",
    "ExecutionDecision",
    "ExecutionPolicy",
    "FeedChoice",
    "cluster_scales",
    "ended_while_timing",
    "seconds_text",
    "with_trials",
]

#: the choices of ``execution=``: measure ("auto"), the caller's process
#: ("local"), a task per trial or grouped tasks ("tasks"), long-lived tasks fed
#: trials ("feed")
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
#: an evaluation whose CPU time is less than this share of its wall time
#: mostly waits (a sleep, I/O, native code releasing the GIL): threads run
#: such evaluations side by side as well as processes do. Its CPU time is
#: counted as if it had never waited for a core (``threads_here.cpu_seconds``):
#: on a busy machine a CPU-bound call's own CPU time is a small share of it
WAITS_BELOW = 0.25
#: a waiting run goes to threads in the caller's process only when what is
#: left of it would last less than this there, seconds: a run that short is
#: over before the dashboard shows much of it, while a longer one is worth
#: watching there (issue #24: never hidden from the dashboard). The price of
#: being seen was measured, not a fixed cost: the cluster took ~45% longer at
#: every length from 0.05 to 3 s (10 ms sleeps on 16 threads: a generation's
#: round trip, ~10 ms; benchmarks/bench_threads_here.py)
THREADS_WITHIN = 1.0
#: a sequential sampler's trials shorter than this are fed ("auto"): sent as
#: tasks one at a time, each pays about a client round trip (~10 ms,
#: DASK-FACTS.md) and the scheduler's work, tens of ms on a small machine; a
#: trial this long loses at most ~10% to it, a longer one less, not worth
#: hiding the trials from the dashboard and holding the workers
FEED_BELOW = 0.25
#: trials timed as tasks before an "auto" run feeds the rest
FEED_PROBE = 3
#: a batch-synchronous run is fed only with at least this many batches left:
#: starting the feed (an actor and a long-lived task per worker thread) took
#: ~50 ms here, about what two batches' round trips as tasks cost
FEED_MIN_BATCHES = 3


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


def with_trials(reason: str, where: str, trials: str) -> str:
    """A run's execution ``reason`` with what its cluster driver's report says
    of how the trials reached the workers (``where``: "feed" or "tasks", and
    why: ``trials``); said once when both are the same request.

    >>> with_trials("the run has a client given (client=)", "feed", "short")
    'the run has a client given (client=); trials fed: short'
    >>> with_trials("execution='tasks' was asked for", "tasks",
    ...             "execution='tasks' was asked for")
    "execution='tasks' was asked for"
    """
    if not trials or trials == reason:
        return reason
    return f"{reason}; trials {'fed' if where == 'feed' else 'as tasks'}: {trials}"


def ended_while_timing(
    durations: Sequence[float],
    *,
    run: str = "run",
    timed: str = "evaluations",
    how: str = "ended",
) -> ExecutionDecision:
    """The decision of a ``run`` that ``how`` (ended, stopped) while its
    first ``timed`` calls (of ``durations`` seconds) were still being timed
    to decide: it stayed in the caller's process.

    >>> ended_while_timing([2e-6, 1e-6], run="map", timed="calls").reason
    "the map ended within the calls timed to decide (the fastest took 1.0 µs), in the caller's process"
    """
    if durations:
        fastest = f"the fastest took {seconds_text(min(durations))}"
    else:
        fastest = "none had returned"
    return ExecutionDecision(
        "local",
        f"the {run} {how} within the {timed} timed to decide ({fastest}), in the "
        "caller's process",
    )


@dataclass(frozen=True)
class ExecutionDecision:
    """Where a run's evaluations go, and why.

    Attributes
    ----------
    where : {"local", "cluster"}
    reason : str
        One sentence a user can read (it goes on the result and in a debug log
        line of the ``dasktune`` logger).
    threads : int
        How many threads of the caller's process evaluate a "local" run (1:
        the caller's own thread, one evaluation at a time).
    """

    where: str
    reason: str
    threads: int = 1


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
        #: what moving to the cluster costs before any work: nothing when a
        #: client is current (its cluster runs already), else a start
        self.startup = STARTUP_SECONDS
        if self.forced is None and _current_client() is not None:
            self.startup = 0.0
        #: the current cluster's threads here (:meth:`threads_width`), read
        #: once; False: not read yet
        self._width: int | bool | None = False

    @property
    def driver_execution(self) -> str:
        """What the cluster's driver is told: "tasks", "feed" or "auto"."""
        return self.execution if self.execution in ("tasks", "feed") else "auto"

    def after_probe(
        self,
        durations: Sequence[float],
        done: int | None = None,
        cpu: Sequence[float] | None = None,
    ) -> ExecutionDecision | None:
        """The decision from the first evaluations' ``durations`` (seconds, in
        the caller's process; ``done`` evaluations made so far, default as
        many; ``cpu``, their thread's CPU seconds, when taken), or ``None`` to
        time one more.

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
        # with a client current, one evaluation decides: a slow first call
        # that misleads it costs tasks on running workers, not a start
        needed = 1 if self.startup == 0.0 else PROBE_EVALUATIONS
        if len(durations) >= needed or sum(durations) >= PROBE_SECONDS:
            done = len(durations) if done is None else done
            short = self._too_short(fastest, done)
            if short is not None:
                return ExecutionDecision("local", short)
            threads = None if cpu is None else self._in_threads(durations, cpu, done)
            if threads is not None:
                return threads
            reason = (
                f"{len(durations)} evaluation(s) took {seconds_text(fastest)} or "
                f"more, above {seconds_text(LOCAL_BELOW)} (one task's dispatch "
                "cost): the cluster's workers run them in parallel"
            )
            return ExecutionDecision("cluster", reason)
        return None

    def revisit(
        self, evaluated: int, seconds: float, done: int = 0, threads: int = 1
    ) -> ExecutionDecision | None:
        """Look again at a local run after a batch of ``evaluated`` evaluations
        that took ``seconds`` (``done`` made so far; on ``threads`` threads):
        the cluster when they grew expensive, else ``None`` (stay). Only an
        "auto" run moves.

        >>> ExecutionPolicy(what="f").revisit(10, 1.0).where
        'cluster'
        >>> ExecutionPolicy(what="f").revisit(10, 1e-4) is None
        True
        """
        if self.execution != "auto" or evaluated == 0:
            return None
        mean = seconds / evaluated
        if threads > 1:  # waiting evaluations, in threads while the run is short
            lasts = self._threads_last(mean, done, threads)
            if lasts < THREADS_WITHIN:
                return None
            reason = (
                f"evaluations grew to {seconds_text(mean)} on average in "
                f"{threads} threads of the caller's process: the rest of the run "
                f"(~{seconds_text(lasts)} there) moved to the cluster"
            )
            return ExecutionDecision("cluster", reason)
        if mean <= CLUSTER_ABOVE or self._too_short(mean, done) is not None:
            return None
        reason = (
            f"evaluations grew to {seconds_text(mean)} on average in the caller's "
            f"process, above {seconds_text(CLUSTER_ABOVE)}: the rest of the run "
            "moved to the cluster"
        )
        return ExecutionDecision("cluster", reason)

    def _in_threads(
        self, durations: Sequence[float], cpu: Sequence[float], done: int
    ) -> ExecutionDecision | None:
        """Threads in the caller's process for a run that would go to the
        current client's cluster, when its evaluations wait (see
        :meth:`threads_width`)."""
        wall = sum(durations)
        if wall <= 0 or sum(cpu) >= WAITS_BELOW * wall:
            return None  # CPU-bound: processes, on the workers
        cost = wall / len(durations)
        width = self.threads_width(cost, done)
        if width is None:
            return None
        reason = (
            f"evaluations wait (CPU {sum(cpu) / wall:.0%} of "
            f"{seconds_text(cost)}): {width} threads in this process, as many as "
            f"the current cluster's workers run on this host; the rest of the run "
            f"takes ~{seconds_text(self._threads_last(cost, done, width))} there, "
            f"less than {seconds_text(THREADS_WITHIN)}"
        )
        return ExecutionDecision("local", reason, threads=width)

    def threads_width(self, cost: float = LOCAL_BELOW, done: int = 0) -> int | None:
        """How many threads of the caller's process may evaluate this run's
        waiting evaluations of ``cost`` seconds (``done`` made so far), or
        ``None``: an "auto" run of known length, nothing forcing the cluster,
        whose current client's workers all run on this host in threads (the
        user accepts concurrent calls; what they wait on is here), and whose
        rest lasts less than :data:`THREADS_WITHIN` on them.

        >>> ExecutionPolicy(what="f", expected=32).threads_width() is None
        True
        """
        if (
            self.execution != "auto"
            or self.forced is not None
            or self.expected is None
            or self.startup > 0  # no client current: nothing to size threads on
        ):
            return None
        if self._width is False:
            from dasktune.run.threads_here import here_threads

            self._width = here_threads(_current_client())
        if self._width is None or self._width is False:
            return None
        if self._threads_last(cost, done, self._width) >= THREADS_WITHIN:
            return None  # long enough to be worth watching on the dashboard
        return self._width

    def _threads_last(self, cost: float, done: int, width: int) -> float:
        """Seconds what is left of the run lasts on ``width`` threads."""
        left = max((self.expected or 0) - done, 0)
        return -(-left // width) * cost

    def _too_short(self, cost: float, done: int) -> str | None:
        """Why what is left of the run is too short to pay for starting a
        cluster, if it is (the run's length known)."""
        if self.expected is None:
            return None
        left = max(self.expected - done, 0)
        cores = os.cpu_count() or 1
        saved = cost * left * (1 - 1 / cores)  # at best, on every core
        if saved >= self.startup:
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


class FeedChoice:
    """Whether a cluster run's trials are fed to long-lived tasks or sent as
    tasks (see the module notes), and why.

    Parameters
    ----------
    execution : {"auto", "tasks", "feed"}
    sequential : bool
        The optimizer is a sequential sampler (it learns from each result and
        has no known batch).
    scales : str, optional
        Why the cluster scales (:func:`cluster_scales`), or ``None``.
    batched : bool, default False
        The optimizer is batch-synchronous (it learns from results, in known
        batches: DE's generations, SPSA's iterations). With ``sequential``,
        the only kinds "auto" may feed.
    cost : float, optional
        Seconds an evaluation took where it was timed before the run (the
        caller's process): "auto" decides at once from it.
    batches : int, optional
        How many batches the run has left, when known (``batched``).

    Attributes
    ----------
    decision : ExecutionDecision or None
        ``where`` is "feed" or "tasks"; ``None`` while the first trials are
        timed (they go as tasks).

    >>> choice = FeedChoice("auto", sequential=True, scales=None)
    >>> choice.decision is None, choice.observe([0.01, 0.02]) is None
    (True, True)
    >>> choice.observe([0.01]).where
    'feed'
    >>> FeedChoice("auto", sequential=True, scales=None).observe([1.5]).where
    'tasks'
    >>> FeedChoice("auto", sequential=False, scales=None, batched=True,
    ...            cost=0.01).decision.where
    'feed'
    """

    def __init__(
        self,
        execution: str,
        *,
        sequential: bool,
        scales: str | None,
        batched: bool = False,
        cost: float | None = None,
        batches: int | None = None,
    ):
        self._durations: list[float] = []
        self.decision: ExecutionDecision | None = None
        self._waits = (
            "a sequential sampler (each trial waits on the last result)"
            if sequential
            else "a batch-synchronous optimizer (each batch waits on the last, "
            "and a batch of tasks pays a round trip through the scheduler)"
        )
        if execution in ("tasks", "feed"):
            self.decision = ExecutionDecision(
                execution, f"execution={execution!r} was asked for"
            )
        elif not sequential and not batched:
            reason = (
                "a task per trial (or per group of fast trials): the optimizer "
                "does not learn from results (a grid, a random source), so no "
                "trial waits on another's latency"
            )
            self.decision = ExecutionDecision("tasks", reason)
        elif scales is not None:
            reason = (
                f"a task per trial: {scales}, and a worker holding the feed's "
                "actor could not be retired"
            )
            self.decision = ExecutionDecision("tasks", reason)
        elif (
            batched
            and batches is not None
            and (
                batches - (cost is None) < FEED_MIN_BATCHES  # the first, timed as tasks
            )
        ):
            reason = (
                f"a task per worker and batch: the run has {batches} batch(es) "
                f"left, too few to feed (the feed's start costs about what "
                f"{FEED_MIN_BATCHES - 1} batches' round trips do)"
            )
            self.decision = ExecutionDecision("tasks", reason)
        elif cost is not None:
            self.decision = self._from(
                cost, f"an evaluation took {seconds_text(cost)} in the caller's process"
            )

    def _from(self, longest: float, timed: str) -> ExecutionDecision:
        """The decision from the longest trial timed (``timed`` says how)."""
        if longest >= FEED_BELOW:
            reason = (
                f"a task per trial: {timed}, at least "
                f"{seconds_text(FEED_BELOW)}, where a task's overhead hardly "
                "matters (and each trial shows on the dashboard)"
            )
            return ExecutionDecision("tasks", reason)
        reason = (
            f"fed to long-lived tasks: {timed}, less than "
            f"{seconds_text(FEED_BELOW)}, so Dask's latency per task would cost "
            f"{self._waits} a good share of its time"
        )
        return ExecutionDecision("feed", reason)

    def observe(self, durations: Sequence[float]) -> ExecutionDecision | None:
        """Take the durations (seconds, on the workers) of trials done while
        undecided; the decision once made (then it stays), else ``None``."""
        if self.decision is not None:
            return None
        self._durations.extend(durations)
        longest = max(self._durations, default=0.0)
        if longest >= FEED_BELOW:
            self.decision = self._from(longest, f"a trial took {seconds_text(longest)}")
        elif len(self._durations) >= FEED_PROBE:
            timed = (
                f"the first {len(self._durations)} trials took at most "
                f"{seconds_text(longest)}"
            )
            self.decision = self._from(longest, timed)
        return self.decision


def cluster_scales(client: Any) -> str | None:
    """Why the cluster behind ``client`` scales (its workers come and go on
    its own), or ``None``: an adaptive cluster (``cluster.adapt()``), or
    dask-jobqueue's (its workers are batch jobs). A client of a scheduler
    started apart says nothing of its cluster: ``None``."""
    cluster = getattr(client, "cluster", None)
    if cluster is None:
        return None
    adaptive = getattr(cluster, "_adaptive", None)
    if getattr(adaptive, "state", None) in ("starting", "running"):
        return f"the cluster scales adaptively ({type(cluster).__name__}.adapt())"
    if type(cluster).__module__.split(".")[0] == "dask_jobqueue":
        return (
            f"the cluster's workers are batch jobs ({type(cluster).__name__}), "
            "retired as their jobs end"
        )
    return None
