"""Copying a SQLite store's write-ahead log back into its file, off the writer.

In WAL mode every write goes to the log, and a *checkpoint* copies the pages
written since the last one back into the database file and syncs it. SQLite
runs that checkpoint inside the commit that fills the log, on the writer's own
thread. In a search of a million trials each new trial's hash lands on a random
page of the unique index, so a checkpoint copies and syncs thousands of random
pages while the driver waits (a third of its time at 10⁶ trials).

:class:`Checkpointer` runs the checkpoints in a thread of its own, with its own
connection: every :data:`PERIOD` seconds after a write, a ``PASSIVE`` checkpoint,
which takes no lock a writer or a reader waits for. SQLite releases the GIL
while it copies and syncs. The thread starts at the first write and ends after
:data:`IDLE` seconds without one (a later write starts another); :meth:`close`
ends and joins it. The writer keeps its own automatic checkpoint as a backstop
(``PRAGMA wal_autocheckpoint``, set by the store), so the log stays bounded if
this thread cannot keep up.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading

__all__ = ["IDLE", "PERIOD", "Checkpointer"]

#: seconds between two checkpoints while writes come
PERIOD = 0.25
#: seconds without a write after which the thread ends
IDLE = 1.0
#: seconds :meth:`Checkpointer.close` waits for a checkpoint under way
_JOIN_SECONDS = 60.0


class Checkpointer:
    """Checkpoints of one SQLite file's write-ahead log, in a thread.

    Parameters
    ----------
    path : str
        The database file.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._wrote = threading.Event()  # a write committed since the last look
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ended: threading.Thread | None = None  # the last one, ending

    def wrote(self) -> None:
        """Note a committed write: its pages are copied within :data:`PERIOD`."""
        self._wrote.set()
        if self._thread is None:
            with self._lock:
                if self._thread is None and not self._stop.is_set():
                    self._thread = threading.Thread(
                        target=self._run, name="dasktune-checkpoint", daemon=True
                    )
                    self._thread.start()

    def _run(self) -> None:
        connection = sqlite3.connect(self.path, check_same_thread=False)
        try:
            idle = 0.0
            while not self._stop.wait(PERIOD):
                if self._wrote.is_set():
                    self._wrote.clear()
                    idle = 0.0
                    # PASSIVE: copies what no reader still needs; busy (another
                    # checkpoint under way) or failed: the next one copies it
                    with contextlib.suppress(sqlite3.Error):
                        connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    continue
                idle += PERIOD
                if idle >= IDLE:
                    with self._lock:  # a write noted meanwhile keeps the thread
                        if not self._wrote.is_set():
                            self._ended, self._thread = self._thread, None
                            return
        finally:
            connection.close()

    def close(self) -> None:
        """End the thread (after the checkpoint under way, if any) and join it."""
        with self._lock:
            self._stop.set()
            threads = [t for t in (self._thread, self._ended) if t is not None]
        for thread in threads:
            thread.join(_JOIN_SECONDS)
