"""A direct line from the trials to their driver: reports out, stops back.

A trial's report travelling as a Dask event crosses two batched streams
(worker -> scheduler -> client, ~2 ms of batching each) and waits, on the way
out and back, for the worker's event loop, which shares the GIL with the
objective's thread (up to the 5 ms switch interval per wait). The line skips
all of it: the driver listens on a TCP port of its own (:class:`LineServer`,
on the client's event loop), and each worker process opens one connection per
run (:func:`worker_end`), from the objective's own thread, on its first report.

- A report is one frame sent with a blocking ``sendall`` (microseconds), a stop
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
- The driver's :meth:`LineServer.close` closes the port and every connection; a
  worker sees the end of its connection on its next read and closes its
  socket, at the latest when the process opens its next run's line.

:func:`line_host` decides whether a client gets a line: not under TLS (the
line is plain TCP), and on the address this process reaches the scheduler
from (127.0.0.1 for a local or an ``inproc://`` one).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import dask.config
import distributed
import msgpack  # type: ignore[import-untyped]
from distributed.comm import get_address_host, parse_address
from distributed.utils import get_ip

__all__ = [
    "CONNECT_TIMEOUT",
    "MAX_FRAME",
    "Connection",
    "Line",
    "LineServer",
    "WorkerEnd",
    "decode",
    "encode",
    "line_host",
    "worker_end",
]

logger = logging.getLogger(__name__)

#: seconds a worker waits to connect, once per process and run
CONNECT_TIMEOUT = 1.0
#: seconds a worker's send may block (the driver not reading) before the line
#: is given up
SEND_TIMEOUT = 2.0
#: seconds the driver waits for a new connection's token
HELLO_TIMEOUT = 10.0
#: the largest frame accepted, in bytes
MAX_FRAME = 1 << 20
#: seconds :meth:`LineServer.close` waits for the client's event loop
CLOSE_TIMEOUT = 10.0

_HEADER = struct.Struct("!I")
T = TypeVar("T")


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


def encode(message: Any) -> bytes:
    """One frame: ``message``'s msgpack body, after its length.

    >>> encode([1, 2])
    b'\\x00\\x00\\x00\\x03\\x92\\x01\\x02'
    """
    body = msgpack.packb(message, use_bin_type=True)
    return _HEADER.pack(len(body)) + body


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


def line_host(client: distributed.Client) -> str | None:
    """The address a line to ``client``'s process listens on, or ``None``
    (no line) under TLS, for a transport other than TCP, or when the Dask
    configuration says ``dasktune.report-line: False``."""
    if not dask.config.get("dasktune.report-line", True):
        return None
    scheduler = client.scheduler
    address = None if scheduler is None else scheduler.address
    if address is None or client.security.require_encryption:
        return None
    scheme, _ = parse_address(address)
    if scheme == "inproc":  # the workers are threads of this process
        return "127.0.0.1"
    if scheme != "tcp":  # TLS: a plain TCP line would bypass it
        return None
    host = get_address_host(address)
    try:
        return str(get_ip(host))  # the interface that reaches the scheduler
    except OSError:
        return None


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
        self.down = False  # never connected, or given up: Dask events then

    def send(self, message: Any) -> bool:
        """Send ``message`` as one frame, connecting first if need be;
        ``False`` when the line is down (then send it another way)."""
        frame = encode(message)
        with self._lock:
            if self._socket is None and not self._connect():
                return False
            assert self._socket is not None
            try:
                self._socket.settimeout(SEND_TIMEOUT)
                self._socket.sendall(frame)
                self._socket.settimeout(0.0)
            except OSError as err:
                self._give_up(f"a send failed ({err!r})")
                return False
            return True

    def drain(self) -> None:
        """Read the stops that came, without blocking, and hand them on."""
        with self._lock:
            if self._socket is None:
                return
            try:
                while True:
                    data = self._socket.recv(65536)
                    if not data:
                        self._give_up("the driver closed the line")
                        break
                    self._buffer += data
            except BlockingIOError:
                pass
            except OSError as err:
                self._give_up(f"a read failed ({err!r})")
            numbers = self._frames()
        if numbers and self._on_stop is not None:
            self._on_stop(numbers)

    def _frames(self) -> list[int]:
        """The numbers of the whole stop frames in the buffer (under the lock)."""
        numbers: list[int] = []
        buffer = self._buffer
        while len(buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(buffer)
            if len(buffer) < _HEADER.size + size:
                break
            body = bytes(buffer[_HEADER.size : _HEADER.size + size])
            del buffer[: _HEADER.size + size]
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
            sock.settimeout(0.0)
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
    return end


# -- the driver's end ------------------------------------------------------------


class Connection:
    """The driver's side of one worker process's connection.

    Attributes
    ----------
    peer : str
        The worker process's address, for messages.
    closed : bool
    """

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        peer = writer.get_extra_info("peername")
        self.peer = ":".join(map(str, peer[:2])) if peer else "?"
        self.closed = False

    def send(self, message: Any) -> bool:
        """Write ``message`` (on the client's event loop); ``False`` if closed."""
        if self.closed or self._writer.is_closing():
            return False
        self._writer.write(encode(message))
        return True

    def close(self) -> None:
        self.closed = True
        self._writer.close()


class _Refused(Exception):
    """A frame the line does not accept (too large, or not msgpack)."""


async def _read(reader: asyncio.StreamReader) -> Any:
    (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    if size > MAX_FRAME:
        msg = f"a frame of {size} bytes (at most {MAX_FRAME})"
        raise _Refused(msg)
    try:
        return decode(await reader.readexactly(size))
    except ValueError as err:
        raise _Refused(str(err)) from err


class LineServer(Generic[T]):
    """The driver's end: a TCP port on the client's event loop, for one run.

    Parameters
    ----------
    client : distributed.Client
    key : str
        The run's key (:attr:`Line.key`).
    check : callable
        Turns a frame's message into what ``on_frame`` takes; raises
        ``ValueError``, ``TypeError`` (or ``IndexError``, ``KeyError``) for a
        message of the wrong shape: then the connection is closed.
    on_frame : callable
        Called on the client's event loop with each checked message and the
        :class:`Connection` it came on (to answer on).

    Attributes
    ----------
    line : Line or None
        What the trials are given; ``None``: no line (:func:`line_host`).
    refused : int
        The connections closed for a wrong token or a bad frame.
    """

    def __init__(
        self,
        client: distributed.Client,
        key: str,
        check: Callable[[Any], T],
        on_frame: Callable[[T, Connection], None],
    ) -> None:
        self.client = client
        self._check, self._on_frame = check, on_frame
        self._connections: set[Connection] = set()
        self._server: asyncio.Server | None = None
        self._starting: asyncio.Future[None] | None = None
        self.refused = 0
        self.closed = False
        self.line: Line | None = None
        host = line_host(client)
        if host is None:
            return
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # bound and listening now: a trial may connect before the loop serves
        self._socket = socket.create_server((host, 0), family=family)
        self._socket.setblocking(False)
        port = self._socket.getsockname()[1]
        self.line = Line(key, host, port, secrets.token_hex(16))
        self._loop().add_callback(self._begin)

    def _loop(self) -> Any:
        loop = self.client.loop
        assert loop is not None  # a connected client
        return loop

    def _begin(self) -> None:
        self._starting = asyncio.ensure_future(self._start())

    async def _start(self) -> None:
        if self.closed:
            self._socket.close()
            return
        self._server = await asyncio.start_server(self._serve, sock=self._socket)
        if self.closed:  # closed while starting
            self._server.close()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        connection = Connection(writer)
        self._connections.add(connection)
        assert self.line is not None  # serving
        try:
            token = await asyncio.wait_for(_read(reader), HELLO_TIMEOUT)
            if not (
                isinstance(token, str)
                and hmac.compare_digest(token.encode(), self.line.token.encode())
            ):
                raise _Refused("a wrong token")
            while not connection.closed:
                message = await _read(reader)
                try:
                    checked = self._check(message)
                except (ValueError, TypeError, IndexError, KeyError) as err:
                    raise _Refused(f"a frame of the wrong shape: {err}") from err
                self._on_frame(checked, connection)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the worker process closed it (its end, or its exit)
        except (_Refused, TimeoutError) as err:
            self.refused += 1
            why = "no token in time" if isinstance(err, TimeoutError) else str(err)
            logger.warning(
                "dasktune: the report line of run %s closed a connection from "
                "%s: %s",
                self.line.key, connection.peer, why,
            )  # fmt: skip
        finally:
            self._connections.discard(connection)
            connection.close()

    @property
    def connections(self) -> int:
        """How many worker processes are connected."""
        return len(self._connections)

    def close(self) -> None:
        """Close the port and every connection (from any thread; waits for
        the client's event loop, :data:`CLOSE_TIMEOUT` seconds at most).

        Raises
        ------
        TimeoutError
            When the client's event loop did not run the closing in time.
        """
        if self.closed:
            return
        self.closed = True
        if self.line is None:
            return
        loop = self._loop().asyncio_loop
        if not loop.is_running():  # the client is gone: nothing serves
            self._socket.close()
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._shut()
            return
        done = asyncio.run_coroutine_threadsafe(self._close(), loop)
        try:
            done.result(timeout=CLOSE_TIMEOUT)
        except TimeoutError as err:
            msg = (
                f"closing the report line of run {self.line.key} waited "
                f"{CLOSE_TIMEOUT} s for the client's event loop, in vain"
            )
            raise TimeoutError(msg) from err

    async def _close(self) -> None:
        if self._starting is not None:
            await self._starting
        self._shut()

    def _shut(self) -> None:
        if self._server is not None:
            self._server.close()
        elif self._starting is None:  # never started: the socket is ours
            self._socket.close()
        for connection in list(self._connections):
            connection.close()
        self._connections.clear()
