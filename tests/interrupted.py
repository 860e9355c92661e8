"""Two interrupted trials in a search's store, as a resumed search finds them."""

from __future__ import annotations

from typing import Any

from dasktune.records import Claim, canonical
from tests.waiting import async_poll_until

#: a point of the samplers' tests' space for each kind of interruption
POINTS = [
    {"x": 0.5, "lr": 0.01, "depth": 2, "kind": "b", "flag": True},
    {"x": -1.5, "lr": 0.001, "depth": 7, "kind": "c", "flag": False},
]


async def interrupt_two(search: Any) -> list[dict[str, Any]]:
    """Leave :data:`POINTS` interrupted in ``search`` (made with
    ``stale_after`` under 0.3 s): the first put back as queued by a run
    stopped early, the second running under a driver that died (its heartbeat
    stale). An adaptive sampler never asks them again by itself."""
    store = search.store
    stopped, killed = (store.register_driver(search.search_id) for _ in range(2))
    for driver, params in zip((stopped, killed), POINTS, strict=True):
        store.sync(search.search_id, driver, [], [Claim(*reversed(canonical(params)))])
    store.release(search.search_id, stopped)
    _, killed_hash = canonical(POINTS[1])

    def taken_over() -> bool:  # the killed driver's heartbeat is stale
        decision = store.peek(
            search.search_id, stopped, [killed_hash], stale_after=search.stale_after
        )[0]
        return decision.kind == "evaluate"

    await async_poll_until(taken_over, what="the killed driver's claim to go stale")
    assert sorted(search.trials()["status"]) == ["queued", "running"]
    return POINTS
