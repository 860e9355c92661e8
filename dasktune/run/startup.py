"""dasktune's own cluster, started in a thread while the caller's process works.

When the execution policy moves a run to the cluster and none runs yet, the
``LocalCluster`` dasktune owns takes seconds to start (``import distributed``,
then worker processes). :class:`BackgroundStart` starts it in a thread, so
that the run goes on evaluating in the caller's process meanwhile and moves
to the workers once they are up (:class:`dasktune.run.local.LocalRun`). A
run that ends here first does not wait: the cluster goes on starting, and is
dasktune's as any it starts (reused by later calls, closed at exit; a call
that needs it meanwhile waits for it, as :func:`dasktune.get_client` holds
its lock while it starts).
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from typing import Any

from dasktune.run.policy import WAITS_BELOW
from dasktune.run.threads_here import cpu_seconds, sched_clock

__all__ = ["START_WAIT_SECONDS", "BackgroundStart"]

logger = logging.getLogger("dasktune")

#: at most this long is waited for the cluster's start, once the run needs it
START_WAIT_SECONDS = 300.0
#: at most this long is waited at exit for a start still under way
EXIT_WAIT_SECONDS = 60.0

_pending: weakref.WeakSet[BackgroundStart] = weakref.WeakSet()


def join_pending(timeout: float = EXIT_WAIT_SECONDS) -> None:
    """Wait (bounded) for the starts still under way, then close what
    dasktune started: at exit, a start a run did not wait for must not leave
    a cluster behind (nor be cut off half-way, its worker processes orphaned).
    """
    for start in list(_pending):
        start._thread.join(timeout)
        if start._thread.is_alive():
            logger.warning(
                "dasktune: its LocalCluster was still starting %.0f s after exit "
                "began; not waiting longer",
                timeout,
            )
    if _pending:
        from dasktune.run.cluster import close_owned

        close_owned()


class BackgroundStart:
    """:func:`dasktune.get_client` (``address=None``) run in a thread.

    Parameters
    ----------
    security : distributed.security.Security, optional
        For the cluster started (see :func:`dasktune.get_client`).
    """

    def __init__(self, security: Any = None) -> None:
        self._security = security
        self._done = threading.Event()
        self._client: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._start, name="dasktune-cluster-start", daemon=True
        )
        _pending.add(self)
        self._thread.start()

    def _start(self) -> None:
        try:
            from dasktune.run.cluster import get_client

            self._client = get_client(None, security=self._security)
        except BaseException as err:  # raised again in the caller, by client()
            self._error = err
            logger.warning("dasktune: starting its LocalCluster failed: %r", err)
        finally:
            self._done.set()

    @property
    def ready(self) -> bool:
        """Whether the start is over (the cluster is up, or it failed)."""
        return self._done.is_set()

    def client(self) -> Any:
        """Wait for the start (at most :data:`START_WAIT_SECONDS`); the
        client, or the start's own error raised here.

        Raises
        ------
        TimeoutError
            When the cluster did not start in time.
        """
        if not self._done.wait(START_WAIT_SECONDS):
            msg = (
                f"dasktune's LocalCluster did not start within {START_WAIT_SECONDS:.0f}"
                " s (started in the background while the run went on in the "
                "caller's process); give a client of a running cluster (client=) "
                "or run here (execution='local')"
            )
            raise TimeoutError(msg)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._client


class Overlap:
    """The calls made in the caller's thread while a :class:`BackgroundStart`
    runs, and whether they starve it.

    Calls that keep their thread on the CPU (pure Python holds the GIL) starve
    the start, which runs in a thread of this process and takes the GIL
    thousands of times (imports, the scheduler's event loop), each after up to
    a switch interval (5 ms): a 1.5 s start took over 30 s beside a busy loop.
    Then the run waits for the start rather than overlap it; calls that wait
    (sleeps, I/O, native code releasing the GIL) go on. CPU time is counted as
    :func:`~dasktune.run.threads_here.cpu_seconds` counts it (a call kept
    waiting for a core on a busy machine is still on the CPU).

    >>> overlap = Overlap()
    >>> mark = overlap.mark(); overlap.add(mark); overlap.seconds >= 0.0
    True
    """

    def __init__(self) -> None:
        self.seconds = 0.0  # the calls' wall seconds
        self.cpu = 0.0  # and their CPU seconds

    @staticmethod
    def mark() -> tuple[tuple[float, float], float]:
        """Before a call: this thread's clock and the time."""
        return sched_clock(), time.perf_counter()

    def add(self, mark: tuple[tuple[float, float], float]) -> None:
        """After a call begun at ``mark``: count it."""
        seconds = time.perf_counter() - mark[1]
        self.cpu += cpu_seconds(seconds, mark[0], sched_clock())
        self.seconds += seconds

    @property
    def starves(self) -> bool:
        """Whether the calls counted held the CPU (at least
        :data:`~dasktune.run.policy.WAITS_BELOW` of their time)."""
        return self.seconds > 0 and self.cpu >= WAITS_BELOW * self.seconds


atexit.register(join_pending)
