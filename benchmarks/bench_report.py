"""How an objective's reports should reach the driver, and decisions come back.

Run: ``python benchmarks/bench_report.py`` (about half a minute).

A LocalCluster of 2 single-threaded worker processes. One trial on a worker
reports ``N`` values, asking after each whether to stop, through:

(a) dasktune's channel (``dasktune.run.report``): each report on the direct
    line (``dasktune.run.line``: a frame on the worker process's TCP
    connection to the driver, the stop back on it, read by ``should_prune()``
    without blocking) and as an event (``Worker.log_event``, for the
    dashboard's page);
(a') the same channel without the line (``TrialHandle`` given the key only):
    events on the worker's batched stream, decisions pushed back by ``run``
    on the worker and as events the worker process subscribed to,
    ``should_prune()`` a set lookup;
(b) ``log_event`` for the report, a ``distributed.Variable`` of stopped trials
    read at each check;
(c) a ``distributed.Queue`` put per report, the same Variable read per check;
(d) a Dask actor on the other worker whose ``report`` returns the decision.

Printed: the cost per report on the worker (report + check), the time until the
driver has received all ``N``, and for (a) and (a') the delay from the
driver's decision to the worker seeing it. What survives a lost worker is argued in the module
notes of ``dasktune/run/report.py``: events and the Queue live on the scheduler,
an actor dies with its worker.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time

from distributed import Client, LocalCluster, Queue, Variable, get_client

from dasktune.optim.pruners import Pruner, Verdict
from dasktune.run.report import ReportChannel, TrialHandle

N = 300


class Sink:
    """(d): an actor receiving reports and answering whether to stop."""

    def __init__(self) -> None:
        self.reports: list[tuple[int, int, float]] = []

    def report(self, number: int, step: int, value: float) -> bool:
        self.reports.append((number, step, value))
        return False

    def count(self) -> int:
        return len(self.reports)


def via_channel(key: str) -> float:
    handle = TrialHandle(0, key)
    started = time.perf_counter()
    for step in range(N):
        handle.report(step, 1.0 / (step + 1))
        handle.should_prune()
    return (time.perf_counter() - started) / N


def via_event_and_variable(topic: str, name: str) -> float:
    from distributed import get_worker

    worker = get_worker()
    stopped = Variable(name, client=get_client())
    started = time.perf_counter()
    for step in range(N):
        worker.log_event(topic, [0, step, 1.0 / (step + 1), time.time()])
        _ = 0 in stopped.get()
    return (time.perf_counter() - started) / N


def via_queue(queue_name: str, name: str) -> float:
    client = get_client()
    queue = Queue(queue_name, client=client)
    stopped = Variable(name, client=client)
    started = time.perf_counter()
    for step in range(N):
        queue.put([0, step, 1.0 / (step + 1)])
        _ = 0 in stopped.get()
    return (time.perf_counter() - started) / N


def via_actor(sink) -> float:
    started = time.perf_counter()
    for step in range(N):
        sink.report(0, step, 1.0 / (step + 1)).result()
    return (time.perf_counter() - started) / N


class StopAt(Pruner):
    """Stops every trial at step 20, noting when it decided."""

    def __init__(self) -> None:
        super().__init__()
        self.decided: dict[int, float] = {}

    def _decide(self, number: int, step: int) -> Verdict:
        if step == 20:
            self.decided[number] = time.time()
            return Verdict(True, "step 20")
        return Verdict(False, "")


def until_stopped(number: int, key: str) -> float:
    """Report every millisecond until told to stop; when the worker saw it."""
    handle = TrialHandle(number, key)
    for step in range(100_000):
        handle.report(step, 1.0)
        if handle.should_prune():
            return time.time()
        time.sleep(0.001)
    return float("nan")


def wait_until(predicate, timeout: float = 60.0) -> float:
    started = time.perf_counter()
    done = threading.Event()
    while not predicate():
        if time.perf_counter() - started > timeout:
            msg = "timed out"
            raise TimeoutError(msg)
        done.wait(0.002)
    return time.perf_counter() - started


def main() -> None:
    logging.getLogger("distributed").setLevel(logging.ERROR)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):  # fmt: skip
        rows = []

        for name, line in (("(a) the line + an event (dasktune)", True),
                           ("(a') events both ways (no line)", False)):  # fmt: skip
            with ReportChannel(client) as channel:
                started = time.perf_counter()
                route = channel.route if line else channel.key
                per = client.submit(via_channel, route, pure=False).result()
                wait_until(lambda: channel.last(0) == (N - 1, 1.0 / N))
                rows.append((name, per, time.perf_counter() - started))

        Variable("stopped-b", client=client).set([])
        seen: list[object] = []
        client.subscribe_topic("bench-b", seen.append)
        started = time.perf_counter()
        per = client.submit(
            via_event_and_variable, "bench-b", "stopped-b", pure=False
        ).result()
        wait_until(lambda: len(seen) == N)
        rows.append(("(b) event + Variable.get per check", per,
                     time.perf_counter() - started))  # fmt: skip
        client.unsubscribe_topic("bench-b")

        Variable("stopped-c", client=client).set([])
        queue = Queue("reports-c", client=client)
        got: list[object] = []
        started = time.perf_counter()
        future = client.submit(via_queue, "reports-c", "stopped-c", pure=False)
        while len(got) < N:
            got.extend(queue.get(batch=True) or [])
            time.sleep(0.002)
        per = future.result()
        rows.append(("(c) Queue.put + Variable.get", per,
                     time.perf_counter() - started))  # fmt: skip

        workers = list(client.scheduler_info()["workers"])
        sink = client.submit(Sink, actor=True, workers=[workers[1]]).result()
        started = time.perf_counter()
        per = client.submit(via_actor, sink, workers=[workers[0]], pure=False).result()
        rows.append(("(d) actor call", per, time.perf_counter() - started))

        delays = {}
        for name, line in (("(a)", True), ("(a')", False)):
            pruner = StopAt()
            with ReportChannel(client, pruner) as channel:
                route = channel.route if line else channel.key
                seen_at = client.gather(
                    [
                        client.submit(until_stopped, n, route, pure=False)
                        for n in range(6)
                    ]
                )
            delays[name] = [seen_at[n] - pruner.decided[n] for n in range(6)]

    print(f"{N} reports from one trial, each followed by a check; 2 worker processes")
    print(f"{'transport':40s} {'per report':>12s} {'all received':>14s}")
    floor = rows[0][1]
    for name, per, total in rows:
        print(
            f"{name:40s} {per * 1e6:9.1f} µs {total * 1e3:11.1f} ms"
            f"   {per / floor:7.1f}× (a)"
        )
    for name, delay in delays.items():
        print(
            f"{name} decision to worker: median {statistics.median(delay) * 1e3:.1f}"
            f" ms (max {max(delay) * 1e3:.1f} ms) over 6 trials reporting every ~1 ms"
        )


if __name__ == "__main__":
    main()
