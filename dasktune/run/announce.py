"""What a driver tells the Dask dashboard's dasktune page: Dask events.

Light on purpose (the page itself, :mod:`dasktune.run.dask_page`, imports
Bokeh and Dask's dashboard): a driver only sends.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from typing import Any

__all__ = ["TOPIC", "Announcer", "announce"]

logger = logging.getLogger(__name__)

#: the Dask event topic the drivers send on and the page reads
TOPIC = "dasktune"


def announce(client: Any, search: str, driver: str, state: dict[str, Any]) -> None:
    """Send a driver's state of ``search`` to the page (``client.log_event``).

    Parameters
    ----------
    state : dict
        ``done``, ``pruned``, ``failed``, ``running`` (counts), ``total`` (or
        ``None``), ``best`` (or ``None``), ``execution``, ``finished`` (bool),
        ``reports`` (the run's report topic key, or ``None`` when its trials
        do not report), ``trials`` (the numbers of the trials in flight),
        ``metrics`` (the objectives' names, or ``None``) and ``front`` (the
        size of the Pareto front of several objectives, else ``None``).
    """
    client.log_event(TOPIC, _message(search, driver, state))


def _message(search: str, driver: str, state: dict[str, Any]) -> dict[str, Any]:
    return {"search": search, "driver": driver, "host": socket.gethostname(),
            "pid": os.getpid(), **state}  # fmt: skip


class Announcer:
    """A driver's messages to the page, at most one every ``every`` seconds.

    A message held back by that limit is not lost: it leaves from the
    client's event loop when its time comes, unless a newer one replaced it.
    So the page learns of trials submitted just after a message even when the
    driver then waits minutes for a result (it sends nothing while it waits).

    No message but the last blocks the driver: each leaves from the client's
    event loop, in the order sent (a round trip to the scheduler, 2-85 ms
    measured here, that a short run felt). The ``final`` one is waited for,
    after those before it: a run's last word is on the scheduler when the run
    returns.

    Parameters
    ----------
    client : distributed.Client
    search, driver : str
        The search's name and this driver's token, in every message.
    every : float
        Seconds between two messages.
    """

    def __init__(self, client: Any, search: str, driver: str, every: float) -> None:
        self.client, self.search, self.driver = client, search, driver
        self.every = every
        self._lock = threading.Lock()
        self._sent = -float("inf")  # time.monotonic() of the last message
        self._held: dict[str, Any] | None = None  # the message waiting its turn
        self._timer = False  # whether a send of the held message is scheduled
        self._order: asyncio.Lock | None = None  # the loop's: one post at a time

    def send(self, state: dict[str, Any], *, final: bool = False) -> None:
        """Send ``state`` (see :func:`announce`) now, or hold it until
        ``every`` seconds have passed since the last message; ``final``
        sends it now, replacing a held one, and waits until it arrived."""
        with self._lock:
            wait = self._sent + self.every - time.monotonic()
            if not final and wait > 0:
                self._held = state
                if not self._timer:
                    self._timer = True
                    self.client.loop.add_callback(self._later, wait)
                return
            self._held = None
            self._sent = time.monotonic()
        message = _message(self.search, self.driver, state)
        if final:
            self.client.sync(self._post, message, final=True)
        else:
            self.client.loop.add_callback(self._post, message)

    def _later(self, wait: float) -> None:
        self.client.loop.call_later(wait, self._flush)

    async def _flush(self) -> None:
        with self._lock:
            self._timer = False
            state, self._held = self._held, None
            if state is None:  # sent since, or the run is over
                return
            self._sent = time.monotonic()
        await self._post(_message(self.search, self.driver, state))

    async def _post(self, message: dict[str, Any], final: bool = False) -> None:
        """Send ``message`` from the event loop, after those posted before;
        a failure to send is raised for the ``final`` one, else logged."""
        if self._order is None:
            self._order = asyncio.Lock()
        async with self._order:
            scheduler = self.client.scheduler
            if scheduler is None or self.client.status != "running":
                return  # the client closed while the message waited (Ctrl-C): nobody to tell
            try:
                await scheduler.log_event(topic=TOPIC, msg=message)
            except OSError as err:  # the scheduler is gone (CommClosedError)
                if final:
                    raise
                logger.warning(
                    "dasktune: the Dask dashboard's page was not told of search %r: %r",
                    self.search,
                    err,
                )
