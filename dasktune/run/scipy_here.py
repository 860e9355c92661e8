"""A scipy method run whole in the caller's thread, while the policy keeps it here.

:func:`run_scipy_here` calls scipy's own function (``differential_evolution``,
``shgo``) in the caller's thread, on the objective wrapped by :class:`HereCalls`,
and DE's or shgo's ``workers=`` a map of dasktune's (:class:`HereMap`) that
evaluates each generation here: no ask/tell thread, no driver turn per
evaluation. It keeps the rules of :class:`~dasktune.run.local.LocalRun` where
they bear on a result: a value is read by :func:`dasktune._values.read_result`
and a NaN refused; a failing call is told ``+inf`` and the run goes on, and when
every evaluation failed the first failure's own exception is raised; a point
proposed again is answered from this run's cache; ``maxfev`` and the timeout are
checked before each evaluation.

The first evaluations are timed for the
:class:`~dasktune.run.policy.ExecutionPolicy` ("auto"), and each generation
is shown to it again. When it keeps a run of waiting evaluations here on
several threads (DE), a :class:`~dasktune.run.threads_here.HereThreads`
created for the run evaluates each generation's points ahead, and
:class:`HereCalls` reads them in order, with the rules above; the threads are
joined when the run ends, however it ends. When the policy sends the run to
the cluster, the run stops here
(:class:`Moved`) with its evaluations kept in a
:class:`~dasktune.optim.scipy_bridge.PointCache`: the caller replays the same
seeded run on the ask/tell path, which answers these points from the cache.
"""

from __future__ import annotations

import copy
import functools
import logging
import math
import time
import traceback
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import scipy.optimize

from dasktune._values import check_not_nan, read_result
from dasktune.optim.scipy_bridge import PointCache
from dasktune.records import Outcome, TrialStatus
from dasktune.run.base import ALL_FAILED_STOP
from dasktune.run.policy import (
    WAITS_BELOW,
    ExecutionDecision,
    ExecutionPolicy,
    ended_while_timing,
)
from dasktune.run.summary import RunReport, all_failed_error
from dasktune.run.threads_here import (
    Evaluated,
    HereThreads,
    cpu_seconds,
    sched_clock,
)

__all__ = [
    "CountedCallback",
    "HereCalls",
    "HereMap",
    "Moved",
    "moved_policy",
    "replay_kwargs",
    "run_scipy_here",
    "skip_callbacks",
]

logger = logging.getLogger("dasktune")


class Moved(BaseException):
    """Raised inside scipy to stop a run the policy moved to the cluster
    (a ``BaseException``: scipy lets it through)."""

    def __init__(self, decision: ExecutionDecision) -> None:
        super().__init__(decision.reason)
        self.decision = decision
        #: the user's callback's calls made here (set by ``run_scipy_here``)
        self.callbacks = 0


class _Stopped(BaseException):
    """Raised inside scipy at ``maxfev`` or the timeout."""


class HereCalls:
    """``fun(x, *args)`` as scipy calls it in the caller's thread (see the
    module notes); ``report`` and ``cache`` fill as it runs."""

    def __init__(
        self,
        fun: Callable[..., Any],
        args: tuple[Any, ...],
        *,
        policy: ExecutionPolicy,
        name: str,
        maxfev: int | None,
        timeout: float | None,
    ) -> None:
        self.fun, self.args, self.policy, self.name = fun, args, policy, name
        self.maxfev = maxfev
        self.timeout = timeout
        self.deadline = None if timeout is None else time.perf_counter() + timeout
        self.report = RunReport(execution="local")
        self.cache = PointCache()
        self.decision: ExecutionDecision | None = policy.forced
        self._probe: list[float] = []
        self._cpu: list[float] = []  # the probe's CPU seconds
        #: the threads evaluating a waiting run ahead, when the policy chose them
        self.threads: HereThreads | None = None
        #: scipy maps each generation through ``HereMap`` (DE): threads may
        #: evaluate it; the points of the one being mapped
        self.mapped = False
        self.generation: list[Any] = []
        #: evaluations of the current generation, and their seconds
        self.batch_count, self.batch_seconds = 0, 0.0
        self.seconds = 0.0  # of every evaluation made here

    def __call__(self, x: Any, *args: Any) -> float:
        # args: scipy's, the run's own (the objective gets self.args)
        key = self._key(x)
        values = self.cache.values
        if key in values:
            self.report.reused += 1
            return values[key]
        report = self.report
        done = self.threads.take(key) if self.threads is not None else None
        if done is None and self.decision is None and not self._probe and self.mapped:
            done = self._first(key, x)
        if done is None or done.skipped:
            self._check_room()  # a point evaluated ahead was within both
            probing = self.decision is None
            clock = sched_clock() if probing else (0.0, 0.0)
            t0 = time.perf_counter()
            err: Exception | None = None
            try:
                # x as scipy gives it, as in scipy's serial run
                raw = self.fun(x, *self.args)
            except Exception as raised:
                raw, err = None, raised
            seconds = time.perf_counter() - t0
            cpu = cpu_seconds(seconds, clock, sched_clock()) if probing else 0.0
        else:
            raw, err, seconds, cpu = done.raw, done.error, done.seconds, done.cpu
        value = self._value(x, raw, err, seconds)
        values[key] = value
        self.batch_count += 1
        self.batch_seconds += seconds
        self.seconds += seconds
        if self.decision is None:
            self._probe.append(seconds)
            self._cpu.append(cpu)
            self._decide(
                self.policy.after_probe(
                    self._probe,
                    report.evaluated + report.failed,
                    cpu=self._cpu if self.mapped else None,
                )
            )
        return value

    def _first(self, key: bytes, x: Any) -> Evaluated | None:
        """The run's first evaluation, in a thread of the run's when the
        policy may choose threads for it (else ``None``: made here). When
        its thread has mostly waited so far, a millisecond into it, the rest
        of its generation starts in the other threads at once, not after it
        (:meth:`HereThreads.first`): a short run saves a round of its
        evaluations."""
        width = self.policy.threads_width()
        if width is None:
            return None
        self._check_room()
        self.threads = HereThreads(width, self.fun, self.args, self.deadline)
        self.threads.first(
            key, x, self._ahead_of(self.generation), self._room, WAITS_BELOW
        )
        return self.threads.take(key)

    @property
    def in_threads(self) -> bool:
        """Whether the policy chose threads for the run's evaluations."""
        return self.decision is not None and self.decision.threads > 1

    @staticmethod
    def _key(x: Any) -> bytes:
        if type(x) is np.ndarray and x.dtype == np.float64 and x.flags.c_contiguous:
            return x.tobytes()  # PointCache.key's bytes, without its copy
        return PointCache.key(x)

    def _check_room(self) -> None:
        """Stop the run at ``maxfev`` or past the timeout (before a call)."""
        report = self.report
        if self.maxfev is not None and report.evaluated + report.failed >= self.maxfev:
            report.stopped = "n_trials"
            raise _Stopped
        if self.deadline is not None and time.perf_counter() > self.deadline:
            report.stopped = "timeout"
            raise _Stopped

    def _value(self, x: Any, raw: Any, err: Exception | None, seconds: float) -> float:
        """The value of a call that returned ``raw`` or raised ``err``,
        recorded: read and checked, ``+inf`` for a failure."""
        report = self.report
        if err is None:
            if type(raw) is float and raw == raw:  # a number, not NaN: as read
                value = raw
            else:
                try:
                    read, _, _ = read_result(raw)
                    check_not_nan(read, {"x": np.asarray(x).tolist()})
                    value = read[0]
                except Exception as refused:
                    err = refused
        if err is not None:
            self._failed(err, seconds)
            return math.inf
        report.evaluated += 1
        if value < report.best_value:
            report.best_value = value
            report.best_params = {"x": np.asarray(x, dtype=float).tolist()}
        return value

    def ahead(self, points: list[Any]) -> None:
        """Start evaluating ``points`` (the rest of a generation) in the run's
        threads, when it has them; each is read in order by ``__call__``."""
        if self.threads is not None:
            self.threads.ahead(self._ahead_of(points), self._room)

    def _ahead_of(self, points: list[Any]) -> list[tuple[bytes, Any]]:
        """``points`` not known yet, keyed."""
        values = self.cache.values
        keyed = ((self._key(x), x) for x in points)
        return [(key, x) for key, x in keyed if key not in values]

    @property
    def _room(self) -> float:
        """How many evaluations ``maxfev`` leaves."""
        if self.maxfev is None:
            return math.inf
        return self.maxfev - self.report.evaluated - self.report.failed

    def close(self) -> None:
        """Join the run's threads, if it has them (the run ended or stops)."""
        if self.threads is not None:
            self.threads.close()
            self.threads = None

    def _failed(self, err: Exception, seconds: float) -> None:
        report = self.report
        report.failed += 1
        if report.first_failure is None:
            report.first_failure = Outcome(
                "",  # not recorded: no store
                TrialStatus.FAILED,
                error="".join(traceback.format_exception(err)),
                exception=err,
                started=time.time() - seconds,
                finished=time.time(),
                duration=seconds,
            )
        if report.all_failed and report.failed >= ALL_FAILED_STOP:
            # nothing has ever worked: stop now, not after maxiter generations
            raise self.all_failed_error()

    @property
    def timed(self) -> tuple[int, float]:
        """Evaluations made here and their seconds: handed to a replay moved
        to the cluster, so that it knows their cost at once."""
        return self.report.evaluated + self.report.failed, self.seconds

    def generation_done(self) -> None:
        """Show the generation just evaluated to the policy (a local run whose
        evaluations grew expensive moves)."""
        count, seconds = self.batch_count, self.batch_seconds
        self.batch_count, self.batch_seconds = 0, 0.0
        if self.decision is not None and self.decision.where == "local":
            done = self.report.evaluated + self.report.failed
            threads = self.decision.threads
            self._decide(self.policy.revisit(count, seconds, done, threads))

    def _decide(self, decision: ExecutionDecision | None) -> None:
        if decision is None:
            return
        self.decision = decision
        logger.debug("%s: execution %s: %s", self.name, decision.where, decision.reason)
        if decision.threads > 1 and self.threads is None:
            self.threads = HereThreads(
                decision.threads, self.fun, self.args, self.deadline
            )
        if decision.where != "local":
            raise Moved(decision)

    def all_failed_error(self) -> BaseException:
        """The first failure's own exception, noted as every evaluation's."""
        first = self.report.first_failure
        assert first is not None and first.exception is not None
        return all_failed_error(
            first.exception, self.name, self.report.failed, "the caller's process"
        )


class HereMap:
    """scipy's ``workers=``: ``workers(func, iterable)`` evaluates a generation
    in the caller's thread (its points evaluated ahead in the run's threads,
    when the policy chose them; read in order all the same), then shows it
    to the policy."""

    def __init__(self, calls: HereCalls) -> None:
        self.calls = calls

    def __call__(
        self, func: Callable[[Any], Any], iterable: Iterable[Any]
    ) -> list[Any]:
        calls = self.calls
        points = calls.generation = list(iterable)
        values: list[Any] = []
        ahead = False
        for index, x in enumerate(points):
            if not ahead and calls.in_threads:  # chosen (at the last point)
                calls.ahead(points[index:])  # the rest, in the run's threads
                ahead = True
            values.append(func(x))
        calls.generation_done()
        return values


def run_scipy_here(
    method: str,
    pairs: np.ndarray,
    kwargs: dict[str, Any],
    calls: HereCalls,
) -> scipy.optimize.OptimizeResult | None:
    """scipy's ``method`` on ``calls`` in this thread: its result, or ``None``
    when stopped at ``maxfev`` or the timeout (``calls.report`` says which).

    Raises
    ------
    Moved
        When the policy sent the run to the cluster.
    Exception
        The first failure's, when every evaluation failed; scipy's own.
    """
    kwargs = dict(kwargs)
    counted = None
    if kwargs.get("callback") is not None:
        counted = kwargs["callback"] = CountedCallback(kwargs["callback"])
    if method == "differential_evolution":
        if kwargs.setdefault("updating", "deferred") == "deferred":
            kwargs["workers"] = HereMap(calls)
            calls.mapped = True  # a waiting run's generations may go to threads
    else:  # shgo
        kwargs["workers"] = HereMap(calls)
    bounds = [tuple(pair) for pair in pairs.tolist()]
    started = time.perf_counter()
    report = calls.report
    try:
        result = getattr(scipy.optimize, method)(calls, bounds, **kwargs)
    except _Stopped:  # maxfev or the timeout, maybe before any decision
        _decided_at_the_end(calls, f"stopped ({report.stopped})")
        return None
    except Moved as moved:
        moved.callbacks = 0 if counted is None else counted.calls
        raise
    except Exception as err:
        if report.all_failed and report.first_failure is not None:
            exc = calls.all_failed_error()
            if exc is err:
                raise
            raise exc from err
        raise
    finally:
        calls.close()
        report.elapsed = time.perf_counter() - started
    if report.all_failed and report.first_failure is not None:
        raise calls.all_failed_error()
    report.stopped = "finished"
    _decided_at_the_end(calls, "ended")
    result.nfev_evaluated = report.evaluated
    return result


def _decided_at_the_end(calls: HereCalls, how: str) -> None:
    """The decision of a run that ``how`` (ended, stopped) while its first
    evaluations were still being timed: it stayed here."""
    if calls.decision is None:
        calls.decision = ended_while_timing(calls._probe, how=how)


class CountedCallback:
    """The user's callback, counting its calls (scipy reads its signature)."""

    def __init__(self, callback: Callable[..., Any], skip: int = 0) -> None:
        self.callback = callback
        self.calls = 0
        self.skip = skip
        functools.update_wrapper(self, callback)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls <= self.skip:  # made already, before a replay
            return None
        return self.callback(*args, **kwargs)


def replay_kwargs(method: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """scipy's keywords for replaying from its start a run begun with
    ``kwargs``: its ``rng``/``seed`` as it was before the run (a copy of a
    Generator; numpy's global state, which scipy's DE draws from without one,
    restored by :func:`skip_callbacks` then)."""
    replay = dict(kwargs)
    for name in ("rng", "seed"):
        given = kwargs.get(name)
        if given is not None and not isinstance(given, int | np.integer):
            replay[name] = copy.deepcopy(given)
    if method == "differential_evolution" and all(
        kwargs.get(name) is None for name in ("rng", "seed")
    ):
        replay["_global_state"] = np.random.get_state()
    return replay


def hand_back_random_state(kwargs: dict[str, Any], replay: dict[str, Any]) -> None:
    """Leave the ``rng``/``seed`` the user gave in ``kwargs`` where the
    replay left its copy (from :func:`replay_kwargs`): where scipy's own run
    would have left it, so a second call with it goes on as after scipy's."""
    for name in ("rng", "seed"):
        given, copied = kwargs.get(name), replay.get(name)
        if given is copied:
            continue
        if isinstance(given, np.random.Generator) and isinstance(
            copied, np.random.Generator
        ):
            given.bit_generator.state = copied.bit_generator.state
        elif isinstance(given, np.random.RandomState) and isinstance(
            copied, np.random.RandomState
        ):
            given.set_state(copied.get_state())


def skip_callbacks(replay: dict[str, Any], made: int) -> dict[str, Any]:
    """``replay`` (from :func:`replay_kwargs`) ready for the replay: the
    callback's first ``made`` calls skipped (made before), numpy's global
    random state as the run found it."""
    replay = dict(replay)
    state = replay.pop("_global_state", None)
    if state is not None:
        np.random.set_state(state)
    if replay.get("callback") is not None:
        replay["callback"] = CountedCallback(replay["callback"], skip=made)
    return replay


def moved_policy(
    policy: ExecutionPolicy, decision: ExecutionDecision
) -> ExecutionPolicy:
    """``policy`` with its decision taken: the replay's ask/tell run starts the
    cluster at once, going on here until it is up."""
    moved = copy.copy(policy)
    moved.forced = decision
    return moved
