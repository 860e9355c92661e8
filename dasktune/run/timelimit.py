"""A per-trial time limit (``trial_timeout=``), and freeing what a trial holds.

Python threads cannot be killed, so a call past its limit is stopped in two
steps:

1. On the worker, :func:`call_limited` runs the call in a helper thread of its
   own (a daemon, seeing the task's worker, key and context variables) while
   the task's thread waits for it. Past the limit it raises
   :class:`TrialInterrupted` in the helper asynchronously
   (``PyThreadState_SetAsyncExc``): Python code stops at its next bytecode,
   and the call fails with :class:`~dasktune.exceptions.TrialTimeoutError`,
   "timed out after N s", its traceback showing where it was. Code blocked in
   C (``time.sleep(1000)``, a lock, a system call) gets the exception only
   once it returns: if the helper has not ended ``GRACE_SECONDS`` after the
   interruption, it is left to itself and the call fails all the same, marked
   ``stuck``. Either way the task's thread (a Dask worker thread, or a feed's
   server) is free to run the next trial.
2. On the client, :func:`free_workers` restarts the worker of a stuck call
   (``Client.restart_workers``: its nanny starts a new process), with a
   warning naming the worker and the trial: the helper may still hold a CPU,
   memory or a GPU. A worker without a nanny (``LocalCluster(processes=False)``,
   a worker started without one) cannot be restarted: the warning says so, and
   the helper thread stays until its call returns.

Work a restarted worker held is not lost: tasks in flight go to other workers
(Dask re-runs them), fed trials are sent again (:mod:`dasktune.run.feed`), and
the stuck call's own result (failed) was already harvested, its future
released first so that Dask does not run it again.
"""

from __future__ import annotations

import contextvars
import ctypes
import queue
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import distributed
from distributed.utils import set_thread_state
from distributed.worker import thread_state

from dasktune.exceptions import TrialTimeoutError

__all__ = [
    "GRACE_SECONDS",
    "TrialInterrupted",
    "call_limited",
    "free_workers",
    "stuck_worker",
    "task_thread_state",
]

R = TypeVar("R")

#: seconds a call interrupted past its limit has to stop before it is left
#: running in its thread (and its worker restarted)
GRACE_SECONDS = 2.0
#: a bound on the wait for the scheduler to forget a stuck call's task, and on
#: a worker's restart
_FORGET_SECONDS = 10.0
_RESTART_SECONDS = 60.0


class TrialInterrupted(BaseException):
    """Raised asynchronously in a call past its ``trial_timeout``.

    A ``BaseException``, as ``KeyboardInterrupt`` is: an objective's ``except
    Exception`` does not swallow it. Never seen by the user: the call's caller
    raises :class:`~dasktune.exceptions.TrialTimeoutError` from it.
    """


def _raise_in(ident: int, exc: type[BaseException] | None) -> None:
    """Raise ``exc`` in thread ``ident`` at its next bytecode (``None``:
    withdraw an exception not yet raised)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(ident), ctypes.py_object(exc) if exc is not None else None
    )


def task_thread_state() -> dict[str, Any]:
    """The task's thread state (its worker, key, start), for another thread to
    take on with ``distributed.utils.set_thread_state``: ``get_worker()`` and
    ``thread_state.key`` then work there as in the task."""
    return {
        k: getattr(thread_state, k)
        for k in ("start_time", "execution_state", "key")
        if hasattr(thread_state, k)
    }


class _Call:
    """One call in its helper thread; the caller may interrupt it once.

    ``lock`` orders the interruption and the call's end: the exception is
    sent only while the call has not ended, and an exception sent but not
    yet raised when it ends is withdrawn, so that it never lands outside
    :meth:`run`'s ``try``.
    """

    def __init__(self, fun: Callable[[], Any]) -> None:
        self.fun = fun
        self.state = task_thread_state()
        self.context = contextvars.copy_context()
        self.lock = threading.Lock()
        self.over = False
        self.interrupted = False
        self.out: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()

    def run(self) -> None:
        out: tuple[bool, Any]
        try:
            try:
                with set_thread_state(**self.state):
                    out = (True, self.context.run(self.fun))
            except BaseException as err:
                out = (False, err)
            with self.lock:
                self.over = True
                if self.interrupted:
                    _raise_in(threading.get_ident(), None)
        except TrialInterrupted as err:  # landed as the call ended
            out = (False, err)
        self.out.put(out)

    def interrupt(self, ident: int) -> None:
        with self.lock:
            if not self.over:
                self.interrupted = True
                _raise_in(ident, TrialInterrupted)


def call_limited(
    fun: Callable[[], R], seconds: float, grace: float = GRACE_SECONDS
) -> R:
    """``fun()``, or ``TrialTimeoutError`` once it has run ``seconds``.

    The call runs in a daemon thread while this one waits; see the module
    notes. What ``fun`` raises is raised here, with its own traceback.

    Raises
    ------
    TrialTimeoutError
        Past ``seconds``: "timed out after N s", from the ``TrialInterrupted``
        whose traceback shows where the call was; with ``stuck`` true (and the
        worker's address in ``worker``) when the call did not stop within
        ``grace`` seconds and was left running.

    >>> call_limited(lambda: 6 * 7, 1.0)
    42
    """
    call = _Call(fun)
    thread = threading.Thread(target=call.run, name="dasktune-trial", daemon=True)
    started = time.monotonic()
    thread.start()
    try:
        ok, value = call.out.get(timeout=seconds)
    except queue.Empty:
        assert thread.ident is not None  # started
        call.interrupt(thread.ident)
        try:
            ok, value = call.out.get(timeout=grace)
        except queue.Empty:
            msg = (
                f"timed out after {seconds:g} s (trial_timeout) and did not stop "
                f"within {grace:g} s of being interrupted: it is blocked outside "
                "Python (C code, a system call, a lock); its thread was left to "
                "it and the worker's thread freed"
            )
            raise TrialTimeoutError(
                msg, seconds=seconds, stuck=True, worker=_worker_address()
            ) from None
    if call.interrupted:
        elapsed = time.monotonic() - started
        msg = f"timed out after {seconds:g} s (trial_timeout; stopped after {elapsed:.3g} s)"
        cause = None if ok else value
        raise TrialTimeoutError(msg, seconds=seconds) from cause
    if ok:
        return value
    raise value


def _worker_address() -> str | None:
    try:
        return str(distributed.get_worker().address)
    except ValueError:
        return None


def stuck_worker(exc: BaseException | None) -> str | None:
    """The worker a stuck call was left running on (``None``: none, or not a
    stuck call's error)."""
    if isinstance(exc, TrialTimeoutError) and exc.stuck:
        return exc.worker
    return None


def free_workers(
    client: distributed.Client,
    stuck: Sequence[tuple[str, str]],
    trial_timeout: float,
    released: Sequence[distributed.Future] = (),
) -> None:
    """Restart the workers where calls were left running past their limit.

    ``stuck`` holds ``(worker, what)`` pairs (``what`` names the trial or
    element); ``released`` are the futures of the tasks that carried them,
    released and forgotten by the scheduler first, so that a restart does
    not make Dask run them again. Warns (``RuntimeWarning``) for each worker
    restarted, and for each that cannot be (no nanny).
    """
    by_worker: dict[str, list[str]] = {}
    for worker, what in stuck:
        by_worker.setdefault(worker, []).append(what)
    if not by_worker:
        return
    _forget(client, released)
    for worker, whats in by_worker.items():
        what = ", ".join(whats)
        status = client.sync(_restart, client, worker)
        past = f"{what} ran past trial_timeout={trial_timeout:g} s and did not stop"
        if status == "OK":
            msg = f"restarted worker {worker}: {past}"
        elif status == "no nanny":
            msg = (
                f"worker {worker}: {past}; the worker has no nanny (a threads-only "
                "LocalCluster(processes=False), or a worker started without one), "
                "so it cannot be restarted: a thread of its process stays busy in "
                "the objective until the call returns"
            )
        elif status == "gone":
            msg = f"worker {worker}: {past}; the worker has already left the cluster"
        else:
            msg = (
                f"worker {worker}: {past}; restarting it failed ({status}): the "
                "scheduler removed it"
            )
        warnings.warn(msg, RuntimeWarning, stacklevel=3)


async def _restart(client: distributed.Client, worker: str) -> str:
    """Restart ``worker`` through its nanny, not waiting for it to come back
    (the run goes on with the others): ``"OK"``, ``"no nanny"``, ``"gone"``,
    or what went wrong."""
    scheduler: Any = client.scheduler
    info = (await scheduler.identity(n_workers=-1))["workers"].get(worker)
    if info is None:
        return "gone"
    if not info.get("nanny"):
        return "no nanny"
    out = await scheduler.restart_workers(
        workers=[worker],
        timeout=_RESTART_SECONDS,
        wait_for_workers=False,
        on_error="return",
        stimulus_id=f"dasktune-trial-timeout-{time.time()}",
    )
    return str(out.get(worker, "gone"))


def _forget(client: distributed.Client, futures: Sequence[distributed.Future]) -> None:
    """Release ``futures`` and wait (bounded) until no worker holds them."""
    if not futures:
        return
    keys = [f.key for f in futures]
    for future in futures:
        future.release()
    deadline = time.monotonic() + _FORGET_SECONDS
    while any(client.who_has(keys).values()):
        if time.monotonic() > deadline:
            msg = (
                f"the scheduler still holds the results of {keys} "
                f"{_FORGET_SECONDS:g} s after they were released; restarting "
                "their worker may run them again"
            )
            warnings.warn(msg, RuntimeWarning, stacklevel=4)
            return
        time.sleep(0.01)
