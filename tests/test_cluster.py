"""get_client and capacity."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import dask.config
import psutil
import pytest
from distributed.utils_test import gen_cluster

from dasktune import async_map, get_client
from dasktune.run.cluster import (
    CONNECT_TIMEOUT,
    capacity,
    close_owned,
    connect_timeout,
    owned_cluster,
)


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


# -- TLS by address ------------------------------------------------------------


def _load(i):
    return i


def _x(params):
    return params["x"]


def _process(params, loaded):
    return params * loaded


@pytest.fixture
def tls_cluster(cleanup):
    pytest.importorskip("cryptography")
    from distributed import LocalCluster
    from distributed.security import Security

    security = Security.temporary()
    with LocalCluster(
        n_workers=1, processes=False, host="127.0.0.1", protocol="tls",
        security=security, dashboard_address=":0",
    ) as cluster:  # fmt: skip
        try:
            yield cluster.scheduler_address, security
        finally:
            close_owned()


def test_tls_address_with_security_everywhere(tls_cluster):
    from dasktune import ProducerConsumer, Search, async_apply, minimize

    address, security = tls_cluster
    assert address.startswith("tls://")
    client = get_client(address, security=security)
    assert get_client(address, security=security) is client  # reused
    assert async_map(abs, [-1, -2], client=address, security=security) == [1, 2]
    assert async_apply(address, pow, (2, 5), security=security).result() == 32
    with Search("tls", _x, "sqlite:///:memory:", client=address,
                security=security) as search:  # fmt: skip
        assert search.run([{"x": 1}]).evaluated == 1
    res = minimize(lambda x: float(x[0] ** 2), [(-1, 1)], client=address,
                   security=security, seed=0, maxiter=3, popsize=4)  # fmt: skip
    assert res.nfev > 0
    with ProducerConsumer(_load, [1, 2], _process, client=address,
                          security=security) as pc:  # fmt: skip
        assert pc.run(3) == [3, 6]


def test_tls_address_without_certificates_says_what_to_pass(tls_cluster):
    address, _ = tls_cluster
    with pytest.raises(TypeError, match="ssl_context") as info:
        async_map(abs, [1], client=address)
    assert "is a TLS address: pass security=Security(" in info.value.__notes__[0]


def test_security_naming_a_missing_file_says_which(tmp_path):
    from distributed.security import Security

    sec = Security(tls_ca_file=str(tmp_path / "ca.pem"), tls_client_cert="-----BEGIN")
    with pytest.raises(
        FileNotFoundError, match=r"tls_ca_file is '.*ca\.pem', which is not a file"
    ) as info:
        async_map(abs, [1], client="tls://127.0.0.1:1", security=sec)
    assert not getattr(info.value, "__notes__", None)  # nothing half-made to close


def test_security_must_be_a_security_and_not_with_a_client():
    with pytest.raises(TypeError, match="security must be a distributed.security"):
        get_client("tls://127.0.0.1:1", security="ca.pem")


@gen_cluster(client=True)
async def test_security_refused_with_a_connected_client(c, s, a, b):
    from distributed.security import Security

    with pytest.raises(TypeError, match="security was given with a Client"):
        await asyncio.to_thread(get_client, c, security=Security())


FAILED_CONNECT = """
import dasktune
try:
    dasktune.async_map(abs, [1], client="{address}")
except TypeError as err:
    print("refused:", err.__notes__[0][:40])
"""


def test_no_hang_at_exit_after_a_failed_connect(tls_cluster):
    address, _ = tls_cluster
    done = subprocess.run(
        [sys.executable, "-c", FAILED_CONNECT.format(address=address)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "refused: tls://" in done.stdout
    assert "Traceback" not in done.stderr


def test_script_without_main_guard_is_told_what_to_do(tmp_path):
    # spawn imports the script again in the new worker process: its own call
    # there refuses to start a cluster, and the parent's failure says why
    # (execution="tasks": a function as cheap as abs is otherwise mapped in
    # the caller's process, with no cluster to start)
    script = tmp_path / "no_guard.py"
    script.write_text(
        "import dasktune\n"
        "print(dasktune.async_map(abs, [-1], ncpu=1, execution='tasks'))\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120,
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode != 0
    advice = 'under `if __name__ == "__main__":`'
    assert "cannot start in a worker process being started" in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("dasktune: if this runs from a script") and advice in last
    assert owned_cluster() is None  # this process started nothing


# -- task names on the dashboard -----------------------------------------------


def _dashboard_label(key: str) -> str:
    """What Dask's progress panel shows for a task: its group (``key_split``),
    cut to 12 characters + "..." by ``progress_quads``."""
    from dask.utils import key_split
    from distributed.diagnostics.progress_stream import progress_quads

    group = key_split(key)
    msg = {k: {group: 1} for k in
           ("all", "memory", "erred", "released", "processing", "queued")}  # fmt: skip
    return progress_quads(msg)["show-name"][0]


def neg_loglike(x):
    return -x


@gen_cluster(client=True)
async def test_task_names_say_what_and_whose_in_12_characters(c, s, a, b):
    from dasktune import ProducerConsumer, Search

    await asyncio.to_thread(async_map, neg_loglike, [1, 2], client=c)
    with Search("svm_grid search 2", _x, "sqlite:///:memory:", client=c) as search:
        await asyncio.to_thread(search.run, [{"x": 1}])
    pc = await asyncio.to_thread(
        ProducerConsumer, _load, [1], _process, client=c, name="gaussian_shards",
        visible=True,
    )  # fmt: skip
    await asyncio.to_thread(pc.run, 2)
    await asyncio.to_thread(pc.close)
    shown = {_dashboard_label(prefix) for prefix in s.task_prefixes}
    # what (map, trial, pc-load, pc-run), then whose, within the 12 characters
    assert {"map-neg-loglike", "trial-svm-gr...", "pc-load-gaus...",
            "pc-run-gauss..."} <= shown, shown  # fmt: skip


def test_dashboard_port_taken_announces_the_port_used(cleanup, caplog):
    import socket

    blocker = socket.socket()
    try:
        blocker.bind(("127.0.0.1", 8787))
        blocker.listen()
    except OSError:
        pass  # already taken by someone else: the same case
    try:
        with caplog.at_level("WARNING", logger="dasktune"):
            client = get_client(n_workers=1)
        port = owned_cluster().scheduler.services["dashboard"].port
        assert port != 8787
        assert f"dashboard: http://127.0.0.1:{port}/status" in caplog.text
        assert str(port) in client.dashboard_link
    finally:
        close_owned()
        blocker.close()


# -- an unreachable scheduler ----------------------------------------------------


def test_unreachable_scheduler_is_named_within_the_connect_timeout():
    assert connect_timeout() == CONNECT_TIMEOUT == 5.0
    with (
        dask.config.set({"dasktune.connect-timeout": 1}),
        pytest.raises(OSError, match="tcp://127.0.0.1:1 after 1 s") as info,
    ):
        get_client("tcp://127.0.0.1:1")
    note = info.value.__notes__[-1]
    assert "no Dask scheduler answered at tcp://127.0.0.1:1 within 1 s" in note
    assert "dasktune.connect-timeout" in note
    for bad in (0, "later"):
        with (
            dask.config.set({"dasktune.connect-timeout": bad}),
            pytest.raises(ValueError, match="connect-timeout must be a positive"),
        ):
            connect_timeout()


@gen_cluster(client=True)
async def test_a_connected_client_keeps_dasks_timeout_for_its_later_waits(c, s, a, b):
    from dasktune.run.cluster import connect

    with dask.config.set({"distributed.comm.timeouts.connect": "45s"}):
        client = await asyncio.to_thread(connect, s.address)
    try:
        assert client._timeout == 45  # reconnections, scatters, restarts
    finally:
        await asyncio.to_thread(client.close)
