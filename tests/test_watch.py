"""The dasktune page's state (a scheduler plugin fed by Dask events) and the
driver's side of it (messages held back, not lost)."""

from __future__ import annotations

import asyncio
import threading

import distributed
from distributed.utils_test import async_poll_for, gen_cluster

from dasktune.run import watch as watch_module
from dasktune.run.announce import TOPIC, Announcer
from dasktune.run.report import report_topic
from dasktune.run.watch import NAME, Curve, Watch, watch


def message(search, key, trials, **more):
    return {"search": search, "driver": "d1", "host": "h", "pid": 1, "done": 0,
            "reports": key, "trials": trials, "finished": False, **more}  # fmt: skip


@gen_cluster(client=True)
async def test_a_page_opened_late_gets_the_curves_sent_before(c, s, a, b):
    # the plugin is added on the page's first view: it reads the event log once
    s.log_event(TOPIC, message("late", "k1", [0, 1]))
    for step in range(3):
        s.log_event(report_topic("k1"), [0, step, 10.0 - step, 0.0, "w"])
    state = watch(s)
    assert s.plugins[NAME] is state and watch(s) is state  # added once
    # then it follows the events as they come
    s.log_event(report_topic("k1"), [1, 0, 5.0, 0.0, "w"])
    s.log_event(report_topic("k1"), [0, 1, 99.0, 0.0, "w"])  # a re-run's repeat
    curves = state.running_curves("late")
    assert [(n, c.steps, c.values) for n, c in curves.items()] == [
        (0, [0, 1, 2], [10.0, 9.0, 8.0]),
        (1, [0], [5.0]),
    ]
    s.log_event(TOPIC, message("late", "k1", [1]))  # trial 0 ended
    assert list(state.running_curves("late")) == [1]
    s.log_event(TOPIC, message("late", "k1", [], finished=True))
    assert state.running_curves("late") == {} and "k1" not in state.curves
    assert [row["finished"] for row in state.latest()] == [True]


def test_memory_stays_bounded_over_a_long_search(monkeypatch):
    monkeypatch.setattr(watch_module, "_SPARE_CURVES", 3)
    state = Watch()
    for number in range(20):  # 20 trials, one running at a time
        state.log_event(TOPIC, message("long", "k", [number]))
        state.log_event(report_topic("k"), [number, 0, 1.0, 0.0, "w"])
    # at most 4 × running + spare curves kept at each message (plus those
    # reported since); the running one among them
    assert len(state.curves["k"]) <= 4 + 3 + 1 and 19 in state.curves["k"]
    curve = Curve()
    for step in range(10 * watch_module._MAX_POINTS):
        curve.add(step, float(step))
    assert len(curve.steps) < 2 * watch_module._MAX_POINTS
    assert curve.steps[-1] == 10 * watch_module._MAX_POINTS - 1  # the last kept
    assert curve.steps == sorted(curve.steps) and curve.values == curve.steps
    for run in range(2 * watch_module._MAX_RUNS):  # runs never announced
        state.log_event(report_topic(f"r{run}"), [0, 0, 1.0, 0.0, "w"])
    assert len(state.curves) == watch_module._MAX_RUNS


def test_events_that_are_not_a_trials_report_are_ignored():
    state = Watch()
    state.log_event(report_topic("k"), "not a report")
    state.log_event(TOPIC, ["not", "a", "message"])
    state.log_event("other-topic", {"search": "x"})
    assert state.curves == {} and state.rows == {} and state.version == 0


@gen_cluster(client=True)
async def test_a_message_held_back_is_sent_when_its_time_comes(c, s, a, b):
    # the second message comes within the limit: held, then sent without any
    # further call (a driver waiting long for results sends nothing)

    async def send(announcer, done, final=False):  # as a driver does: a thread
        state = {"done": done, "finished": final}
        await asyncio.to_thread(announcer.send, state, final=final)

    def sent(driver):
        return [m["done"] for _, m in s.get_events(TOPIC) if m["driver"] == driver]

    announcer = Announcer(c, "held", "d1", every=2.0)
    for done in (1, 2):
        await send(announcer, done)
    await async_poll_for(lambda: sent("d1") == [1, 2], timeout=10)
    # a newer message replaces the one held; a final one goes at once and
    # drops the one held
    slow = Announcer(c, "held", "d2", every=600.0)
    for done in (3, 4, 5):
        await send(slow, done)
    await send(slow, 6, final=True)
    await async_poll_for(lambda: sent("d2") == [3, 6], timeout=10)


@gen_cluster(client=True)
async def test_a_message_held_when_its_client_closes_is_dropped_quietly(c, s, a, b):
    # Ctrl-C: the driver's client closes while a message waits its turn; its
    # send must not raise from the event loop (it printed a traceback)
    async with distributed.Client(s.address, asynchronous=True) as other:
        announcer = Announcer(other, "closing", "d3", every=600.0)
        for done in (1, 2):  # the second is held
            await asyncio.to_thread(announcer.send, {"done": done, "finished": False})
        assert announcer._held is not None
        # the first leaves from the event loop (the driver does not wait)
        await async_poll_for(lambda: sent(s, "d3") == [1], timeout=10)
    await announcer._flush()  # its timer fires after the close
    assert announcer._held is None
    assert sent(s, "d3") == [1]


def sent(s, driver):
    """The ``done`` of each message ``driver`` sent, in the scheduler's order."""
    return [m["done"] for _, m in s.get_events(TOPIC) if m["driver"] == driver]


@gen_cluster(client=True)
async def test_a_driver_never_waits_on_a_round_trip_but_for_its_last_message(
    c, s, a, b
):
    """A message leaves from the client's event loop: sent from a driver's
    thread while that loop is busy, ``send`` returns at once (it waited on a
    round trip to the scheduler: 2-85 ms, which a short run felt); the final
    one arrives after those before it, before ``send`` returns."""
    announcer = Announcer(c, "quick", "d4", every=0.0)
    returned = threading.Event()

    def driver() -> None:
        announcer.send({"done": 1, "finished": False})
        returned.set()

    thread = threading.Thread(target=driver)
    thread.start()
    try:
        # this blocks the event loop: a send waiting on it would time out
        assert returned.wait(5), "send() waited on the client's event loop"
    finally:
        thread.join(5)
    await asyncio.to_thread(announcer.send, {"done": 2, "finished": False})
    await asyncio.to_thread(announcer.send, {"done": 3, "finished": True}, final=True)
    assert sent(s, "d4")[-1] == 3  # the final one is there when send returns
    await async_poll_for(lambda: sent(s, "d4") == [1, 2, 3], timeout=10)
