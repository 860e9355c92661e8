"""Reports from inside an objective, and the pruner's decisions back to it.

An objective that takes a ``trial`` argument (``def objective(params,
trial)``, found by :func:`wants_trial`) gets a :class:`TrialHandle` and uses
it as Optuna's trial::

    def objective(params, trial):
        model = make_model(params)
        for epoch in range(100):
            loss = model.train_one_epoch()
            trial.report(epoch, loss)  # to the driver, at once
            if trial.should_prune():  # has the pruner stopped this trial?
                raise dasktune.TrialPruned
        return loss

Plain objectives, without a ``trial`` argument, are called as before.

How reports travel (``benchmarks/bench_report.py`` measured the options on a
2-process ``LocalCluster``, ``benchmarks/bench_stop_latency.py`` report ->
stop):

- on the run's direct line (:mod:`dasktune.run.line`): the driver's channel
  listens on a TCP port of its own, and each worker process opens one
  connection per run on its first report, from the objective's thread. A
  report is one small frame (``sendall``, tens of µs); the channel hands it
  to the pruner on the client's event loop at once, and writes a stop back on
  the connection the trial reported on; ``should_prune()`` reads what came
  without blocking, then is a set lookup. Neither Dask's batched streams nor
  the worker's event loop (which waits for the GIL while the objective
  computes) are on the way: report -> the trial knows, median 2-5 ms with
  20 ms epochs, against 6-30 ms through Dask alone;
- every report is also a Dask *event*: ``Worker.log_event`` puts it on the
  worker's batched stream to the scheduler, which pushes it to the driver's
  client, subscribed to the run's report topic. It draws the dashboard page's
  curves, and it is the report itself when the line is down: under TLS (the
  line is plain TCP), with ``dask.config.set({"dasktune.report-line":
  False})``, in a worker process that could not connect within a second (it
  does not retry in that run), or once a send failed (the driver gone). The
  channel counts a report that came both ways once;
- a decision to stop goes on the line when the trial reported on it, else
  straight from the driver's client to the worker that reported (Dask's
  ``run`` on that worker; through the scheduler when the client cannot reach
  the workers, or was made with ``direct_to_workers=False``), and always as
  an event on the run's stop topic; each worker process subscribes its worker
  client to that topic once per run and keeps the stopped trial numbers in
  memory. A stopped trial that reports again is told again (its subscription
  may have started after the decision, or it may be a re-run on another
  worker), so no decision is lost to a race;
- a lost worker loses nothing already reported: the events are at the
  scheduler. Dask re-runs the trial elsewhere; the channel ignores the steps
  it already has, and a trial stopped before is stopped at its first report.

A ``distributed.Queue`` or ``Variable`` costs a scheduler round trip per
report or per check, an actor a round trip per report and dies with its
worker.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import threading
import time
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any, Self

import distributed
import numpy as np
from distributed.protocol import pickle as _pickle

from dasktune.optim.pruners import Pruner, Verdict, check_report
from dasktune.run.line import Line, WorkerEnd, worker_end
from dasktune.run.line_server import Connection, LineServer

__all__ = ["ReportChannel", "TrialHandle", "report_topic", "stop_topic", "wants_trial"]


def report_topic(key: str) -> str:
    """The event topic a run's trials report on."""
    return f"dasktune-report-{key}"


def stop_topic(key: str) -> str:
    """The event topic a run's decisions to stop travel on."""
    return f"dasktune-stop-{key}"


def check_trial_first(objective: Callable[..., Any]) -> None:
    """Raise ``TypeError`` for Optuna's ``objective(trial)``, whose first
    argument is the trial: dasktune's objective gets the parameters first.

    >>> check_trial_first(lambda params, trial: 0.0)
    >>> check_trial_first(lambda trial: 0.0)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    TypeError: <lambda>(trial, ...) takes the trial first, as Optuna's ...
    """
    try:
        parameters = inspect.signature(objective).parameters
    except (TypeError, ValueError):  # a builtin without a signature
        return
    first = next(iter(parameters.values()), None)
    if (
        first is not None
        and first.name == "trial"
        and first.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD
    ):
        name = getattr(objective, "__name__", type(objective).__name__)
        msg = (
            f"{name}(trial, ...) takes the trial first, as Optuna's objectives "
            "do (trial.suggest_float(...)); dasktune calls objective(params) with "
            "a dict of the parameters (the space's or the source's): write "
            f"def {name}(params) and read params['x'], or {name}(params, trial) "
            "to report for pruning"
        )
        raise TypeError(msg)


def wants_trial(objective: Callable[..., Any]) -> bool:
    """Whether ``objective`` takes a ``trial`` argument (then it gets a handle).

    >>> wants_trial(lambda params, trial: 0.0)
    True
    >>> wants_trial(lambda params: 0.0)
    False

    Raises
    ------
    TypeError
        For Optuna's ``objective(trial)`` (see :func:`check_trial_first`).
    """
    try:
        parameters = inspect.signature(objective).parameters
    except (TypeError, ValueError):  # a builtin without a signature
        return False
    check_trial_first(objective)
    parameter = parameters.get("trial")
    return parameter is not None and parameter.kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )


# -- the worker's half ---------------------------------------------------------

_lock = threading.Lock()
# run key -> the trial numbers its driver stopped (pushed to this process)
_stopped: dict[str, set[int]] = {}
_subscribed: set[str] = set()  # the runs this process listens to


def _on_stop(key: str) -> Callable[[tuple[float, Any]], None]:
    def handler(event: tuple[float, Any]) -> None:
        _, numbers = event
        with _lock:
            _stopped[key].update(int(n) for n in numbers)

    return handler


def _note_stopped(key: str, numbers: list[int]) -> None:
    with _lock:
        _stopped.setdefault(key, set()).update(int(n) for n in numbers)


async def _mark_stopped(key: str, numbers: list[int]) -> None:
    """On a worker, told directly by the driver: these trials are stopped."""
    _note_stopped(key, numbers)


#: the fields of a worker's ``run`` call
_RUN = ("function", "args", "kwargs", "wait")


def _subscribe(key: str) -> None:
    """Subscribe this worker process to a run's stop topic, once."""
    with _lock:
        if key in _subscribed:
            return
        _subscribed.add(key)
        _stopped.setdefault(key, set())
    client = distributed.get_client()  # the worker's own client, made once
    client.subscribe_topic(stop_topic(key), _on_stop(key))


def report_arguments(
    args: tuple[object, ...], step: object, value: object
) -> tuple[object, object]:
    """The ``(step, value)`` of a call ``report(*args, step=step,
    value=value)`` (``None``: not given), never swapping two integers.

    >>> report_arguments((3, 0.5), None, None)
    (3, 0.5)
    >>> report_arguments((0.5,), 3, None)  # Optuna's report(loss, step=epoch)
    (3, 0.5)
    >>> report_arguments((), 3, 7)
    (3, 7)
    >>> report_arguments((3, 7), None, None)
    Traceback (most recent call last):
    ...
    TypeError: report(3, 7): two integers given positionally; the order is report(step, value) here, report(value, step) in Optuna: say which with report(step=3, value=7)
    """
    given = {"step": step, "value": value}
    free = [name for name, v in given.items() if v is None]
    if len(args) > len(free):
        keywords = "".join(f", {k}=..." for k in given if k not in free)
        msg = (
            f"report() takes a step and a value, got {len(args)} positional "
            f"argument(s) {args!r}{keywords}; write report(step, value) or "
            "report(step=..., value=...)"
        )
        raise TypeError(msg)
    if len(args) == 2 and all(_integer(a) for a in args):
        first, second = (int(a) for a in args)  # type: ignore[call-overload]
        msg = (
            f"report({first}, {second}): two integers given positionally; the "
            "order is report(step, value) here, report(value, step) in Optuna: "
            f"say which with report(step={first}, value={second})"
        )
        raise TypeError(msg)
    given.update(zip(free, args, strict=False))
    missing = [name for name, v in given.items() if v is None]
    if missing:
        msg = (
            f"report() needs a step and a value; {' and '.join(missing)} missing: "
            "write report(step, value) or report(step=..., value=...)"
        )
        raise TypeError(msg)
    return given["step"], given["value"]


def _integer(x: object) -> bool:
    return isinstance(x, int | np.integer) and not isinstance(x, bool)


class TrialHandle:
    """What an objective's ``trial`` argument is: report, and ask whether to stop.

    Parameters
    ----------
    number : int
        The trial's number in its search.
    key : str or Line, optional
        Where the run's channel listens (:attr:`ReportChannel.route`): its
        :class:`~dasktune.run.line.Line`, or its key alone (then reports
        travel as Dask events only). Without one (the objective called by
        hand) reports are checked and kept, and ``should_prune()`` is always
        False.

    Attributes
    ----------
    last_step, last_value : int and float, or None
        The last report: what a pruned trial is recorded with.
    """

    def __init__(self, number: int, key: str | Line | None = None) -> None:
        self.number = int(number)
        line = key if isinstance(key, Line) else None
        self.key = key.key if isinstance(key, Line) else key
        self.last_step: int | None = None
        self.last_value: float | None = None
        self._worker = None
        self._end: WorkerEnd | None = None
        if self.key is not None:
            self._worker = distributed.get_worker()
            _subscribe(self.key)
        if line is not None:  # connected on the first report
            self._end = worker_end(line, partial(_note_stopped, line.key))

    def report(
        self,
        *args: float,
        step: int | None = None,
        value: float | None = None,
    ) -> None:
        """Report ``value`` (a loss, a score) after ``step`` (an epoch count).

        ``report(step, value)`` positionally, the step first; with keywords in
        either order, as Optuna users write ``report(value=loss, step=epoch)``;
        and Optuna's ``report(loss, step=epoch)`` or ``report(epoch,
        value=loss)``. Two integers given positionally are refused: an
        integer value and its step would swap silently in Optuna's order.
        Steps must increase from one report to the next, and values be finite.

        Raises
        ------
        ValueError
            For a non-finite value, a negative step, or a step that does not
            come after the last one reported.
        TypeError
            For a step that is not an integer, a value that is not a number,
            two integers given positionally, or a step or value missing or
            given twice.
        """
        step, value = check_report(*report_arguments(args, step, value))
        if self.last_step is not None and step <= self.last_step:
            msg = (
                f"trial {self.number} reported step {step} after step "
                f"{self.last_step}; steps must increase (report each step once, "
                "in order)"
            )
            raise ValueError(msg)
        self.last_step, self.last_value = step, value
        if self._worker is not None and self.key is not None:
            message = [self.number, step, value, time.time(), self._worker.address]
            if self._end is not None:
                self._end.send(message)  # to the pruner at once, when up
            # and as an event: the dashboard page's curves, and the report
            # itself when the line is down (the channel counts it once)
            self._worker.log_event(report_topic(self.key), message)

    def should_prune(self) -> bool:
        """Whether the search's pruner has stopped this trial (then raise
        ``dasktune.TrialPruned``, or return)."""
        if self.key is None:
            return False
        if self._end is not None:
            self._end.drain()  # the stops on the line, without waiting
        with _lock:
            return self.number in _stopped.get(self.key, ())

    def __repr__(self) -> str:
        return f"TrialHandle(number={self.number}, last_step={self.last_step})"


# -- the driver's half ---------------------------------------------------------

#: reports from the line whose event copies are awaited, at most
_MAX_TWINS = 65536


def _report_frame(message: Any) -> tuple[int, int, float, float, str]:
    """A report from the line, ``[number, step, value, time, worker]``, checked.

    >>> _report_frame([3, 1, 0.5, 1.7e9, "tcp://w:1"])
    (3, 1, 0.5, 1700000000.0, 'tcp://w:1')
    >>> _report_frame([3, 1, "0.5", 0.0, "w"])
    Traceback (most recent call last):
    ...
    ValueError: not a report [number, step, value, time, worker]: [3, 1, '0.5', 0.0, 'w']
    """
    number, step, value, when, where = message
    if not (
        _count(number)
        and _count(step)
        and isinstance(value, float | int)
        and isinstance(when, float | int)
        and isinstance(where, str)
        and math.isfinite(value)
        and math.isfinite(when)
    ):
        msg = f"not a report [number, step, value, time, worker]: {message!r:.200}"
        raise ValueError(msg)
    return number, step, float(value), float(when), where


def _count(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


class ReportChannel:
    """The driver's end: reports in, through the pruner, decisions out.

    Reports are handled as they arrive, on the client's event loop: each new
    step of a trial goes to the pruner, and a trial it stops is told at once.
    The driver collects the reports to write to the store with :meth:`drain`;
    a stopped trial's reports until it stops are kept too (not given to the
    pruner again), so its last step and value are what it reached.

    Parameters
    ----------
    client : distributed.Client
    pruner : Pruner, optional
        Without one, reports are only collected.
    key : str, optional
        The topics' key (a new random one by default).

    Attributes
    ----------
    key : str
        The run's event topics' key.
    route : Line or str
        What to give the trials' :class:`TrialHandle`: the channel's line, or
        its key when it has none (then reports travel as events only).
    reports : int
        Reports received, repeats included (a report that came both on the
        line and as an event counts once).
    line_reports : int
        Of those, the ones that came on the line.

    Examples
    --------
    >>> with ReportChannel(client, MedianPruner()) as channel:  # doctest: +SKIP
    ...     futures = client.map(run_trial, numbers, key=channel.route)
    ...     store.add_values(search_id, channel.drain())
    """

    def __init__(
        self,
        client: distributed.Client,
        pruner: Pruner | None = None,
        *,
        key: str | None = None,
    ) -> None:
        self.client = client
        self.pruner = pruner
        self.key = key or uuid.uuid4().hex
        # notified as reports arrive (wait_for)
        self._lock = threading.Condition()
        self._pending: list[tuple[int, int, float, float]] = []
        self._last: dict[int, tuple[int, float]] = {}
        self._verdicts: dict[int, Verdict] = {}
        self._where: dict[int, str] = {}  # the worker each trial last reported from
        # the connection each trial last reported on (on the event loop only)
        self._lines: dict[int, Connection] = {}
        # reports that came on the line, by (number, step, time): their event
        # copies, still to come, are not counted again
        self._twins: dict[tuple[int, int, float], bool] = {}
        self._tasks: set[asyncio.Future[Any]] = set()
        # stops go straight to the workers unless told not to reach them
        self._direct = client.direct_to_workers is not False
        self._error: BaseException | None = None
        self.reports = 0
        self.line_reports = 0
        self.closed = False
        client.subscribe_topic(report_topic(self.key), self._on_report)
        self._server = LineServer(client, self.key, _report_frame, self._on_line)

    @property
    def line(self) -> Line | None:
        """Where the trials reach this channel directly (``None``: no line,
        :func:`~dasktune.run.line_server.line_host`)."""
        return self._server.line

    @property
    def route(self) -> Line | str:
        """What the trials' handles are given (:class:`TrialHandle`)."""
        return self._server.line or self.key

    async def _on_report(self, event: tuple[float, Any]) -> None:
        _, (number, step, value, when, *where) = event
        self._receive(
            int(number), int(step), float(value), float(when),
            where[0] if where else None, None,
        )  # fmt: skip

    def _on_line(
        self, report: tuple[int, int, float, float, str], connection: Connection
    ) -> None:
        self._receive(*report, connection)

    def _receive(
        self,
        number: int,
        step: int,
        value: float,
        when: float,
        where: str | None,
        connection: Connection | None,
    ) -> None:
        """A report, from the line (``connection``) or as an event; on the
        client's event loop."""
        twin = (number, step, when)
        with self._lock:
            if self._twins.pop(twin, False):
                return  # the event copy of a report the line brought
            if connection is not None:
                self.line_reports += 1
                self._lines[number] = connection
                self._twins[twin] = True
                if len(self._twins) > _MAX_TWINS:  # copies lost: the oldest go
                    del self._twins[next(iter(self._twins))]
            else:  # reporting without the line: told through Dask
                self._lines.pop(number, None)
            if where is not None:
                self._where[number] = where
            self.reports += 1
            last = self._last.get(number)
            stopped = number in self._verdicts
            tell = stopped  # stopped before: tell it again
            if last is None or step > last[0]:  # else a re-run's repeat
                self._last[number] = (step, float(value))
                self._pending.append((number, step, float(value), float(when)))
                self._lock.notify_all()
                # a step the pruner already holds (restored from the store, or
                # an earlier run's) is kept, not decided again
                known = None if self.pruner is None else self.pruner.last_step(number)
                if (
                    self.pruner is not None
                    and not stopped
                    and (known is None or step > known)
                ):
                    try:
                        verdict = self.pruner.report(number, step, float(value))
                    except Exception as err:  # re-raised in the driver by drain()
                        self._error = self._error or err
                        return
                    if verdict:
                        self._verdicts[number] = verdict
                        tell = True
        if tell:
            self._tell(number)

    def _tell(self, number: int) -> None:
        # fire and forget: the report handler never waits on a round trip, so
        # reports keep flowing to the pruner while decisions travel
        # on the line the trial reported on, read at its next check; else
        connection = self._lines.get(number)
        on_line = connection is not None and connection.send([number])
        where = self._where.get(number)
        if not on_line and where is not None:
            # to the worker that reported, not batched: the stop arrives within
            # milliseconds (the event below reaches every worker process a
            # stream's batching later: a re-run elsewhere, a late subscription)
            self._spawn(self._tell_worker(where, number))
        scheduler = self.client.scheduler
        assert scheduler is not None  # a connected client
        self._spawn(scheduler.log_event(topic=stop_topic(self.key), msg=[number]))

    async def _tell_worker(self, where: str, number: int) -> None:
        """Mark trial ``number`` stopped in the process of worker ``where``
        (a trial without the line): straight from this client (one hop:
        ``benchmarks/bench_stop_latency.py`` measured it, before the line,
        ~1.5 ms sooner at the median than through the scheduler, and half the
        p90), else through the scheduler (a client told
        ``direct_to_workers=False``, or that cannot reach the workers: then
        every later stop goes that way at once)."""
        message = {
            "op": "run",
            "function": _pickle.dumps(_mark_stopped),
            "args": _pickle.dumps((self.key, [number])),
            "kwargs": _pickle.dumps({}),
            "wait": False,
        }
        if self._direct:
            try:
                await self.client.rpc(where).run(**{k: message[k] for k in _RUN})
                return
            except OSError:  # not reached (a lost worker, or a network between)
                direct_failed = True
        else:
            direct_failed = False
        scheduler = self.client.scheduler
        assert scheduler is not None  # a connected client
        answers = await scheduler.broadcast(
            msg=message, workers=[where], on_error="return_pickle"
        )
        if direct_failed and isinstance(answers.get(where), dict):
            self._direct = False  # the scheduler reaches the worker, this client not

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # a lost worker: the event reaches its re-run

    def stop(self, number: int, reason: str) -> None:
        """Stop trial ``number`` (as a pruner would), telling its worker.

        Does not block: the message leaves from the client's event loop.
        """
        with self._lock:
            self._verdicts[int(number)] = Verdict(True, reason)
        loop = self.client.loop
        assert loop is not None  # a connected client
        loop.add_callback(self._tell, int(number))

    def complete(self, number: int, value: float | None = None) -> None:
        """Tell the pruner trial ``number`` finished unpruned (under the lock
        the reports are decided with)."""
        if self.pruner is not None:
            with self._lock:
                self.pruner.complete(int(number), value)

    def drain(
        self, *, raise_errors: bool = True
    ) -> list[tuple[int, int, float, float]]:
        """The reports received since the last call, ``(number, step, value,
        time)`` in arrival order, for the store's :meth:`TrialStore.add_values`.

        Parameters
        ----------
        raise_errors : bool, default True
            Raise what the pruner raised (else keep it for a later call, and
            return the reports: a driver writing them on its way out).

        Raises
        ------
        Exception
            What the pruner raised on a report, once.
        """
        with self._lock:
            if raise_errors:
                error, self._error = self._error, None
                if error is not None:
                    raise error
            pending, self._pending = self._pending, []
        return pending

    def verdict(self, number: int) -> Verdict | None:
        """Why trial ``number`` was stopped, or ``None`` if it was not."""
        with self._lock:
            return self._verdicts.get(number)

    def wait_for(self, steps: dict[int, int], timeout: float) -> bool:
        """Wait until every trial ``number`` in ``steps`` has its report of
        step ``steps[number]`` here, ``timeout`` seconds at most; return
        whether they all came.

        A trial's reports travel as events through the scheduler, its
        result on another path (a fed trial's straight from its worker): a
        report sent just before the trial returned may come after it.
        """

        def caught_up() -> bool:
            return all(
                (last := self._last.get(n)) is not None and last[0] >= step
                for n, step in steps.items()
            )

        with self._lock:
            return self._lock.wait_for(caught_up, timeout)

    def last(self, number: int) -> tuple[int, float] | None:
        """Trial ``number``'s last ``(step, value)`` received, or ``None``."""
        with self._lock:
            return self._last.get(number)

    def close(self) -> None:
        """Stop listening, close the line (reports still in flight are
        dropped)."""
        if not self.closed:
            self.closed = True
            self.client.unsubscribe_topic(report_topic(self.key))
            self._server.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
