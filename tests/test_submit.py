"""The windowed submitter: window, harvest, deadline, cancel on exit, sizing."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from distributed.utils_test import gen_cluster

from dasktune.run.submit import ChunkSizer, Window, per_worker, split_sizes
from tests.waiting import async_poll_until


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def test_split_sizes_near_equal_parts():
    for n in range(0, 40):
        for parts in range(1, 9):
            sizes = split_sizes(n, parts)
            assert sum(sizes) == n
            assert len(sizes) == min(n, parts)
            assert not sizes or max(sizes) - min(sizes) <= 1


def test_per_worker_follows_threads():
    assert per_worker(16, {"b": 8, "a": 8}) == [("a", 8), ("b", 8)]
    assert per_worker(9, {"a": 1, "b": 2}) == [("a", 3), ("b", 6)]
    assert per_worker(0, {"a": 1}) == []


def test_chunk_sizer_grows_at_most_eightfold_and_respects_the_limit():
    sizer = ChunkSizer(0.2, limit=50)
    sizer.observe(1e-6, 1)
    assert sizer.size == 8
    sizer.observe(8e-6, 8)
    assert sizer.size == 50
    slow = ChunkSizer(0.2)
    slow.observe(1.0, 1)
    assert slow.size == 1


@gen_cluster(client=True)
async def test_window_harvests_with_tags_and_cancels_on_exit(c, s, a, b):
    def body() -> list[tuple[str, float]]:
        got = []
        with pytest.raises(RuntimeError, match="leaving"), Window[str](c) as window:
            window.map(nap, [0.0, 0.01], ["x", "y"], keys=["w-x", "w-y"])
            while len(got) < 2:
                got += [(tag, r) for _, r, tag in window.next_batch()]
            window.map(nap, [1.0], ["z"], keys=["w-z"])
            raise RuntimeError("leaving with one in flight")
        return got

    got = await asyncio.to_thread(body)
    assert sorted(got) == [("x", 0.0), ("y", 0.01)]
    await async_poll_until(  # the one in flight was cancelled and released
        lambda: not c.futures,
        what="the future in flight to be released",
        state=lambda: list(c.futures),
    )


@gen_cluster(client=True)
async def test_window_deadline_raises_timeout(c, s, a, b):
    def body() -> None:
        with Window[int](c, timeout=0.2) as window:
            window.map(nap, [1.0], [0], keys=["w-slow"], workers=[a.address])
            window.next_batch()

    with pytest.raises(TimeoutError):
        await asyncio.to_thread(body)


_GATE = threading.Event()  # gen_cluster's workers run in this process


def _held(_: object) -> int:
    """A task that runs until the test opens the gate."""
    _GATE.wait(60)
    return 1


@gen_cluster(client=True, timeout=60)
async def test_next_batch_returns_once_until_holds_when_woken(c, s, a, b):
    # one wait for two sources: a future completing, or news from elsewhere
    # (a score pushed) that another thread announces with wake()
    news: list[str] = []
    made: dict[str, Window[int]] = {}
    first = threading.Event()

    def body() -> tuple[list, list]:
        with Window[int](c) as window:
            made["window"] = window
            window.map(_held, [None], [0], keys=["held"])
            woken = window.next_batch(until=lambda: bool(news))
            first.set()
            done = window.next_batch(until=lambda: False)
        return woken, done

    _GATE.clear()
    task = asyncio.create_task(asyncio.to_thread(body))
    await async_poll_until(
        lambda: "held" in s.tasks, what="the held task on the scheduler", timeout=10
    )

    def announce() -> None:  # as the client's event handler does
        news.append("pushed")
        made["window"].wake()

    await asyncio.to_thread(announce)
    assert await asyncio.to_thread(first.wait, 30)
    _GATE.set()
    woken, done = await task
    assert woken == []  # back with nothing: the task still ran
    assert [tag for _, _, tag in done] == [0]
