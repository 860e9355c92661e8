"""optuna-dashboard on a live dasktune store: ``dasktune serve STORE``.

:func:`make_server` serves optuna-dashboard's WSGI application over
:func:`dasktune.optuna_storage` (read-only, live) on 127.0.0.1: every search
of the store is a study, shown as it runs — trials by state (pruned
included), history, intermediate values (the trials' reported curves),
parallel coordinates, parameter importances, the Pareto front of several
objectives, the trial table with each failure's error (a user attribute).
Nothing is hand-written here: optuna-dashboard shows what the old live page
showed, and more. Its editing features (notes, renames, deletion, telling a
trial) are refused before they reach the storage, with an HTTP 403 whose
reason (the storage's own refusal, which the dashboard shows in its error
banner) says why; the storage refuses any other write; the store is never
written.
"""

from __future__ import annotations

import json
import os
import re
import socketserver
import threading
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer
from wsgiref.simple_server import make_server as _wsgi

from dasktune.optim.optuna import import_optuna
from dasktune.store.sql import TrialStore

__all__ = ["DashboardServer", "make_server", "optuna_storage"]


def optuna_storage(store: str | os.PathLike[str] | TrialStore) -> Any:
    """A read-only, live Optuna storage over a dasktune store.

    Each search is an Optuna study of the same name, each trial a trial of it,
    converted as :func:`to_optuna` converts them (states, every objective's
    value, reported values as intermediate values, distributions, user
    attributes), but read from the store at each call: a running search's new
    trials appear without a copy. ``optuna.load_study`` and optuna-dashboard
    read it directly.

    Parameters
    ----------
    store : str, path-like or TrialStore
        The dasktune store: a URL (SQLite or PostgreSQL), a SQLite file's
        path (opened read-only, closed by the storage's ``close()``), or an
        open :class:`~dasktune.store.sql.TrialStore` (read, never closed).

    Returns
    -------
    optuna.storages.BaseStorage
        Every method that would write raises
        :class:`~dasktune.exceptions.StoreError`: the store is written by
        dasktune's drivers only.

    Raises
    ------
    ImportError
        If Optuna is not installed.
    StoreError
        If the store cannot be opened, or is not a dasktune store.

    Examples
    --------
    >>> import optuna  # doctest: +SKIP
    >>> storage = dasktune.optuna_storage("runs.db")  # doctest: +SKIP
    >>> study = optuna.load_study(study_name="tpe", storage=storage)  # doctest: +SKIP
    >>> study.best_value  # doctest: +SKIP
    """
    import_optuna()
    from dasktune.optuna_view import ReadOnlyStorage

    if isinstance(store, TrialStore):
        return ReadOnlyStorage(store, own=False)
    return ReadOnlyStorage(TrialStore(store, readonly=True), own=True)


def _import_dashboard() -> Any:
    try:
        import optuna_dashboard
    except ImportError as err:
        msg = (
            "dasktune serve needs optuna-dashboard, which is not installed; "
            "pip install optuna-dashboard (or dasktune's extra, from its clone: "
            "pip install -e '.[dashboard]')"
        )
        raise ImportError(msg) from err
    return optuna_dashboard


# optuna-dashboard's routes that write (optuna_dashboard/_app.py and
# artifact/_backend.py; its other POSTs, /api/llm/..., only read), by what a
# user did, as the refusal names it
_WRITES = (
    (r"PUT /api/studies/\d+(/\d+)?/note", "saving a note"),
    (r"POST /api/trials/\d+/user-attrs", "editing a trial's user attributes"),
    (r"POST /api/trials/\d+/tell", "marking a trial complete or failed"),
    (r"POST /api/studies/\d+/rename", "renaming a study"),
    (r"DELETE /api/studies/\d+", "deleting a study"),
    (r"POST /api/studies", "creating a study"),
    (
        r"(POST|PUT|DELETE) /api/studies/\d+/(preference.*|\d+/skip)",
        "recording a preference",
    ),
    (r"(POST|DELETE) /api/artifacts/.*", "uploading or deleting an artifact"),
)
_READ_POSTS = re.compile(r"POST /api/llm/")


def _refuse_writes(app: Any, storage: Any) -> None:
    """Answer every request of ``app`` (optuna-dashboard's Bottle application)
    that would write with HTTP 403 and ``{"reason": ...}`` (what the dashboard
    shows), before it reaches the storage (whose refusal would be an HTTP 500
    with "internal server error")."""
    from bottle import HTTPResponse, request  # type: ignore[import-untyped]

    def refuse() -> None:
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return
        line = f"{request.method} {request.path.rstrip('/')}"
        if _READ_POSTS.match(line):
            return
        what = next(
            (w for pattern, w in _WRITES if re.fullmatch(pattern, line)),
            f"{request.method} {request.path}",
        )
        reason = json.dumps({"reason": storage.refusal(what)})
        raise HTTPResponse(reason, 403, {"Content-Type": "application/json"})

    app.add_hook("before_request", refuse)


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    """A request per thread (the page polls while a plot is computed)."""

    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    """No line per request on stderr (``--debug`` keeps them)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


class DashboardServer:
    """optuna-dashboard serving a store on 127.0.0.1 (made by :func:`make_server`).

    Attributes
    ----------
    url : str
        The dashboard's address, ``http://127.0.0.1:PORT/``.
    storage : optuna.storages.BaseStorage
        The read-only storage it reads.
    """

    def __init__(self, server: WSGIServer, storage: Any) -> None:
        self._server = server
        self.storage = storage
        self.port = int(server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}/"
        self._thread: threading.Thread | None = None

    def serve_forever(self) -> None:
        """Serve in this thread until :meth:`shutdown` (or Ctrl-C)."""
        self._server.serve_forever(poll_interval=0.2)

    def start(self) -> None:
        """Serve in a background thread (stopped by :meth:`close`)."""
        self._thread = threading.Thread(
            target=self.serve_forever, name="dasktune-serve", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving (joining the background thread) and close the store."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=30)
            if self._thread.is_alive():
                msg = "dasktune serve's server thread did not stop within 30 s"
                raise TimeoutError(msg)
        self._server.server_close()
        self.storage.close()

    def __enter__(self) -> DashboardServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_server(
    store: str | os.PathLike[str] | TrialStore,
    port: int = 8080,
    *,
    quiet: bool = True,
) -> DashboardServer:
    """optuna-dashboard over ``store``, listening on 127.0.0.1 (not yet serving).

    Parameters
    ----------
    store : str, path-like or TrialStore
        The dasktune store (a URL or a SQLite file's path, opened read-only).
    port : int, default 8080
        The port (0: a free one, see ``DashboardServer.port``).
    quiet : bool, default True
        No line on stderr per request.

    Returns
    -------
    DashboardServer
        Call ``serve_forever()`` (or ``start()``), then ``close()``.

    Raises
    ------
    ValueError
        If ``port`` is not in [0, 65535].
    ImportError
        If optuna-dashboard (or Optuna) is not installed.
    OSError
        If the port is taken.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < 65536:
        msg = f"port must be an integer in [0, 65535] (0: a free one), got {port!r}"
        raise ValueError(msg)
    dashboard = _import_dashboard()
    storage = optuna_storage(store)
    try:
        app = dashboard.wsgi(storage)
        _refuse_writes(app, storage)
        handler = _QuietHandler if quiet else WSGIRequestHandler
        server = _wsgi("127.0.0.1", port, app, server_class=_Server,
                       handler_class=handler)  # fmt: skip
    except BaseException:  # the port taken, ...: the store is not left open
        storage.close()
        raise
    return DashboardServer(server, storage)
