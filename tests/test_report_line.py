"""The direct line from the trials to their driver (dasktune.run.line): reports
out and stops back without Dask's streams, and today's events whenever the
line is down."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import struct
from types import SimpleNamespace

import dask.config
import psutil
import pytest
from distributed import Worker
from distributed.security import Security
from distributed.utils_test import BlockedGetData, async_poll_for, gen_cluster

import dasktune.run.line as line_module
from dasktune.optim.pruners import SuccessiveHalvingPruner
from dasktune.run.line import MAX_FRAME, Line, decode, encode, worker_end
from dasktune.run.line_server import line_host
from dasktune.run.report import ReportChannel, TrialHandle, report_topic
from tests.test_report import MAX_EPOCHS, StopOdd, run_trial
from tests.test_sklearn_pushed import X, Y, _judged_once, _search, _steps
from tests.waiting import async_poll_until, poll_until

TLS = Security.temporary()  # a self-signed certificate, encryption required


async def _nothing(*args, **kwargs):
    """A scheduler handler that does nothing (a route closed for the test)."""
    return {}


def _unreachable(address):
    raise OSError(f"no route to {address} (closed for the test)")


@contextlib.contextmanager
def _no_dask_path(c, s):
    """Close every way a report or a stop travels through Dask: the
    scheduler forwards no event and no broadcast, the client reaches no
    worker directly."""
    handlers = dict(s.handlers)
    s.handlers["log_event"] = s.handlers["broadcast"] = _nothing
    reachable, c.rpc = c.rpc, _unreachable
    try:
        yield
    finally:
        c.rpc = reachable
        s.handlers.update(handlers)


def _dead_line(line: Line) -> Line:
    """``line`` moved to a port nothing listens on."""
    with socket.socket() as probe:
        probe.bind((line.host, 0))
        port = probe.getsockname()[1]
    return dataclasses.replace(line, port=port)


@gen_cluster(client=True)
async def test_reports_and_stops_travel_on_the_line_alone(c, s, a, b):
    with _no_dask_path(c, s), ReportChannel(c, StopOdd()) as channel:
        assert isinstance(channel.route, Line)
        # trial 1 waits at step 3 for its stop: only the line can bring it
        first = c.submit(
            run_trial, 1, {"rate": 1.0, "epochs": 40, "hold_at": 3}, channel.route
        )
        second = c.submit(run_trial, 2, {"rate": 1.0, "epochs": 6}, channel.route)
        assert (await first)[:2] == ("pruned", 3)
        assert (await second)[:2] == ("done", 5)
        await async_poll_until(
            lambda: channel.last(2) == (5, 10.0 / 6), what="trial 2's last report"
        )
        steps = [(n, step) for n, step, _, _ in channel.drain()]
    assert sorted(steps) == [(1, i) for i in range(4)] + [(2, i) for i in range(6)]
    assert channel.line_reports == channel.reports == 10
    assert channel.verdict(1).reason == "trial 1 step 3"


def test_the_line_reaches_worker_processes(client):
    # the trial runs in a worker process: its reports reach this process's
    # channel on the line, and it waits at step 3 for the stop
    with ReportChannel(client, StopOdd()) as channel:
        params = {"rate": 1.0, "epochs": 40, "hold_at": 3}
        trial = client.submit(run_trial, 1, params, channel.route, pure=False)
        status, last_step, _ = trial.result(timeout=60)
        poll_until(lambda: channel.last(1) == (3, 2.5), what="trial 1's step 3")
    assert (status, last_step) == ("pruned", 3)
    assert channel.line_reports == 4


@gen_cluster(client=True)
async def test_a_report_on_the_line_is_also_an_event_counted_once(c, s, a, b):
    # the event copy draws the dashboard page's curves
    with ReportChannel(c, StopOdd()) as channel:
        status = await c.submit(run_trial, 2, {"rate": 1.0, "epochs": 8}, channel.route)
        assert status[:2] == ("done", 7)
        await async_poll_for(
            lambda: len(s.get_events(report_topic(channel.key))) == 8, timeout=10
        )
        await async_poll_until(lambda: not channel._twins, what="the event copies")
        reports = channel.drain()
    assert [step for _, step, _, _ in reports] == list(range(8))
    assert channel.line_reports == channel.reports == 8


@gen_cluster(client=True)
async def test_a_line_that_cannot_connect_falls_back_to_events(c, s, a, b):
    with ReportChannel(c, SuccessiveHalvingPruner(2, 2)) as channel:
        dead = _dead_line(channel.line)
        first = await c.submit(run_trial, 0, {"rate": 0.1, "epochs": 20}, dead)
        rest = await c.gather(
            [
                c.submit(
                    run_trial, n, {"rate": 1.0 + n, "epochs": 20, "hold_at": 2}, dead
                )
                for n in (1, 2)
            ]
        )
        assert worker_end(dead).down  # tried once, given up for the run
        assert not worker_end(dead).connected
    assert first[0] == "done"
    assert [r[:2] for r in rest] == [("pruned", 2), ("pruned", 2)]
    assert channel.line_reports == 0
    assert channel.reports == 20 + 3 + 3


def report_until_stopped(number, key):
    """Reports step 0, waits for the driver to close its line, then reports
    until stopped (StopOdd: at step 3); returns the step it stopped at."""
    handle = TrialHandle(number, key)
    handle.report(0, 1.0)
    poll_until(
        lambda: handle.should_prune() or worker_end(key).down,
        what="the driver to close the line",
    )
    for step in range(1, MAX_EPOCHS):
        handle.report(step, 1.0)
        poll_until(
            lambda step=step: handle.should_prune() or step < 3,
            what=f"the stop of trial {number} at step {step}",
        )
        if handle.should_prune():
            return step
    return None


@gen_cluster(client=True)
async def test_a_line_closed_mid_run_leaves_the_reports_to_the_events(c, s, a, b):
    with ReportChannel(c, StopOdd()) as channel:
        stopped = c.submit(report_until_stopped, 1, channel.route)
        await async_poll_until(lambda: channel.line_reports == 1, what="step 0")
        channel._server.close()  # the driver's end goes (the run's events stay)
        assert await stopped == 3
        assert channel.line_reports == 1
        await async_poll_until(lambda: channel.reports == 4, what="steps 1 to 3")


async def _exchange(line: Line, *frames: bytes) -> bytes:
    """Send ``frames`` to the driver's end of ``line``; what it answers until
    it closes the connection."""
    reader, writer = await asyncio.open_connection(line.host, line.port)
    try:
        for frame in frames:
            writer.write(frame)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        await writer.wait_closed()


@gen_cluster(client=True)
async def test_wrong_tokens_and_bad_frames_are_refused_and_the_line_serves_on(
    c, s, a, b
):
    with ReportChannel(c, StopOdd()) as channel:
        line = channel.line
        token = encode(line.token)
        refused = [
            [encode("not the token")],
            [encode(12345)],
            [token, struct.pack("!I", 5) + b"\xc1\xc1\xc1\xc1\xc1"],  # not msgpack
            [token, encode({"number": 1})],  # not a report
            [token, encode([1, 0, float("nan"), 0.0, "w"])],
            [token, encode([1, 0, "0.5", 0.0, "w"])],
            [token, struct.pack("!I", MAX_FRAME + 1)],
        ]
        for frames in refused:
            assert await _exchange(line, *frames) == b""  # closed at once
        assert channel._server.refused == len(refused)
        assert channel.reports == 0
        # a real trial, still served
        done = await c.submit(run_trial, 3, {"rate": 1.0, "hold_at": 3}, line)
        assert done[:2] == ("pruned", 3)
        assert channel.line_reports >= 4


@gen_cluster(client=True)
async def test_the_line_closes_with_the_channel_and_the_workers_sockets_too(c, s, a, b):
    with ReportChannel(c) as first:
        await c.submit(run_trial, 0, {"rate": 1.0, "epochs": 2}, first.route)
        await async_poll_until(lambda: first.line_reports == 2, what="two reports")
        assert first._server.connections == 1  # one per process (a and b share it)
        assert worker_end(first.line).connected
    assert first._server.connections == 0
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(first.line.host, first.line.port)
    # the next run's line, made in the same process, closes the old socket
    # and forgets the run over (a long-lived worker keeps no end per run)
    old_end = worker_end(first.line)
    with ReportChannel(c) as second:
        await c.submit(run_trial, 0, {"rate": 1.0, "epochs": 2}, second.route)
        assert not old_end.connected and old_end.ended
        assert first.line not in line_module._ends
        assert worker_end(second.line).connected
    await c.submit(run_trial, 0, {"rate": 1.0, "epochs": 2}, _dead_line(second.line))
    assert not worker_end(second.line).connected
    # no socket of either line is left open in this process (the workers'
    # ends and the driver's, here one process): no file descriptor leaks
    ports = {first.line.port, second.line.port}
    await async_poll_until(
        lambda: not _sockets_on(ports), what="the lines' sockets to close",
        state=lambda: _sockets_on(ports),
    )  # fmt: skip


def _sockets_on(ports: set[int]) -> list:
    """This process's TCP sockets from or to one of ``ports``."""
    return [
        c for c in psutil.Process().net_connections("tcp")
        if c.laddr.port in ports or (c.raddr and c.raddr.port in ports)
    ]  # fmt: skip


def test_the_line_is_plain_tcp_off_under_tls_and_on_inproc_at_home():
    def client(address, security=None):
        return SimpleNamespace(
            scheduler=SimpleNamespace(address=address), security=security or Security()
        )

    assert line_host(client("tcp://127.0.0.1:8786")) == "127.0.0.1"
    assert line_host(client("inproc://10.1.2.3/123/4")) == "127.0.0.1"
    assert line_host(client("tls://127.0.0.1:8786")) is None
    assert line_host(client("tcp://127.0.0.1:8786", TLS)) is None
    with dask.config.set({"dasktune.report-line": False}):
        assert line_host(client("tcp://127.0.0.1:8786")) is None
    assert decode(encode([1, "a", {"b": 0.5}])[4:]) == [1, "a", {"b": 0.5}]
    with pytest.raises(ValueError, match="not one msgpack value"):
        decode(b"\xc1")


@gen_cluster(client=True, security=TLS)
async def test_a_tls_cluster_reports_as_events(c, s, a, b):
    with ReportChannel(c, StopOdd()) as channel:
        assert channel.line is None
        assert channel.route == channel.key
        done = await c.submit(run_trial, 1, {"rate": 1.0, "hold_at": 3}, channel.route)
    assert done[:2] == ("pruned", 3)
    assert channel.line_reports == 0


class LosesReports(BlockedGetData):
    """A worker whose scores pushed as events never leave it, and which sends
    no task's result until ``block_get_data`` is set."""

    def log_event(self, topic, msg):
        if not str(topic).startswith(report_topic("")):
            Worker.log_event(self, topic, msg)


@gen_cluster(client=True, Worker=LosesReports, nthreads=[("127.0.0.1", 1)], timeout=180)
async def test_a_partial_fit_score_is_decided_from_the_line(c, s, a):
    # neither the events nor the score tasks' results reach the driver: a
    # model promoted past rung 1 was decided from a score on the line
    search = _search(c)
    fit = asyncio.create_task(asyncio.to_thread(search.fit, X, Y))
    await async_poll_for(lambda: any(c > 1 for _, c in _steps(s)), timeout=60)
    assert not fit.done()
    a.block_get_data.set()
    await fit
    _judged_once(search)
    await async_poll_for(lambda: not s.tasks, timeout=10)


@gen_cluster(client=True, Worker=LosesReports, timeout=180)
async def test_a_score_neither_on_the_line_nor_pushed_is_judged_from_its_result(
    c, s, a, b
):
    a.block_get_data.set()
    b.block_get_data.set()
    search = _search(c)
    with dask.config.set({"dasktune.report-line": False}):
        await asyncio.to_thread(search.fit, X, Y)
    _judged_once(search)
    assert 9 in search.cv_results_["partial_fit_calls"]
    await async_poll_for(lambda: not s.tasks, timeout=10)
