"""What a driver tells the Dask dashboard's dasktune page: a Dask event.

Light on purpose (the page itself, :mod:`dasktune.run.dask_page`, imports
Bokeh and Dask's dashboard): a driver only sends.
"""

from __future__ import annotations

import os
import socket
from typing import Any

__all__ = ["TOPIC", "announce"]

#: the Dask event topic the drivers send on and the page reads
TOPIC = "dasktune"


def announce(client: Any, search: str, driver: str, state: dict[str, Any]) -> None:
    """Send a driver's state of ``search`` to the page (``client.log_event``).

    Parameters
    ----------
    state : dict
        ``done``, ``pruned``, ``failed``, ``running`` (counts), ``total`` (or
        ``None``), ``best`` (or ``None``), ``execution``, ``finished`` (bool).
    """
    message = {"search": search, "driver": driver, "host": socket.gethostname(),
               "pid": os.getpid(), **state}  # fmt: skip
    client.log_event(TOPIC, message)
