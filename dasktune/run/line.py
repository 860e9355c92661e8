"""A direct line from the trials to their driver: reports out, stops back.

A trial's report travelling as a Dask event crosses two batched streams
(worker -> scheduler -> client, ~2 ms of batching each) and waits, on the way
out and back, for the worker's event loop, which shares the GIL with the
objective's thread (up to the 5 ms switch interval per wait). The line skips
all of it: the driver listens on a TCP port of its own
(:class:`~dasktune.run.line_server.LineServer`, on the client's event loop),
and each worker process opens one connection per run (:func:`worker_end`),
from the objective's own thread, on its first report. This module holds what
the worker needs; the driver's end is in :mod:`dasktune.run.line_server`.

- A report is one frame sent with a blocking ``sendall`` (tens of µs), a stop
  one frame back on the same connection; the trial's ``should_prune()`` reads
  it without blocking (:meth:`WorkerEnd.drain`). No thread runs on the worker.
- A frame is a 4-byte big-endian length and a msgpack body of plain values
  (never a pickle: nothing read from the socket can run code). The first frame
  a worker sends is the run's random token; the driver closes a connection
  whose token is wrong, whose frame is malformed, or larger than
  :data:`MAX_FRAME`.
- A worker process that cannot connect within :data:`CONNECT_TIMEOUT` seconds,
  or whose send fails (the driver gone, the connection reset), marks the line
  down for that run, never retries, and reports as Dask events.
- When the driver closes its end, a worker sees the end of its connection on
  its next read and closes its socket, at the latest when the process opens
  its next run's line.
"""

from __future__ import annotations

import atexit
import logging
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack  # type: ignore[import-untyped]

__all__ = [
    "CONNECT_TIMEOUT",
    "HEADER",
    "MAX_FRAME",
    "Line",
    "WorkerEnd",
    "decode",
    "encode",
    "worker_end",
]

logger = logging.getLogger(__name__)

#: seconds a worker waits to connect, once per process and run
CONNECT_TIMEOUT = 1.0
#: seconds a worker's send may block (the driver not reading) before the line
#: is given up
SEND_TIMEOUT = 2.0
#: the largest frame the driver accepts, in bytes
MAX_FRAME = 1 << 20
#: a frame's length, before its body
HEADER = struct.Struct("!I")
#: a read that never waits, where the system has one (Linux, macOS): then the
#: socket stays blocking, its sends bounded by ``SO_SNDTIMEO``, with no
#: switching of modes (and no poll) per report
_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)


@dataclass(frozen=True)
class Line:
    """Where a run's trials reach its driver: sent to them with their tasks.

    Attributes
    ----------
    key : str
        The run's key (its event topics' name, :func:`report_topic`).
    host, port : str and int
        The driver's listening address.
    token : str
        The run's secret, the first frame of every connection.
    """

    key: str
    host: str
    port: int
    token: str = field(repr=False)


def encode(message: Any, packer: Any = None) -> bytes:
    """One frame: ``message``'s msgpack body, after its length.

    ``packer``, a ``msgpack.Packer`` used by one thread at a time, spares the
    new packer's 1 MB buffer ``msgpack.packb`` allocates each call (15 µs in
    a Dask worker, whose ``MALLOC_TRIM_THRESHOLD_`` makes glibc map and unmap
    it every time; 0.5 µs reused).

    >>> encode([1, 2])
    b'\\x00\\x00\\x00\\x03\\x92\\x01\\x02'
    """
    body = (packer or msgpack.Packer(use_bin_type=True)).pack(message)
    return HEADER.pack(len(body)) + body


def decode(body: bytes) -> Any:
    """A frame's body back to plain values (lists, dicts, numbers, strings).

    >>> decode(encode([1, "a", 0.5])[4:])
    [1, 'a', 0.5]

    Raises
    ------
    ValueError
        For bytes that are not one msgpack value.
    """
    try:
        return msgpack.unpackb(body, raw=False, use_list=True)
    except (ValueError, TypeError, msgpack.UnpackException) as err:
        msg = f"a frame of {len(body)} bytes is not one msgpack value: {err}"
        raise ValueError(msg) from err


# -- the worker's end ------------------------------------------------------------


class WorkerEnd:
    """One worker process's connection to one run's driver (shared by the
    trials of that run running there; every method is thread-safe).

    Parameters
    ----------
    line : Line
    on_stop : callable, optional
        Given the trial numbers each stop frame names.
    """

    def __init__(
        self, line: Line, on_stop: Callable[[list[int]], None] | None = None
    ) -> None:
        self.line = line
        self._on_stop = on_stop
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._buffer = bytearray()
        self._packer = msgpack.Packer(use_bin_type=True)  # used under the lock
        self.down = False  # never connected, or given up: Dask events then
        self.ended = False  # the driver closed it: the run is over

    def send(self, message: Any) -> bool:
        """Send ``message`` as one frame, connecting first if need be;
        ``False`` when the line is down (then send it another way)."""
        with self._lock:
            frame = encode(message, self._packer)
            if self._socket is None and not self._connect():
                return False
            assert self._socket is not None
            try:
                self._socket.sendall(frame)  # bounded by SEND_TIMEOUT
            except OSError as err:
                self._give_up(f"a send failed ({err!r})")
                return False
            return True

    def drain(self) -> None:
        """Read the stops that came, without blocking, and hand them on."""
        with self._lock:
            if self._socket is None:
                return
            if not _DONTWAIT:
                self._socket.settimeout(0.0)
            try:
                while True:
                    data = self._socket.recv(65536, _DONTWAIT)
                    if not data:
                        self._give_up("the driver closed the line")
                        self.ended = True  # the run is over
                        break
                    self._buffer += data
            except BlockingIOError:
                pass
            except OSError as err:
                self._give_up(f"a read failed ({err!r})")
            if not _DONTWAIT and self._socket is not None:
                self._socket.settimeout(SEND_TIMEOUT)
            numbers = self._frames()
        if numbers and self._on_stop is not None:
            self._on_stop(numbers)

    def _frames(self) -> list[int]:
        """The numbers of the whole stop frames in the buffer (under the lock)."""
        numbers: list[int] = []
        buffer = self._buffer
        while len(buffer) >= HEADER.size:
            (size,) = HEADER.unpack_from(buffer)
            if len(buffer) < HEADER.size + size:
                break
            body = bytes(buffer[HEADER.size : HEADER.size + size])
            del buffer[: HEADER.size + size]
            try:  # the driver's frames: lists of trial numbers
                numbers.extend(int(n) for n in decode(body))
            except (ValueError, TypeError) as err:
                self._give_up(f"the driver sent a frame that is not a stop ({err})")
                buffer.clear()
                break
        return numbers

    def _connect(self) -> bool:
        if self.down:
            return False
        line = self.line
        try:
            sock = socket.create_connection(
                (line.host, line.port), timeout=CONNECT_TIMEOUT
            )
        except OSError as err:
            self.down = True
            logger.info(
                "dasktune: no line to the driver at %s:%s (%r); this process "
                "reports run %s as Dask events",
                line.host, line.port, err, line.key,
            )  # fmt: skip
            return False
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(SEND_TIMEOUT)
            sock.sendall(encode(line.token))
            if _DONTWAIT:
                sock.settimeout(None)
                seconds = struct.pack("ll", int(SEND_TIMEOUT), 0)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, seconds)
        except OSError as err:
            sock.close()
            self.down = True
            logger.info("dasktune: the line to the driver failed: %r", err)
            return False
        self._socket = sock
        return True

    def _give_up(self, why: str) -> None:
        """Close the socket and use the events from now on (under the lock)."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if not self.down:
            self.down = True
            logger.info("dasktune: %s; run %s reports as events", why, self.line.key)

    def close(self) -> None:
        """Close the connection (the line is down from now on)."""
        with self._lock:
            self._give_up("the line was closed")

    @property
    def connected(self) -> bool:
        """Whether a connection is open."""
        with self._lock:
            return self._socket is not None


_ends_lock = threading.Lock()
_ends: dict[Line, WorkerEnd] = {}


def worker_end(
    line: Line, on_stop: Callable[[list[int]], None] | None = None
) -> WorkerEnd:
    """This process's end of ``line``, made once (it connects on its first
    send). Making one closes the connections other runs' drivers closed."""
    with _ends_lock:
        end = _ends.get(line)
        if end is not None:
            return end
        end = _ends[line] = WorkerEnd(line, on_stop)
        others = [e for e in _ends.values() if e is not end]
    for other in others:  # a run over leaves its socket at EOF: closed here
        other.drain()
    with _ends_lock:  # and is forgotten (a line down for a run on stays down)
        for other in others:
            if other.ended:
                _ends.pop(other.line, None)
    return end


@atexit.register
def _close_ends() -> None:
    """Close this process's connections at its exit (no socket left to the
    garbage collector's warnings)."""
    with _ends_lock:
        ends = list(_ends.values())
        _ends.clear()
    for end in ends:
        end.close()
