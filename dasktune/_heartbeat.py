"""A driver's heartbeat: its liveness row refreshed from a thread while it works.

Another driver takes a claim over when its holder's heartbeat is older than
``stale_after`` (:mod:`dasktune.store.liveness`) and its process cannot be
seen alive. A driver that beats only between its own steps — after a batch of
results, after a ``partial_fit`` step — looks dead while one step outlasts
``stale_after``, and its trials would be run twice. :class:`Heartbeat` beats
on its own thread instead, every ``seconds``, whatever the driver waits on.
A beat that fails (the database briefly unreachable) is logged and tried again
at the next one: the claim is lost only if the database stays away longer
than ``stale_after``, as it would be for a driver that died.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Self

__all__ = ["Heartbeat"]

logger = logging.getLogger("dasktune")


class Heartbeat:
    """Call ``beat`` every ``seconds`` on a thread, from :meth:`start` to
    :meth:`stop`.

    Parameters
    ----------
    beat : callable
        Refreshes the driver's liveness (e.g. ``lambda:
        store.heartbeat(driver_id)``).
    seconds : float
        The time between beats (the store's ``HEARTBEAT_SECONDS``; well under
        ``stale_after``).
    name : str
        What beats, for the thread's name and messages.

    Examples
    --------
    >>> beats = []
    >>> with Heartbeat(lambda: beats.append(1), 0.001, "doc") as heartbeat:
    ...     heartbeat.wait_for_beats(2, timeout=10.0)
    True
    """

    def __init__(self, beat: Callable[[], None], seconds: float, name: str) -> None:
        self._beat = beat
        self.seconds = float(seconds)
        self.name = name
        self.beats = 0  # beats made (failed ones not counted)
        self._stop = threading.Event()
        self._counted = threading.Condition()
        self._thread = threading.Thread(
            target=self._run, name=f"dasktune-heartbeat-{name}", daemon=True
        )

    def start(self) -> Self:
        """Start beating (the first beat comes after ``seconds``)."""
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.seconds):
            try:
                self._beat()
            except Exception as err:  # the next beat tries again
                logger.warning(
                    "dasktune: %s: heartbeat failed (tried again in %.3g s): %s: %s",
                    self.name,
                    self.seconds,
                    type(err).__qualname__,
                    err,
                )
                continue
            with self._counted:
                self.beats += 1
                self._counted.notify_all()

    def wait_for_beats(self, n: int, timeout: float) -> bool:
        """Wait until ``n`` beats were made, ``timeout`` seconds at most;
        return whether they were."""
        with self._counted:
            return self._counted.wait_for(lambda: self.beats >= n, timeout)

    def stop(self, timeout: float = 60.0) -> None:
        """Stop beating and join the thread.

        Raises
        ------
        TimeoutError
            When a beat in progress did not return within ``timeout`` seconds
            (the database did not answer): the thread is left to end alone.
        """
        self._stop.set()
        if not self._thread.is_alive():
            return
        self._thread.join(timeout)
        if self._thread.is_alive():
            msg = (
                f"{self.name}: the heartbeat thread did not end within "
                f"{timeout:g} s: a heartbeat's write to the trial store has not "
                "returned (is the database reachable?)"
            )
            raise TimeoutError(msg)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
