"""Dask's messages that the command's user did not cause, kept off the terminal.

The ``dasktune`` command shows its own one-line errors; Dask adds lines a user
reads as failures although nothing failed (``--debug`` shows them all):

- "Port 8787 is already in use ... Hosting the HTTP server on port N instead":
  the command prints the dashboard's real link itself;
- on closing, the worker processes' "Worker process still alive after 4.0
  seconds, killing" and the running tasks' "ended with CancelledError";
- after Ctrl-C, each worker process's own ``KeyboardInterrupt`` traceback
  (the terminal sends SIGINT to every process of the command): the workers
  start with SIGINT ignored, and the command closes them;
- a refused batch submission's "Exception in callback" traceback, logged by
  tornado from dask-jobqueue's background submission (the command raises the
  batch system's error itself, once, in the foreground).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import warnings
from collections.abc import Iterator

__all__ = ["WORKER_LOG_LEVEL", "ignoring_sigint", "quiet_dask"]

#: the level of Dask's own loggers in the command's local workers (``silence_logs``)
WORKER_LOG_LEVEL = logging.ERROR

# (logger, words of the message) dropped
_DROPPED = (
    ("distributed.nanny", "Worker process still alive after"),
    ("distributed.worker.state_machine", "ended with CancelledError"),
    ("tornado.application", "SpecCluster._correct_state_internal"),
)


class _Drop(logging.Filter):
    """Drop the records holding ``words``, and those of a ``CancelledError``."""

    def __init__(self, words: str) -> None:
        super().__init__()
        self.words = words

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, asyncio.CancelledError):
            return False
        return self.words not in record.getMessage()


@contextlib.contextmanager
def quiet_dask(quiet: bool = True) -> Iterator[None]:
    """Keep Dask's noise (see the module notes) off the terminal while inside;
    nothing changes when not ``quiet`` (``--debug``)."""
    if not quiet:
        yield
        return
    filters = [(logging.getLogger(name), _Drop(words)) for name, words in _DROPPED]
    for logger, drop in filters:
        logger.addFilter(drop)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", r"Port \d+ is already in use", category=UserWarning
            )
            yield
    finally:
        for logger, drop in filters:
            logger.removeFilter(drop)


@contextlib.contextmanager
def ignoring_sigint() -> Iterator[None]:
    """SIGINT ignored while inside, so that the processes started meanwhile
    (a ``LocalCluster``'s workers) inherit it ignored: Ctrl-C then stops the
    command, which closes them, instead of each printing a traceback. Only the
    main thread may change it; elsewhere, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
