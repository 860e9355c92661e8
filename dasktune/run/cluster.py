"""Which Dask client to use, and how much it can run at once.

Everything in dasktune runs on a :class:`distributed.Client`. :func:`get_client`
resolves the ``client=`` argument every public function takes:

- a ``Client`` is used as it is;
- a cluster object (``LocalCluster``, a dask-jobqueue ``SLURMCluster``, ...) or a
  scheduler address (``"tcp://host:8786"``, ``"tls://..."``) gets a client attached,
  made once and reused; a ``tls://`` address takes ``security=`` (a
  :class:`distributed.security.Security`), else Dask's TLS configuration;
- ``None`` means the current client if there is one, else a ``LocalCluster`` that
  dasktune starts and owns: worker processes with one thread each, as many as the
  machine has cores, every socket bound to 127.0.0.1. It is reused by later calls
  and closed at interpreter exit (or by :func:`close_owned`).

Its worker processes are started with ``spawn``, which imports the script that
started them again: a script's code that starts work must sit under ``if
__name__ == "__main__":``. Without it, the script's first call in the new
process refuses to start a cluster there, saying so in one line, and the
parent's failure to start the cluster carries the same advice.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import os
import sys
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import dask.config
import distributed
from dask.utils import parse_timedelta
from distributed.deploy.cluster import Cluster
from distributed.security import Security

from dasktune.run.lost import config_seconds

__all__ = [
    "CONNECT_TIMEOUT",
    "capacity",
    "check_resources",
    "close_owned",
    "connect",
    "connect_timeout",
    "get_client",
]

logger = logging.getLogger("dasktune")

_lock = threading.RLock()
_owned_cluster: distributed.LocalCluster | None = None
_owned_client: distributed.Client | None = None
# clients dasktune attached to a cluster object or an address, keyed by address
_attached: dict[str, distributed.Client] = {}
_capacity_cache: weakref.WeakKeyDictionary[distributed.Client, tuple[float, int]] = (
    weakref.WeakKeyDictionary()
)


_SCRIPT_ADVICE = (
    "dasktune starts Dask's workers as new processes, which import the script "
    "that started them again: put the script's code that runs maps and searches "
    'under `if __name__ == "__main__":`, as multiprocessing requires'
)


def _current_client() -> distributed.Client | None:
    """The client of this context (a worker's, or the default one), if any."""
    try:
        return distributed.get_client()
    except ValueError:
        return None


def _start_local_cluster(
    announce: bool = True, **cluster_kwargs: Any
) -> distributed.Client:
    global _owned_cluster, _owned_client
    options: dict[str, Any] = {
        "n_workers": os.cpu_count() or 1,
        "threads_per_worker": 1,
        "processes": True,
        "host": "127.0.0.1",
        "dashboard_address": "127.0.0.1:8787",
    }
    options.update(cluster_kwargs)
    if not options.get("processes", True):
        # an in-process cluster cannot bind 127.0.0.1 without an explicit protocol
        options.setdefault("protocol", "tcp")
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        # a worker process being started, running the script's code again
        msg = (
            "a LocalCluster cannot start in a worker process being started: "
            f"{_SCRIPT_ADVICE}"
        )
        raise RuntimeError(msg)
    from dasktune.run.dask_page import register

    register()  # dasktune's page in the cluster's dashboard
    try:
        cluster = distributed.LocalCluster(**options)
    except Exception as err:
        if getattr(sys.modules.get("__main__"), "__file__", None) is not None:
            err.add_note(f"dasktune: if this runs from a script, {_SCRIPT_ADVICE}")
        raise
    try:
        client = distributed.Client(cluster, set_as_default=True)
    except BaseException:
        cluster.close()
        raise
    _owned_cluster, _owned_client = cluster, client
    if announce:
        logger.warning(
            "dasktune started a LocalCluster; dashboard: %s", client.dashboard_link
        )
    return client


def get_client(
    address: distributed.Client | Cluster | str | None = None,
    *,
    security: Security | None = None,
    **cluster_kwargs: Any,
) -> distributed.Client:
    """Return the Dask client to run on.

    Parameters
    ----------
    address : Client, Cluster, str or None
        A ``Client`` (returned as it is), a cluster object such as a
        ``LocalCluster`` or a dask-jobqueue ``SLURMCluster`` (a client is attached
        once and reused), a scheduler address such as ``"tcp://10.0.0.5:8786"``, or
        ``None``: the current client if there is one, else a ``LocalCluster`` owned
        by dasktune (started on first use, reused, closed at interpreter exit).
    security : distributed.security.Security, optional
        TLS certificates for a ``"tls://..."`` address, such as
        ``Security(tls_ca_file="ca.pem", tls_client_cert="cert.pem",
        tls_client_key="key.pem", require_encryption=True)``. Without it Dask's
        configuration (``distributed.comm.tls.*``) is used, and a cluster object
        brings its own. With ``address=None`` it secures the ``LocalCluster``
        dasktune starts.
    **cluster_kwargs
        Options for the owned ``LocalCluster`` when one has to be started
        (``n_workers``, ``threads_per_worker``, ``memory_limit``, ...). The defaults
        are one single-threaded worker process per core, bound to 127.0.0.1, with
        the dashboard on ``127.0.0.1:8787`` (or a free port).

    Returns
    -------
    distributed.Client

    Raises
    ------
    TypeError
        If ``address`` is none of the above, ``security`` is not a ``Security``
        or comes with a ``Client`` (already connected), or ``cluster_kwargs``
        come with an ``address`` (they only describe a cluster dasktune starts).
    OSError, TimeoutError
        If the scheduler cannot be reached; the half-made client is closed, so
        the interpreter does not wait for it at exit.

    Examples
    --------
    >>> client = get_client()  # doctest: +SKIP
    >>> client = get_client("tcp://scheduler:8786")  # doctest: +SKIP
    >>> client = get_client("tls://scheduler:8786", security=sec)  # doctest: +SKIP
    >>> client = get_client(SLURMCluster(cores=8, memory="16GB"))  # doctest: +SKIP
    """
    return _get_client(address, cluster_kwargs, announce=True, security=security)


def _get_client(
    address: distributed.Client | Cluster | str | None,
    cluster_kwargs: dict[str, Any],
    *,
    announce: bool,
    security: Security | None = None,
) -> distributed.Client:
    """:func:`get_client`; ``announce=False`` leaves the dashboard link of a
    cluster it starts to the caller (the command line prints it itself)."""
    if security is not None and not isinstance(security, Security):
        msg = (
            "security must be a distributed.security.Security (TLS certificates), "
            f"got {type(security).__name__}: {security!r}; build one with "
            "Security(tls_ca_file=..., tls_client_cert=..., tls_client_key=...)"
        )
        raise TypeError(msg)
    if isinstance(address, distributed.Client):
        if cluster_kwargs:
            raise TypeError(_kwargs_with_address(cluster_kwargs, address))
        if security is not None:
            msg = (
                f"security was given with a Client that is already connected "
                f"({address!r}); pass the scheduler address instead, or drop "
                "security"
            )
            raise TypeError(msg)
        return address
    with _lock:
        if address is None:
            current = _current_client()
            if current is not None and current.status not in ("closing", "closed"):
                return current
            if _owned_client is not None and _owned_client.status == "running":
                return _owned_client
            if security is not None:
                cluster_kwargs = {**cluster_kwargs, "security": security}
            return _start_local_cluster(announce, **cluster_kwargs)
        if cluster_kwargs:
            raise TypeError(_kwargs_with_address(cluster_kwargs, address))
        if isinstance(address, Cluster):
            key = address.scheduler_address
        elif isinstance(address, str):
            key = address
        else:
            msg = (
                "address must be a distributed.Client, a cluster object, a scheduler "
                f"address string or None, got {type(address).__name__}: {address!r}"
            )
            raise TypeError(msg)
        client = _attached.get(key)
        if client is None or client.status != "running":
            client = connect(address, security=security)
            _attached[key] = client
        return client


def _check_security_files(security: Security) -> None:
    """Refuse a ``Security`` naming a certificate or key file that does not
    exist, naming it (Python's ``ssl`` says only "No such file or directory")."""
    for name in ("tls_ca_file", "tls_client_cert", "tls_client_key"):
        value = getattr(security, name, None)
        # Dask takes a file's path or its PEM text
        pem_text = isinstance(value, str) and "-----BEGIN" in value
        if isinstance(value, str) and not pem_text and not os.path.isfile(value):
            msg = (
                f"security's {name} is {value!r}, which is not a file "
                f"(relative to {os.getcwd()}): give the path of the PEM file, "
                "or its text"
            )
            raise FileNotFoundError(msg)


def connect(
    address: Cluster | str, *, security: Security | None = None, **client_kwargs: Any
) -> distributed.Client:
    """A new ``distributed.Client`` for ``address``, closed again if it fails.

    A ``Client`` whose constructor raised (an unreachable scheduler, a TLS
    address without certificates) is otherwise left half-made, and its
    ``__del__`` may keep the interpreter waiting at exit.

    Parameters
    ----------
    address : Cluster or str
    security : distributed.security.Security, optional
        ``None`` uses Dask's TLS configuration (or the cluster's own).
    **client_kwargs
        More arguments of :class:`distributed.Client`. Without ``timeout``,
        the scheduler must answer within :func:`connect_timeout` seconds (not
        Dask's 30 s); the client's later waits keep Dask's default.

    Returns
    -------
    distributed.Client

    Raises
    ------
    OSError, TimeoutError, TypeError
        What ``distributed.Client`` raised, with a note naming the address
        and, for a ``tls://`` address without certificates, what to pass.
    """
    if security is not None:
        _check_security_files(security)
    chosen = "timeout" in client_kwargs
    client_kwargs.setdefault("timeout", connect_timeout())
    client = distributed.Client.__new__(distributed.Client)
    try:
        client.__init__(address, security=security, **client_kwargs)  # type: ignore[misc]
    except BaseException as err:
        # a client that failed before its event loop existed has nothing to close
        if getattr(client, "_loop_runner", None) is not None:
            try:
                client.close(timeout=2)
            except Exception as close_err:  # the connect error is the one to raise
                err.add_note(f"closing the half-made client failed too: {close_err!r}")
        text = address if isinstance(address, str) else address.scheduler_address
        if isinstance(err, OSError | TimeoutError) and "Timed out" in str(err):
            err.add_note(
                f"dasktune: no Dask scheduler answered at {text} within "
                f"{client_kwargs['timeout']:g} s: check that it runs and that the "
                "address is right; to wait longer, set Dask's configuration "
                "dask.config.set({'dasktune.connect-timeout': seconds}) (dasktune "
                "run: --connect-timeout)"
            )
        if (
            text.startswith("tls://")
            and security is None
            and isinstance(err, TypeError)
        ):
            err.add_note(
                f"{text} is a TLS address: pass security=Security(tls_ca_file=..., "
                "tls_client_cert=..., tls_client_key=...) (dasktune run: --tls-ca-file, "
                "--tls-cert, --tls-key) or set Dask's distributed.comm.tls.* config"
            )
        raise
    if not chosen:
        # the client's timeout also bounds its reconnections, scatters and
        # restarts later: Dask's default for those, the short one only to connect
        client._timeout = parse_timedelta(
            dask.config.get("distributed.comm.timeouts.connect"), default="seconds"
        )
    return client


#: seconds to reach a scheduler, by default (``dasktune.connect-timeout``)
CONNECT_TIMEOUT = 5.0


def connect_timeout() -> float:
    """Seconds :func:`connect` waits for a scheduler to answer: Dask's
    configuration ``dasktune.connect-timeout`` (seconds or ``"20s"``), else
    :data:`CONNECT_TIMEOUT`.

    >>> import dask.config
    >>> with dask.config.set({"dasktune.connect-timeout": "20s"}):
    ...     connect_timeout()
    20.0
    """
    seconds = config_seconds("dasktune.connect-timeout", CONNECT_TIMEOUT, "'20s'")
    if seconds is None:  # no wait at all is not a bound
        msg = (
            "Dask's configuration dasktune.connect-timeout must be a positive "
            "number of seconds or a duration such as '20s', got None"
        )
        raise ValueError(msg)
    return seconds


def wait_for(
    futures: Sequence[Any], timeout: float | None, what: str, done_as: str
) -> None:
    """``distributed.wait`` whose ``TimeoutError`` says what timed out, after how
    long, and how far it got (``"3 of 4 <done_as>"``)."""
    started = time.monotonic()
    try:
        distributed.wait(futures, timeout=timeout)
    except TimeoutError as err:
        done = sum(future.done() for future in futures)
        msg = (
            f"{what} timed out after {time.monotonic() - started:.3g} s "
            f"(timeout={timeout} s): {done} of {len(futures)} {done_as}; raise the "
            "timeout, or check on the dashboard that the workers are busy with it"
        )
        raise TimeoutError(msg) from err


def _kwargs_with_address(kwargs: dict[str, Any], address: object) -> str:
    return (
        f"cluster options {sorted(kwargs)} only apply to a LocalCluster that dasktune "
        f"starts itself, but an existing client or cluster was given ({address!r}); "
        "drop the options or configure that cluster instead"
    )


def capacity(client: distributed.Client, max_age: float = 0.0) -> int:
    """Total number of worker threads: how many tasks the cluster runs at once.

    Parameters
    ----------
    client : distributed.Client
    max_age : float, default 0
        Accept a value read from the scheduler at most this many seconds ago.
        Asking the scheduler costs a round trip (about 10 ms within a busy
        client's send window), which hot paths such as ``async_map`` avoid by
        accepting a value a second or two old.

    Returns
    -------
    int
        ``sum(client.nthreads().values())``, at least 1 (a cluster still scaling up
        counts as one thread, so callers never divide by zero).
    """
    now = time.monotonic()
    cached = _capacity_cache.get(client)
    if cached is not None and now - cached[0] <= max_age:
        return cached[1]
    value = max(1, sum(client.nthreads().values()))
    _capacity_cache[client] = (now, value)
    return value


def check_resources(client: distributed.Client, resources: Mapping[str, float]) -> None:
    """Raise ``ValueError`` when no worker declared ``resources``.

    A task asking for resources no worker has would wait for ever, so the
    workers' declared resources (``dask worker --resources "GPU=1"``) are read
    before anything is submitted. A cluster with no worker yet (a batch system
    still starting them) is not checked: its workers may declare them.
    """
    bad = {
        name: amount
        for name, amount in resources.items()
        if not isinstance(name, str)
        or isinstance(amount, bool)
        or not isinstance(amount, int | float)
        or not amount > 0
    }
    if bad:
        msg = (
            "resources must map resource names to positive amounts, e.g. "
            f"{{'GPU': 1}}; got {dict(resources)!r}"
        )
        raise ValueError(msg)
    workers = client.scheduler_info(n_workers=-1)["workers"]
    if not workers:
        return
    declared = {
        addr: dict(info.get("resources") or {}) for addr, info in workers.items()
    }
    if any(
        all(have.get(name, 0) >= amount for name, amount in resources.items())
        for have in declared.values()
    ):
        return
    shown = "; ".join(f"{addr}: {have or 'none'}" for addr, have in declared.items())
    msg = (
        f"no worker has the resources {dict(resources)!r}, so tasks asking for "
        f"them would wait for ever; the workers declare {shown}. Start workers "
        "with them "
        '(dask worker --resources "GPU=1", or dask-jobqueue\'s '
        'worker_extra_args=["--resources", "GPU=1"]) or drop resources='
    )
    raise ValueError(msg)


def close_owned() -> None:
    """Close the clients and the ``LocalCluster`` that dasktune started.

    Called at interpreter exit; safe to call more than once.
    """
    global _owned_cluster, _owned_client
    with _lock:
        for client in _attached.values():
            client.close()
        _attached.clear()
        if _owned_client is not None:
            _owned_client.close()
            _owned_client = None
        if _owned_cluster is not None:
            _owned_cluster.close()
            _owned_cluster = None


def owned_cluster() -> distributed.LocalCluster | None:
    """The ``LocalCluster`` dasktune started, if any (for tests and the CLI)."""
    return _owned_cluster


atexit.register(close_owned)
