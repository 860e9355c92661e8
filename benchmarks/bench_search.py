"""Search against Optuna, and the trial store alone.

Run: ``python benchmarks/bench_search.py`` (needs ``pip install -e ".[bench]"``).

One run, same machine, same trivial objective, 500 trials, results on disk:
- dasktune ``Search`` (random sampling of a 2-D space) on a 2-process
  ``LocalCluster``, store: a SQLite file;
- Optuna ``study.optimize`` with a SQLite ``RDBStorage`` and its random sampler;
- the store alone: trials claimed and recorded per second, in batches, against
  Dask's cost per task (raw ``client.map`` + ``gather`` of no-ops).

- the driver's CPU per trial (``time.process_time`` of a driver running in a
  process of its own, so the ``LocalCluster``'s in-process scheduler is not
  counted);
- a re-run over a grid of trivial trials all done, against evaluating them.

Targets: dasktune >= 2,500 trials/s and >= 10x Optuna's trials per second; the
store's own cost per trial <= 10% of Dask's per-task cost; driver CPU <= 100 us
per trial; a re-run over done trials >= 5x faster than evaluating them.
``os.getloadavg()`` is printed: the machine may be shared.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import statistics
import tempfile
import time

from distributed import Client, LocalCluster

from dasktune import Float, Search
from dasktune.records import Claim, Outcome, TrialStatus, canonical
from dasktune.store.sql import TrialStore

N_TRIALS = 500
REPEATS = 3


def objective(params: dict) -> float:
    return (params["x"] - 0.3) ** 2 + (params["y"] + 0.1) ** 2


def optuna_objective(trial) -> float:
    return objective(
        {"x": trial.suggest_float("x", -1, 1), "y": trial.suggest_float("y", -1, 1)}
    )


def bench_dasktune(client: Client, folder: str, i: int) -> float:
    url = f"sqlite:///{folder}/dasktune-{i}.db"
    space = {"x": Float(-1, 1), "y": Float(-1, 1)}
    with Search("bench", objective, url, client=client, space=space) as search:
        started = time.perf_counter()
        report = search.run(n_trials=N_TRIALS, seed=i, progress=False)
        elapsed = time.perf_counter() - started
        assert report.evaluated == N_TRIALS
        assert len(search.trials(status="done")) == N_TRIALS
    return N_TRIALS / elapsed


def _drive(address: str, folder: str, queue, n: int = 5000) -> None:
    """In a process of its own: the driver's CPU per trial of ``Search.run``."""
    logging.getLogger("distributed").setLevel(logging.ERROR)
    space = {"x": Float(-1, 1), "y": Float(-1, 1)}
    with Client(address) as client:
        bench_dasktune(client, folder, 200)  # warm-up
        url = f"sqlite:///{folder}/driver-cpu.db"
        with Search("cpu", objective, url, client=client, space=space) as search:
            started = time.process_time()
            search.run(n_trials=n, seed=0, progress=False)
            queue.put((time.process_time() - started) / n)


def driver_cpu(address: str, folder: str) -> float:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_drive, args=(address, folder, queue))
    process.start()
    per_trial = queue.get()
    process.join()
    return per_trial


def bench_rerun(client: Client, folder: str, n: int = 5000) -> tuple[float, float]:
    """Seconds to evaluate a grid of ``n`` trivial trials, then to re-run it."""
    grid = [{"x": i / n, "y": 0.5} for i in range(n)]
    url = f"sqlite:///{folder}/rerun.db"
    times = []
    for _ in range(2):
        with Search("rerun", objective, url, client=client) as search:
            started = time.perf_counter()
            search.run(grid, progress=False)
            times.append(time.perf_counter() - started)
    return times[0], times[1]


def bench_optuna(folder: str, i: int) -> float:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(f"sqlite:///{folder}/optuna-{i}.db")
    study = optuna.create_study(
        storage=storage, sampler=optuna.samplers.RandomSampler(seed=i)
    )
    started = time.perf_counter()
    study.optimize(optuna_objective, n_trials=N_TRIALS)
    return N_TRIALS / (time.perf_counter() - started)


def bench_store(folder: str, batch: int = 50) -> float:
    store = TrialStore(f"sqlite:///{folder}/store.db")
    sid = store.open_search("store", space=None, direction="minimize", metadata={})
    driver = store.register_driver(sid)
    claims = [Claim(*reversed(canonical({"i": i}))) for i in range(N_TRIALS * 4)]
    started = time.perf_counter()
    previous: list[Outcome] = []
    for start in range(0, len(claims), batch):
        chunk = claims[start : start + batch]
        store.sync(sid, driver, previous, chunk)
        previous = [Outcome(c.param_hash, TrialStatus.DONE, value=1.0) for c in chunk]
    store.sync(sid, driver, previous, [])
    elapsed = time.perf_counter() - started
    store.close()
    return len(claims) / elapsed


def dask_task_cost(client: Client, n: int = 500) -> float:
    def noop(x: int) -> int:
        return x

    client.gather(client.map(noop, range(50), pure=False))
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        client.gather(client.map(noop, range(n), pure=False))
        times.append((time.perf_counter() - started) / n)
    return statistics.median(times)


def main() -> None:
    logging.getLogger("distributed").setLevel(logging.ERROR)
    print(f"load average {os.getloadavg()} (2 cores, shared with other users)")
    with tempfile.TemporaryDirectory() as folder:
        with (
            LocalCluster(
                n_workers=os.cpu_count() or 2,
                threads_per_worker=1,
                host="127.0.0.1",
                dashboard_address=None,
            ) as cluster,
            Client(cluster) as client,
        ):
            bench_dasktune(client, folder, 100)  # warm-up
            ours = statistics.median(
                bench_dasktune(client, folder, i) for i in range(REPEATS)
            )
            per_task = dask_task_cost(client)
            evaluate_s, rerun_s = bench_rerun(client, folder)
            cpu = driver_cpu(cluster.scheduler_address, folder)
        theirs = statistics.median(bench_optuna(folder, i) for i in range(REPEATS))
        store_rate = statistics.median(bench_store(folder) for _ in range(REPEATS))
    print(f"{N_TRIALS} trials of a trivial objective, results in a SQLite file")
    print(f"  dasktune Search (LocalCluster): {ours:8.0f} trials/s")
    print(f"  Optuna RDBStorage (SQLite):     {theirs:8.0f} trials/s")
    print(f"  ratio: {ours / theirs:.1f}x (target >= 10x; >= 2,500 trials/s)")
    print(f"  driver CPU: {cpu * 1e6:.0f} us per trial (target <= 100 us)")
    print(f"re-run over 5,000 done trials {rerun_s:.2f} s, evaluating them "
          f"{evaluate_s:.2f} s: {evaluate_s / rerun_s:.1f}x faster (target >= 5x)")  # fmt: skip
    store_cost = 1 / store_rate
    print(
        f"store alone, batches of 50: {store_rate:8.0f} trials/s "
        f"({store_cost * 1e6:.0f} us per trial)"
    )
    print(f"Dask per task (client.map of no-ops): {per_task * 1e6:.0f} us")
    print(f"  store / Dask per-task cost: {store_cost / per_task:.1%} (target <= 10%)")
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
