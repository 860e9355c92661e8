"""A real ``LocalCluster`` on 127.0.0.1 for the tests that need one of their own
(killed workers, drivers in other processes), closed on the way out."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from distributed import Client, LocalCluster


@contextmanager
def local_client(
    n_workers: int, threads_per_worker: int, *, processes: bool = True
) -> Iterator[Client]:
    """A client of a new cluster bound to 127.0.0.1, without a dashboard."""
    # an in-process cluster binds 127.0.0.1 only with an explicit protocol
    protocol = {} if processes else {"protocol": "tcp"}
    with (
        LocalCluster(
            n_workers=n_workers, threads_per_worker=threads_per_worker,
            processes=processes, host="127.0.0.1", dashboard_address=None,
            **protocol,
        ) as cluster,
        Client(cluster) as client,
    ):  # fmt: skip
        yield client
