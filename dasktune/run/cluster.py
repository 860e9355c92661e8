"""Which Dask client to use, and how much it can run at once.

Everything in dasktune runs on a :class:`distributed.Client`. :func:`get_client`
resolves the ``client=`` argument every public function takes:

- a ``Client`` is used as it is;
- a cluster object (``LocalCluster``, a dask-jobqueue ``SLURMCluster``, ...) or a
  scheduler address (``"tcp://host:8786"``, ``"tls://..."``) gets a client attached,
  made once and reused;
- ``None`` means the current client if there is one, else a ``LocalCluster`` that
  dasktune starts and owns: worker processes with one thread each, as many as the
  machine has cores, every socket bound to 127.0.0.1. It is reused by later calls
  and closed at interpreter exit (or by :func:`close_owned`).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from typing import Any

import distributed
from distributed.deploy.cluster import Cluster

__all__ = ["capacity", "close_owned", "get_client"]

logger = logging.getLogger("dasktune")

_lock = threading.RLock()
_owned_cluster: distributed.LocalCluster | None = None
_owned_client: distributed.Client | None = None
# clients dasktune attached to a cluster object or an address, keyed by address
_attached: dict[str, distributed.Client] = {}
_capacity_cache: weakref.WeakKeyDictionary[distributed.Client, tuple[float, int]] = (
    weakref.WeakKeyDictionary()
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
    cluster = distributed.LocalCluster(**options)
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
    address: distributed.Client | Cluster | str | None = None, **cluster_kwargs: Any
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
        If ``address`` is none of the above, or ``cluster_kwargs`` come with an
        ``address`` (they only describe a cluster dasktune starts).

    Examples
    --------
    >>> client = get_client()  # doctest: +SKIP
    >>> client = get_client("tcp://scheduler:8786")  # doctest: +SKIP
    >>> client = get_client(SLURMCluster(cores=8, memory="16GB"))  # doctest: +SKIP
    """
    return _get_client(address, cluster_kwargs, announce=True)


def _get_client(
    address: distributed.Client | Cluster | str | None,
    cluster_kwargs: dict[str, Any],
    *,
    announce: bool,
) -> distributed.Client:
    """:func:`get_client`; ``announce=False`` leaves the dashboard link of a
    cluster it starts to the caller (the command line prints it itself)."""
    if isinstance(address, distributed.Client):
        if cluster_kwargs:
            raise TypeError(_kwargs_with_address(cluster_kwargs, address))
        return address
    with _lock:
        if address is None:
            current = _current_client()
            if current is not None and current.status not in ("closing", "closed"):
                return current
            if _owned_client is not None and _owned_client.status == "running":
                return _owned_client
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
            client = distributed.Client(address)
            _attached[key] = client
        return client


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
