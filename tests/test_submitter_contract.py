"""The submitter contract (``dasktune.run.submit.Submitter``), run on every window.

As the optimizer contract runs on every optimizer, these tests run on each way a
run sends its work: :class:`Window` (a task each), :class:`FedWindow`
(long-lived tasks fed through actors) and :class:`HereWindow` (the caller's
process, kept there by ``execution="local"``). A new submitter gets a factory
here.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from distributed.utils_test import gen_cluster

from dasktune.run.feed import FedWindow
from dasktune.run.here import HereWindow
from dasktune.run.policy import ExecutionPolicy
from dasktune.run.submit import Submitter, Window
from tests.waiting import poll_until

pytestmark = pytest.mark.timeout(120)

#: gates the held payloads wait on (gen_cluster's workers share this process)
_GATES: dict[str, threading.Event] = {}


def double(x: Any) -> Any:
    return 2 * x


def fails_on_three(x: int) -> int:
    if x == 3:
        raise ValueError(f"three is refused ({x})")
    return x


def held(gate: str) -> str:
    """Wait, 30 s at most, until the test opens ``gate``."""
    if not _GATES[gate].wait(30):
        raise TimeoutError(f"gate {gate} was never opened")
    return gate


def window(kind: str, client: Any, runner: Callable[..., Any], **kw: Any) -> Any:
    if kind == "Window":
        return Window[int](client, kw.get("timeout"), what="contract")
    if kind == "HereWindow":
        local = ExecutionPolicy("local", what="contract")
        return HereWindow[int](local, name="contract", timeout=kw.get("timeout"))
    return FedWindow[int](client, runner, kw.get("timeout"), name="contract")


def keys(n: int) -> list[str]:
    token = uuid.uuid4().hex[:8]
    return [f"contract-{token}-{i}" for i in range(n)]


def harvest(win: Submitter[int]) -> list[tuple[Any, Any, int]]:
    got = []
    while len(win):
        got += win.next_batch()
        assert len(got) < 100, "next_batch() keeps returning"
    return got


KINDS = ["Window", "FedWindow", "HereWindow"]


@pytest.mark.parametrize("kind", KINDS)
@gen_cluster(client=True)
async def test_each_tag_comes_back_once_with_its_result(c, s, a, b, kind):
    def body() -> list[tuple[Any, Any, int]]:
        with window(kind, c, double) as win:
            assert isinstance(win, Submitter)  # the protocol's members
            payloads = [0, 1, 2, 3, 4, 5]
            win.map(double, payloads, [10 + x for x in payloads], keys=keys(6))
            assert len(win) == 6
            return harvest(win)

    got = await asyncio.to_thread(body)
    assert sorted(tag for _, _, tag in got) == [10, 11, 12, 13, 14, 15]
    assert all(finished.status == "finished" for finished, _, _ in got)
    assert {tag: result for _, result, tag in got} == {10 + x: 2 * x for x in range(6)}


@pytest.mark.parametrize("kind", KINDS)
@gen_cluster(client=True)
async def test_an_error_comes_back_as_the_runners_own(c, s, a, b, kind):
    def body() -> list[tuple[Any, Any, int]]:
        with window(kind, c, fails_on_three) as win:
            win.map(fails_on_three, [1, 3, 5], [1, 3, 5], keys=keys(3))
            return harvest(win)

    got = {tag: (finished.status, result) for finished, result, tag in await (
        asyncio.to_thread(body)
    )}  # fmt: skip
    assert got[1] == ("finished", 1) and got[5] == ("finished", 5)
    status, (kind_, error, _) = got[3]
    assert status == "error" and kind_ is ValueError
    assert isinstance(error, ValueError) and "three is refused" in str(error)


@pytest.mark.parametrize("kind", KINDS)
@gen_cluster(client=True)
async def test_unequal_payloads_tags_keys_raise_before_anything_is_sent(
    c, s, a, b, kind
):
    def body() -> None:
        with window(kind, c, double) as win:
            with pytest.raises(ValueError, match="2 payloads, 1 tags and 2 keys"):
                win.map(double, [1, 2], [1], keys=keys(2))
            with pytest.raises(ValueError, match="2 payloads, 2 tags and 3 keys"):
                win.map(double, [1, 2], [1, 2], keys=keys(3))
            assert len(win) == 0

    await asyncio.to_thread(body)
    assert not s.tasks  # nothing reached the scheduler


@pytest.mark.parametrize("kind", KINDS)
@gen_cluster(client=True)
async def test_next_batch_without_blocking_and_arrived(c, s, a, b, kind):
    def body() -> list[tuple[Any, Any, int]]:
        with window(kind, c, double) as win:
            assert win.next_batch(block=False) == [] and not win.arrived()
            win.map(double, [21], [7], keys=keys(1))
            poll_until(win.arrived, what="the arrival of one result", timeout=60)
            got = []
            while not got:  # arrived: at once, without blocking
                got = win.next_batch(block=False)
            assert len(win) == 0
            return got

    [(finished, result, tag)] = await asyncio.to_thread(body)
    assert (finished.status, result, tag) == ("finished", 42, 7)


@pytest.mark.parametrize("kind", KINDS)
@gen_cluster(client=True, timeout=60)
async def test_past_its_timeout_next_batch_raises_timeout_error(c, s, a, b, kind):
    if kind == "HereWindow":
        pytest.skip("a call here is never interrupted: test_here.py checks the timeout")
    gate = uuid.uuid4().hex
    _GATES[gate] = threading.Event()

    def body() -> None:
        with window(kind, c, held, timeout=0.5) as win:
            win.map(held, [gate], [0], keys=keys(1))
            with pytest.raises(TimeoutError):
                harvest(win)

    try:
        await asyncio.to_thread(body)
    finally:
        _GATES[gate].set()


@pytest.mark.parametrize("kind", KINDS)
@gen_cluster(client=True, timeout=60)
async def test_leaving_the_block_by_an_error_drops_what_is_in_flight(c, s, a, b, kind):
    gate = uuid.uuid4().hex
    _GATES[gate] = threading.Event()

    def body() -> Submitter[int]:
        win = window(kind, c, held)
        with pytest.raises(RuntimeError, match="leaving"), win:
            win.map(held, [gate, gate], [0, 1], keys=keys(2))
            assert len(win) == 2
            raise RuntimeError("leaving with two in flight")
        return win

    try:
        win = await asyncio.to_thread(body)
    finally:
        _GATES[gate].set()
    assert len(win) == 0
    await asyncio.to_thread(win.cancel)  # idempotent
    note = await asyncio.to_thread(win.interrupt)  # nothing left to stop
    assert note is None
