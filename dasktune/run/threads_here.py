"""Evaluations that wait, run in threads of the caller's process.

An evaluation that mostly waits (a sleep, I/O, native code releasing the GIL)
runs side by side in threads as well as in processes. When the
:class:`~dasktune.run.policy.ExecutionPolicy` finds such evaluations in a short
run that would otherwise go to the current client's cluster, and that cluster's
workers already run the objective in threads, on this host
(:func:`here_threads`), the run stays in the caller's process and
:class:`HereThreads` evaluates each batch's points ahead, on as many threads
as the cluster's workers have: no scheduler round trip per batch, no feed to
start. The caller still reads every result in order, in its own thread, and
keeps its own rules (the cache, ``maxfev``, failures): only the objective's
calls move to the threads. No Dask here.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NamedTuple

__all__ = [
    "HELD_AT_MOST",
    "WATCH_SECONDS",
    "Evaluated",
    "HereThreads",
    "cpu_seconds",
    "sched_clock",
    "evaluate",
    "here_threads",
]

#: how long a run's first evaluation is watched before its thread's CPU share
#: decides whether the rest of its batch starts at once, seconds: half the
#: policy's LOCAL_BELOW, long enough that a waiting call's own start (~20 µs
#: of CPU) is a small share of it
WATCH_SECONDS = 1e-3
#: a call held ahead that is never released is skipped after this long,
#: seconds (the release comes WATCH_SECONDS after the hold began)
HELD_AT_MOST = 10.0


class Evaluated(NamedTuple):
    """One call of the objective: what it returned or raised, its wall
    seconds and its thread's CPU seconds; ``skipped`` when it was not made
    (the run's deadline passed before its turn)."""

    raw: Any
    error: Exception | None
    seconds: float
    cpu: float
    skipped: bool = False


def evaluate(
    fun: Callable[..., Any],
    x: Any,
    args: tuple[Any, ...],
    deadline: float | None = None,
    measure: bool = False,
) -> Evaluated:
    """``fun(x, *args)``, timed: its wall seconds and, when ``measure``, its
    CPU seconds as :func:`cpu_seconds` counts them (else this thread's CPU
    time); an exception is handed back, not raised, for the caller to record
    as a failure.

    >>> evaluate(abs, -2.0, ()).raw
    2.0
    >>> type(evaluate(abs, "x", ()).error).__name__
    'TypeError'
    """
    if deadline is not None and time.perf_counter() > deadline:
        return Evaluated(None, None, 0.0, 0.0, skipped=True)
    clock = sched_clock() if measure else (time.thread_time(), 0.0)
    started = time.perf_counter()
    raw, error = None, None
    try:
        raw = fun(x, *args)
    except Exception as err:
        error = err
    seconds = time.perf_counter() - started
    if measure:
        cpu = cpu_seconds(seconds, clock, sched_clock())
    else:
        cpu = time.thread_time() - clock[0]
    return Evaluated(raw, error, seconds, cpu)


def sched_clock() -> tuple[float, float]:
    """This thread's seconds on a CPU and ready to run but waiting for one
    (Linux's ``schedstat``); elsewhere, its CPU time and 0.

    >>> on, queued = sched_clock()
    >>> on > 0.0 and queued >= 0.0
    True
    """
    clock = _schedstat("/proc/thread-self/schedstat")
    return (time.thread_time(), 0.0) if clock is None else clock


def _schedstat(path: str) -> tuple[float, float] | None:
    """A thread's seconds on a CPU and waiting for one, from its
    ``schedstat`` file (``None`` where it cannot be read)."""
    try:
        with open(path, "rb") as file:
            on, queued, _ = file.read().split()
    except (OSError, ValueError):  # not Linux, no statistics, or thread gone
        return None
    return int(on) / 1e9, int(queued) / 1e9


def cpu_seconds(
    seconds: float, before: tuple[float, float], after: tuple[float, float]
) -> float:
    """The CPU seconds of a call lasting ``seconds`` between two
    :func:`sched_clock` readings, as if it had never waited for a core: on a
    busy machine a CPU-bound call waits for one, and its CPU time alone would
    look like a call that waits on something else.

    >>> cpu_seconds(0.012, (0.0, 0.0), (0.002, 0.0095))  # a spin, kept waiting
    0.0096
    >>> cpu_seconds(0.015, (0.0, 0.0), (5e-5, 0.005))  # a sleep, woken late
    7.5e-05
    """
    on, queued = after[0] - before[0], after[1] - before[1]
    ready = max(seconds - queued, on, 1e-9)  # the time it could have run
    return round(on * seconds / ready, 12)


class HereThreads:
    """A pool of ``width`` threads in this process, created for one run,
    evaluating the points of a batch ahead of the caller (see the module
    notes); :meth:`close` cancels what has not started and joins the threads.

    Parameters
    ----------
    width : int
    fun : callable
        Called as ``fun(x, *args)``.
    args : tuple
    deadline : float, optional
        ``time.perf_counter()`` past which a call not started is skipped.
    """

    def __init__(
        self,
        width: int,
        fun: Callable[..., Any],
        args: tuple[Any, ...],
        deadline: float | None = None,
    ) -> None:
        self.width = width
        self._fun, self._args, self._deadline = fun, args, deadline
        self._pool = ThreadPoolExecutor(width, thread_name_prefix="dasktune-here")
        self._ahead: dict[Hashable, Future[Evaluated]] = {}
        #: the call watched by :meth:`first`: its thread, wall and CPU clocks
        self._watched: dict[
            Hashable, tuple[str, float, tuple[float, float] | None]
        ] = {}

    def ahead(self, points: Iterable[tuple[Hashable, Any]], room: float) -> None:
        """Start evaluating ``points`` (key, x), at most ``room`` of them: each
        key once, none already started."""
        for key, x in points:
            if len(self._ahead) >= room:
                break
            if key not in self._ahead:
                self._ahead[key] = self._pool.submit(self._call, key, x, _GO)

    def first(
        self,
        key: Hashable,
        x: Any,
        rest: Sequence[tuple[Hashable, Any]],
        room: float,
        waits_below: float,
    ) -> bool:
        """Evaluate a run's first point ``x`` (``key``) in a thread and decide,
        :data:`WATCH_SECONDS` into it, whether ``rest`` (its batch's other
        points) starts at once in the other threads: when its thread has so
        far spent less than ``waits_below`` of its time on the CPU (it waits).

        While it is watched, threads are started for ``rest`` (while within
        ``room``), each held before its call: let go when it waits, else each
        hands back a ``skipped`` evaluation (the caller makes it). Returns
        whether ``rest`` was started.
        """
        self._ahead[key] = future = self._pool.submit(self._call, key, x, None)
        held, go = _Held(), False
        try:
            end = time.perf_counter() + WATCH_SECONDS
            for other, point in rest:  # a thread's start costs ~0.2 ms here
                if future.done() or time.perf_counter() >= end:
                    break
                if len(self._ahead) < room and other not in self._ahead:
                    self._ahead[other] = self._pool.submit(
                        self._call, other, point, held
                    )
            share = self._share(key, max(end - time.perf_counter(), 0.0))
            go = share is not None and share < waits_below
        finally:
            held.release(go)  # also when the watched call raised
        if go:
            self.ahead(rest, room)
        return go

    def _call(self, key: Hashable, x: Any, held: _Held | None) -> Evaluated:
        if held is None:  # the watched call
            path = f"/proc/self/task/{threading.get_native_id()}/schedstat"
            self._watched[key] = (path, time.perf_counter(), _schedstat(path))
            return evaluate(self._fun, x, self._args, self._deadline, measure=True)
        if not held.wait():
            return Evaluated(None, None, 0.0, 0.0, skipped=True)
        return evaluate(self._fun, x, self._args, self._deadline)

    def _share(self, key: Hashable, within: float) -> float | None:
        """Wait up to ``within`` seconds for the watched call of ``key``:
        ``None`` when it ended by then, else the share of its time so far it
        spent on the CPU (:func:`cpu_seconds`; 1.0 where its thread's
        statistics cannot be read, or it has not started: nothing says it
        waits)."""
        future = self._ahead[key]
        try:
            future.result(timeout=within)
        except TimeoutError:
            pass
        else:
            return None
        path, wall, before = self._watched.get(key, ("", 0.0, None))
        if before is None:
            return 1.0
        after = _schedstat(path)
        if after is None:
            return None if future.done() else 1.0
        seconds = max(time.perf_counter() - wall, 1e-9)
        return cpu_seconds(seconds, before, after) / seconds

    def take(self, key: Hashable) -> Evaluated | None:
        """The evaluation of ``key`` started ahead, once it is done (``None``:
        not started ahead). Its exception, for a call that raised, is on
        :attr:`Evaluated.error`; what ``evaluate`` itself raised is raised."""
        future = self._ahead.pop(key, None)
        return None if future is None else future.result()

    def close(self) -> None:
        """Cancel the calls not started, wait for the running ones, join the
        threads."""
        self._ahead.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)


class _Held:
    """Calls started ahead, held until released: to go, or to be skipped."""

    def __init__(self) -> None:
        self._released = threading.Event()
        self._go = False

    def release(self, go: bool) -> None:
        self._go = go
        self._released.set()

    def wait(self) -> bool:
        """Whether to go, once released (at most :data:`WATCH_SECONDS` after
        the hold began, but bounded: a release never made skips the call)."""
        return self._released.wait(HELD_AT_MOST) and self._go


#: calls started ahead, to go at once
_GO = _Held()
_GO.release(True)


def here_threads(client: Any) -> int | None:
    """How many threads the cluster of ``client`` runs the objective on,
    when every worker runs on this host with more than one thread (the user
    accepts concurrent calls, and what they wait on is here); else ``None``.

    A ``LocalCluster``'s own view of its workers is read (no round trip);
    otherwise the scheduler is asked once.
    """
    if client is None:
        return None
    info = getattr(getattr(client, "cluster", None), "scheduler_info", None)
    workers = info.get("workers") if isinstance(info, dict) else None
    if not workers:
        if not _here(_host(str(getattr(client.scheduler, "address", "")))):
            return None  # a scheduler elsewhere: its workers are, too
        workers = client.scheduler_info(n_workers=-1).get("workers") or {}
    if not workers:
        return None
    nthreads = [int(worker.get("nthreads", 1)) for worker in workers.values()]
    if min(nthreads) < 2:
        return None
    if not all(_here(str(worker.get("host", ""))) for worker in workers.values()):
        return None
    return sum(nthreads)


def _host(address: str) -> str:
    """The host of a Dask address.

    >>> _host("tcp://127.0.0.1:8786"), _host("tls://[::1]:8786")
    ('127.0.0.1', '::1')
    """
    host = address.split("://", 1)[-1].rsplit(":", 1)[0]
    return host.strip("[]")


def _here(host: str) -> bool:
    """Whether ``host`` (a worker's address) is this machine."""
    if host in ("localhost", socket.gethostname()):
        return True
    try:
        if ipaddress.ip_address(host).is_loopback:
            return True
    except ValueError:
        return False
    return host in _own_addresses()


@functools.cache
def _own_addresses() -> frozenset[str]:
    """This machine's addresses: its host name's, and the one Dask's workers
    take by default on it (``distributed.utils.get_ip``)."""
    from distributed.utils import get_ip

    try:
        infos = socket.getaddrinfo(socket.gethostname(), None)
    except OSError:  # a host name that does not resolve: no address of its own
        infos = []
    return frozenset({get_ip(), *(str(info[4][0]) for info in infos)})
