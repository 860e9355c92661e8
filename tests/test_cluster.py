"""get_client and capacity."""

from __future__ import annotations

import asyncio

import psutil
import pytest
from distributed.utils_test import gen_cluster

from dasktune import async_map, get_client
from dasktune.run.cluster import capacity, close_owned, owned_cluster


@gen_cluster(client=True)
async def test_reuses_current_client(c, s, a, b):
    assert await asyncio.to_thread(get_client) is c
    assert await asyncio.to_thread(get_client, c) is c


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1), ("127.0.0.1", 3)])
async def test_capacity_counts_threads_not_workers(c, s, a, b):
    assert await asyncio.to_thread(capacity, c) == 4


def test_bad_address():
    with pytest.raises(
        TypeError, match="address must be a distributed.Client.*got int"
    ):
        get_client(8786)


@gen_cluster(client=True)
async def test_cluster_kwargs_refused_with_existing_client(c, s, a, b):
    with pytest.raises(TypeError, match=r"cluster options \['n_workers'\] only apply"):
        await asyncio.to_thread(get_client, c, n_workers=3)


def _listening(process: psutil.Process) -> list[tuple[int, str]]:
    out = []
    for p in [process, *process.children(recursive=True)]:
        try:
            conns = p.net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        out += [(p.pid, c.laddr.ip) for c in conns if c.status == psutil.CONN_LISTEN]
    return out


def test_owned_cluster_binds_localhost_and_is_reused(cleanup):
    before = {addr for _, addr in _listening(psutil.Process())}
    try:
        client = get_client(n_workers=2)
        cluster = owned_cluster()
        assert cluster is not None
        assert "127.0.0.1" in client.dashboard_link
        assert capacity(client) == 2
        assert all(n == 1 for n in client.nthreads().values())
        sockets = _listening(psutil.Process())
        assert len(sockets) >= 4  # scheduler, dashboard, workers
        assert {addr for _, addr in sockets} - before <= {"127.0.0.1"}
        assert get_client() is client  # reused, not started again
        assert async_map(abs, [-1, -2], client=None) == [1, 2]
    finally:
        close_owned()
    assert owned_cluster() is None


def test_address_and_cluster_objects(cleanup):
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=1,
        processes=False,
        host="127.0.0.1",
        protocol="tcp",
        dashboard_address=":0",
    ) as cluster:
        try:
            by_cluster = get_client(cluster)
            assert get_client(cluster) is by_cluster
            assert get_client(cluster.scheduler_address) is by_cluster
            assert by_cluster.submit(abs, -3).result() == 3
        finally:
            close_owned()
