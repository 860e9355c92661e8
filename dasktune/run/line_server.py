"""The driver's end of the direct line (:mod:`dasktune.run.line`): a TCP port
on the client's event loop, one per run, answering on the connection a frame
came on.

- Each connection's first frame must be the run's token (compared in constant
  time); a wrong one, a frame that is not msgpack or is larger than
  :data:`~dasktune.run.line.MAX_FRAME`, or a message of the wrong shape
  closes that connection (logged, counted in :attr:`LineServer.refused`),
  never the server.
- :meth:`LineServer.close` closes the port and every connection, from any
  thread.

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
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import dask.config
import distributed
from distributed.comm import get_address_host, parse_address
from distributed.utils import get_ip

from dasktune.run.line import HEADER, MAX_FRAME, Line, decode, encode

__all__ = ["CLOSE_TIMEOUT", "HELLO_TIMEOUT", "Connection", "LineServer", "line_host"]

logger = logging.getLogger(__name__)

#: seconds the driver waits for a new connection's token
HELLO_TIMEOUT = 10.0
#: seconds :meth:`LineServer.close` waits for the client's event loop
CLOSE_TIMEOUT = 10.0

T = TypeVar("T")


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
    """What closes a connection: a wrong token, or a frame too large, not
    msgpack, or of the wrong shape."""


async def _read(reader: asyncio.StreamReader) -> Any:
    (size,) = HEADER.unpack(await reader.readexactly(HEADER.size))
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
