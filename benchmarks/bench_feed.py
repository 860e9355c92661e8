"""A design experiment for issue 14's wall-time target: trials *fed* to
long-lived tasks through a worker-pinned actor, against one Dask task per trial
and Optuna's own ``study.optimize(n_jobs=16)``.

Run: ``python benchmarks/bench_feed.py [--processes]`` (needs Optuna).

TPE (``constant_liar=True``) on Branin, 100 trials, 16 in flight, an objective
that sleeps 50 ms, 5 seeds interleaved, medians printed:

- feed: one ``Feed`` actor on the worker and 16 long-lived tasks that take
  trials from its in-process queue and hand results back to it; the driver
  asks a trial for each result and sends it with one actor call (no task per
  trial, so neither the scheduler's per-task work nor its latency);
- tasks: one ``client.submit`` per trial, harvested with ``as_completed``
  (what ``Search`` does today, without the store);
- optuna: ``study.optimize(objective, n_trials=100, n_jobs=16)``.

This is not dasktune code: a prototype of an execution path (no failures,
retries, lost workers, pruning or records), kept to measure it. On the 2-core
machine (2026-12-01, load ~0.7, two runs), wall: feed 0.431 / 0.581 s, tasks
0.644 / 0.949 s, Optuna 0.443 / 0.525 s (best 0.464 / 0.574, 0.472 / 0.498,
0.473 / 0.423); with one worker process (``--processes``) feed 0.591 s, tasks
0.794 s, Optuna 0.470 s.
"""

from __future__ import annotations

import asyncio
import queue
import statistics
import sys
import time

import optuna
from bench_samplers import branin  # the same Branin as bench_samplers.py
from distributed import Client, LocalCluster, as_completed, get_worker

SLEEP = 0.05
N = 100
K = 16


def slow(p):
    time.sleep(SLEEP)
    return branin(p)


class Feed:
    """Lives on a worker: trials in, results out."""

    def __init__(self):
        self.inbox: queue.Queue = queue.Queue()
        self.results: list = []
        self.loop = get_worker().loop.asyncio_loop
        self.ready = None

    def put(self, items):
        for item in items:
            self.inbox.put(item)

    def done(self, number, value):  # called from the task threads
        self.results.append((number, value))
        self.loop.call_soon_threadsafe(self._wake)

    def _wake(self):
        if self.ready is not None:
            self.ready.set()

    async def take(self):
        if self.ready is None:
            self.ready = asyncio.Event()
        while not self.results:
            self.ready.clear()
            if self.results:
                break
            await self.ready.wait()
        out, self.results = self.results, []
        return out


def serve(key, fn):
    w = get_worker()
    feed = w.state.actors[key]
    while True:
        item = feed.inbox.get()
        if item is None:
            return
        number, params = item
        feed.done(number, fn(params))


def tpe(seed):
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


DISTS = {
    "x0": optuna.distributions.FloatDistribution(-5, 10),
    "x1": optuna.distributions.FloatDistribution(0, 15),
}


def run_feed(client, seed):
    study = optuna.create_study(sampler=tpe(seed))
    started = time.perf_counter()
    feed = client.submit(Feed, actor=True).result()
    tasks = [client.submit(serve, feed.key, slow, pure=False) for _ in range(K)]
    asked = {}
    told = 0

    def ask(n):
        items = []
        for _ in range(n):
            if len(asked) + told >= N:
                break
            t = study.ask(DISTS)
            asked[t.number] = t
            items.append((t.number, t.params))
        if items:
            feed.put(items)  # fire and forget

    ask(K)
    while told < N:
        for number, value in feed.take().result(timeout=30):
            study.tell(asked.pop(number), value)
            told += 1
            ask(1)
    feed.put([None] * K)
    client.gather(tasks)
    wall = time.perf_counter() - started
    return study.best_value, wall


def run_tasks(client, seed):
    study = optuna.create_study(sampler=tpe(seed))
    started = time.perf_counter()
    asked = {}
    futures = as_completed(with_results=True)
    for _ in range(K):
        t = study.ask(DISTS)
        fut = client.submit(slow, t.params, pure=False)
        asked[fut.key] = t
        futures.add(fut)
    for told, (fut, value) in enumerate(futures, start=1):
        study.tell(asked.pop(fut.key), value)
        if told + len(asked) < N:
            t = study.ask(DISTS)
            nf = client.submit(slow, t.params, pure=False)
            asked[nf.key] = t
            futures.add(nf)
    return study.best_value, time.perf_counter() - started


def run_optuna(seed):
    study = optuna.create_study(sampler=tpe(seed))
    started = time.perf_counter()

    def objective(trial: optuna.Trial) -> float:
        return slow(
            {k: trial.suggest_float(k, d.low, d.high) for k, d in DISTS.items()}
        )

    study.optimize(objective, n_trials=N, n_jobs=K)
    return study.best_value, time.perf_counter() - started


def main():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    processes = "--processes" in sys.argv
    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=K + 2,
            processes=processes,
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        rows = {"feed": [], "tasks": [], "optuna": []}
        for seed in range(5):
            rows["feed"].append(run_feed(client, seed))
            rows["tasks"].append(run_tasks(client, seed))
            rows["optuna"].append(run_optuna(seed))
        for name, r in rows.items():
            print(
                f"{name:>7}: best {statistics.median(b for b, _ in r):.4g} "
                f"wall {statistics.median(w for _, w in r):.3f} s"
            )


if __name__ == "__main__":
    main()
