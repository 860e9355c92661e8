"""The Dask dashboard's dasktune page on a 100,000-trial search: its CPU.

Run: ``python benchmarks/bench_dask_page.py [--trials 100000] [--rate 50]``

A real ``Scheduler`` (in this process, no workers) gets the events of a search
of ``--trials`` trials that each report ``--epochs`` values: one driver
message a second (as drivers send them: counts, the ``--running`` trials in
flight) and the trials' reports, ``--rate`` trials a second. The scheduler's
event log keeps the last 100,000 of each topic (Dask's default). Then the
page is opened (a Bokeh document, as Dask builds one per browser session,
whose every change is serialized as Bokeh's server would send it), and each
simulated second of the live search — its events in, one refresh of the page —
is timed in CPU seconds of this thread. Measured, medians of ``--seconds``:

(a) the page (this code): the plugin keeping its state as events arrive, and a
    refresh drawing from that state;
(b) the peer, measured in the same run: the same refresh done by re-reading
    the scheduler's event log (the driver messages and the running trials'
    reports) each time, as a page without the plugin would. The log keeps
    only the last ``distributed.admin.low-level-log-length`` events of a topic
    (1,000 by default): that page would also lose the start of a curve longer
    than that.

The target (issue 25): the live page of a 100,000-trial search refreshes with
under 25% of one core. A refresh is every second, so CPU seconds per simulated
second are the share of a core.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable

from bokeh.document import Document
from bokeh.models import ColumnDataSource
from bokeh.protocol import Protocol
from distributed import Scheduler

from dasktune.run.announce import TOPIC
from dasktune.run.dask_page import lines, page, render
from dasktune.run.report import report_topic
from dasktune.run.watch import NAME, Watch, fill

KEY = "0123456789abcdef"  # the run's report key


def message(done: int, running: list[int], total: int) -> dict:
    return {"search": "big", "driver": "d1", "host": "h", "pid": 1, "done": done,
            "pruned": 0, "failed": 0, "running": len(running), "total": total,
            "best": 0.1, "execution": "tasks", "finished": False, "reports": KEY,
            "trials": running}  # fmt: skip


def one_second(args: argparse.Namespace, state: dict) -> list[tuple[str, object]]:
    """The events of one second of the search, ``(topic, message)``: its
    trials' reports, then the driver's message."""
    topic, events = report_topic(KEY), []
    for _ in range(args.rate * args.epochs):
        first = state["first"]
        number = first + state["turn"] % args.running
        step = state["steps"].get(number, 0)
        events.append((topic, [number, step, 1.0 / (step + 1), 0.0, "tcp://w"]))
        state["turn"] += 1
        if step + 1 == args.epochs:  # the trial ends; the next one starts
            state["steps"].pop(number, None)
            state["first"] += 1
            state["done"] += 1
        else:
            state["steps"][number] = step + 1
    first = state["first"]
    trials = list(range(first, first + args.running))
    events.append((TOPIC, message(state["done"], trials, args.trials)))
    return events


def rescan(s: Scheduler, source: ColumnDataSource) -> None:
    """The peer's refresh: the same table and curves, from the event log."""
    fresh = Watch()
    fill(fresh, s.get_events())
    render(fresh.latest(), time.time())
    source.data = lines(fresh.running_curves("big"))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100_000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--rate", type=int, default=50, help="trials a second")
    parser.add_argument("--running", type=int, default=64)
    parser.add_argument("--seconds", type=int, default=20)
    args = parser.parse_args()
    async with Scheduler(port=0, dashboard=False, dashboard_address=None) as s:
        state = {"first": 0, "turn": 0, "steps": {}, "done": 0}
        started = time.perf_counter()
        while state["done"] < args.trials:  # the search's history
            for topic, msg in one_second(args, state):
                s.log_event(topic, msg)
        print(f"{args.trials} trials of {args.epochs} reports sent to the "
              f"scheduler in {time.perf_counter() - started:.0f} s; its log "
              f"holds {len(s.get_events(report_topic(KEY)))} reports and "
              f"{len(s.get_events(TOPIC))} driver messages")  # fmt: skip

        doc = Document()
        sent = [0, 0]  # bytes to the browser: this page's, the peer's

        def serializer(which: int) -> Callable[[object], None]:
            def serialize(event: object) -> None:  # what a session sends
                msg = Protocol().create("PATCH-DOC", [event])
                sent[which] += len(msg.header_json) + len(msg.content_json)

            return serialize

        started = time.thread_time()
        page(s, {}, doc)  # the plugin added, filled from the log
        print(f"the page opened (the plugin filled from the log) in "
              f"{time.thread_time() - started:.2f} s of CPU")  # fmt: skip
        doc.on_change(serializer(0))
        theirs_doc, source = Document(), ColumnDataSource(lines({}))
        theirs_doc.add_root(source)
        theirs_doc.on_change(serializer(1))
        (callback,) = doc.session_callbacks
        # the plugin is fed by hand below, so that its own time is measured
        # (the scheduler's handling of the events is there with or without it)
        plugin = s.plugins.pop(NAME)
        ours, peers = [], []
        for _ in range(args.seconds):
            events = one_second(args, state)
            for topic, msg in events:
                s.log_event(topic, msg)
            started = time.thread_time()
            for topic, msg in events:
                plugin.log_event(topic, msg)
            callback.callback()
            ours.append(time.thread_time() - started)
            started = time.thread_time()
            rescan(s, source)
            peers.append(time.thread_time() - started)
        mine, theirs = statistics.median(ours), statistics.median(peers)
        print(
            f"(a) this page, per second of the live search: {mine * 1e3:.1f} ms "
            f"of CPU = {mine:.1%} of one core (target < 25%); "
            f"{sent[0] / args.seconds / 1e3:.0f} kB a second to the browser"
        )
        print(f"(b) peer, the same refresh re-reading the event log: "
              f"{theirs * 1e3:.1f} ms = {theirs:.1%} of one core "
              f"({theirs / mine:.1f}x this page's)")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
