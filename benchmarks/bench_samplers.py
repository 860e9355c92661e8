"""Optuna's TPE through dasktune on Dask against Optuna's own parallel loop.

Run: ``python benchmarks/bench_samplers.py [--trials 100] [--seeds 5] [--processes | --busy]``
(needs ``pip install -e ".[bench,optuna]"``).

Three standard problems — Branin (2-D, minimum 0.397887), Hartmann-6 (6-D,
minimum -3.32237) and Rosenbrock (10-D, minimum 0) — at an equal budget of trials,
16 trials in flight, an objective that also sleeps 50 ms (an expensive
evaluation), the same ``TPESampler(constant_liar=True, seed=s)``:

- dasktune: ``Search(...).run(OptunaSampler(tpe), n_trials=N,
  max_in_flight=16, execution=...)`` on a ``LocalCluster`` with 16 threads
  (one in-process worker; ``--processes``: 2 worker processes of 8 threads),
  trials recorded in a SQLite file; twice: ``execution="feed"`` (what
  ``"auto"`` picks for TPE: trials fed to long-lived tasks) and
  ``execution="tasks"`` (one Dask task per trial);
- Optuna: ``study.optimize(objective, n_trials=N, n_jobs=16)`` on an in-memory
  study (its fastest storage; threads, as ``n_jobs`` uses).

Wall times are ``search.run`` against ``study.optimize``: opening the search
(its store's schema, the provenance) and creating the study are outside both.

Seeds run interleaved (dasktune, Optuna and the floors for each seed in turn),
so that the load of a shared machine weighs on all alike. Printed per problem, side
by side, medians over seeds: the best values, the wall times and their ratio
(Optuna's wall / dasktune fed: above 1 means dasktune is faster), the CPU seconds
of this process (all its threads: the sampler's asks, and for dasktune also the
in-process scheduler, worker and client), and two floors:

- Dask floor: the same 100 evaluations of the objective (fixed parameters, no
  sampler, no store), one task each, 16 in flight, through ``client.submit``
  and ``as_completed(with_results=True)`` on the same cluster: the best wall time
  any driver sending one task per trial can reach here.
- asks floor: the same TPE, seed and budget driven by nothing but its own
  ``study.ask``/``study.tell`` and a pool of 16 threads running the objective
  (no Dask, no store, no thread per trial): the best wall time any driver that
  asks one sampler in this process can reach. Its asks are most of it: Optuna's
  TPE spends about 4 ms of CPU per ask here, under the GIL, one at a time.

Targets: dasktune's best no worse than Optuna's, in less wall time.

Latest (2026-12-02, 5 seeds, load 0.8-1.6), one in-process worker, wall fed /
a task per trial / Optuna / asks floor, Branin 0.79 / 1.37 / 0.68 / 0.62 s,
Hartmann-6 1.11 / 1.68 / 1.17 / 0.96 s, Rosenbrock-10 1.38 / 1.96 / 1.32 / 1.18
s (fed 0.87x / 1.05x / 0.95x Optuna's speed); median bests fed / Optuna 0.474 /
0.455, -3.08 / -2.75, 290 / 295. The driver's process is CPU-bound in all
(CPU seconds are within 10% of the wall): the same TPE's asks, about 4 ms
each under one GIL, are most of every column, so even the asks floor, a
driver with no overhead at all, is only 1.1-1.2x faster than Optuna's threads;
dasktune's worker threads, Dask's event loop and its bookkeeping (the store's
turns, not its file: an in-memory store ran as fast) take that margin and a
little more.
On a sleeping objective in one process, then, dasktune is at parity with
Optuna, not faster; it is faster where the objective needs the CPU (below).

``--busy``: the same three problems with an objective that computes for 50 ms
in Python (holding the GIL) instead of sleeping: the usual cost of a model
fitted in Python. dasktune runs fed on a ``LocalCluster`` of 2 worker processes
of 8 threads; against Optuna's ``n_jobs=16`` (threads: one GIL) and Optuna as
its documentation runs a CPU-bound objective on one machine, 2 processes (one
per core) of 8 threads sharing a study in a ``JournalFileBackend`` file, each
with its own seeded TPE and half the trials. The Optuna processes are started
before the timing, as the cluster is. Latest (2026-12-02, 5 seeds, load
1.0-2.5), wall dasktune / Optuna threads / Optuna processes: Branin 3.43 /
6.29 / 4.21 s, Hartmann-6 3.70 / 6.64 / 5.62 s, Rosenbrock-10 3.75 / 6.89 /
7.29 s (dasktune 1.80-1.84x faster than the threads, 1.22-1.94x than the
processes); median bests 0.470 / 0.444 / 0.422, -2.84 / -3.18 / -3.06, 376 /
210 / 276. The bests of 5 seeds do not tell the drivers apart (the same
sampler; one seed's best varies 2x): over 15 more seeds, Hartmann-6 (seeds
5-19) medians -2.82 (dasktune) and -2.90 (Optuna's threads), dasktune better
on 8 of 15; Rosenbrock-10 (seeds 15-29) 243 and 240, better on 9 of 15.

Then two objectives: ZDT1 in 10 dimensions, ``NSGAIISampler(population_size=16,
seed=s)`` through ``Search(directions=["minimize", "minimize"])`` against
Optuna's ``study.optimize(n_jobs=16)`` with the same sampler; printed: the
median hypervolume of the front each reaches (reference point (1, 10); larger
is better) and the wall time (``--zdt-trials``, default 320: 20 generations).
Latest (2026-12-02, 5 seeds): hypervolume 8.424 (dasktune) vs 8.363 (Optuna),
wall 1.91 s vs 1.67 s (0.88x; a sleeping objective, as above).
"""

from __future__ import annotations

import argparse
import logging
import math
import multiprocessing
import os
import statistics
import tempfile
import time
from concurrent.futures import (
    FIRST_COMPLETED,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)

import numpy as np
import optuna
from distributed import Client, LocalCluster, as_completed

from dasktune import Float, Search
from dasktune._pareto import hypervolume_2d
from dasktune.optim.optuna import OptunaSampler

SLEEP = 0.05
IN_FLIGHT = 16
PROCESSES = 2  # Optuna's multi-process peer (--busy): one process per core

_HARTMANN_A = np.array(
    [[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
     [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]]
)  # fmt: skip
_HARTMANN_P = 1e-4 * np.array(
    [[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
     [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]]
)  # fmt: skip
_HARTMANN_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def branin(p: dict) -> float:
    x, y = p["x0"], p["x1"]
    b, c = 5.1 / (4 * math.pi**2), 5 / math.pi
    return (
        (y - b * x**2 + c * x - 6) ** 2
        + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x)
        + 10
    )


def hartmann6(p: dict) -> float:
    x = np.array([p[f"x{i}"] for i in range(6)])
    inner = np.sum(_HARTMANN_A * (x - _HARTMANN_P) ** 2, axis=1)
    return float(-np.sum(_HARTMANN_ALPHA * np.exp(-inner)))


def rosenbrock10(p: dict) -> float:
    x = np.array([p[f"x{i}"] for i in range(10)])
    return float(np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2))


PROBLEMS = {
    "branin": (branin, {"x0": Float(-5, 10), "x1": Float(0, 15)}),
    "hartmann6": (hartmann6, {f"x{i}": Float(0, 1) for i in range(6)}),
    "rosenbrock10": (rosenbrock10, {f"x{i}": Float(-2, 2) for i in range(10)}),
}


def burn(seconds: float) -> None:
    """Compute in Python, holding the GIL, until this thread has used
    ``seconds`` of CPU: an objective whose cost is Python code."""
    until = time.thread_time() + seconds
    x = 0
    while time.thread_time() < until:
        for i in range(1000):
            x ^= i


class Slow:
    """The problem, taking 50 ms more per evaluation (module level: pickles):
    asleep (an evaluation that waits: I/O, a subprocess, a GPU), or with
    ``busy=True`` 50 ms of CPU in Python."""

    def __init__(self, name: str, busy: bool = False) -> None:
        self.name = name
        self.busy = busy
        self.__name__ = name

    def __call__(self, params: dict) -> float:
        if self.busy:
            burn(SLEEP)
        else:
            time.sleep(SLEEP)
        return PROBLEMS[self.name][0](params)


ZDT_DIMENSIONS = 10
ZDT_SPACE = {f"x{i}": Float(0, 1) for i in range(ZDT_DIMENSIONS)}
ZDT_REFERENCE = (1.0, 10.0)
TWO = ["minimize", "minimize"]


def zdt1(params: dict) -> tuple[float, float]:
    """ZDT1 (Zitzler, Deb, Thiele 2000): a convex front at g = 1, taking 50 ms."""
    time.sleep(SLEEP)
    x = np.array([params[f"x{i}"] for i in range(ZDT_DIMENSIONS)])
    g = 1 + 9 * float(np.mean(x[1:]))
    return float(x[0]), g * (1 - math.sqrt(x[0] / g))


def nsga2(seed: int) -> optuna.samplers.NSGAIISampler:
    return optuna.samplers.NSGAIISampler(population_size=16, seed=seed)


def zdt_dasktune(client: Client, folder: str, seed: int, n: int, execution: str):
    url = f"sqlite:///{folder}/zdt1-{seed}-{execution}.db"
    with Search("zdt1", zdt1, url, client=client, space=ZDT_SPACE,
                directions=TWO) as search:  # fmt: skip
        started = time.perf_counter()
        search.run(
            OptunaSampler(nsga2(seed), ZDT_SPACE, directions=TWO), n_trials=n,
            max_in_flight=IN_FLIGHT, progress=False, execution=execution,
        )  # fmt: skip
        wall = time.perf_counter() - started
        front = [t.values for t in search.best]
    return hypervolume_2d(front, ZDT_REFERENCE), wall


def zdt_optuna(seed: int, n: int):
    def objective(trial: optuna.Trial) -> tuple[float, float]:
        return zdt1({k: trial.suggest_float(k, 0, 1) for k in ZDT_SPACE})

    study = optuna.create_study(sampler=nsga2(seed), directions=TWO)
    started = time.perf_counter()
    study.optimize(objective, n_trials=n, n_jobs=IN_FLIGHT)
    front = [t.values for t in study.best_trials]
    return hypervolume_2d(front, ZDT_REFERENCE), time.perf_counter() - started


def tpe(seed: int) -> optuna.samplers.TPESampler:
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def run_dasktune(
    client: Client,
    folder: str,
    name: str,
    seed: int,
    n: int,
    execution: str,
    busy: bool = False,
):
    _, space = PROBLEMS[name]
    url = f"sqlite:///{folder}/{name}-{seed}-{execution}.db"
    slow = Slow(name, busy)
    with Search(name, slow, url, client=client, space=space) as search:
        started = time.perf_counter()  # the run, as Optuna's optimize is timed
        search.run(
            OptunaSampler(tpe(seed), space), n_trials=n, max_in_flight=IN_FLIGHT,
            progress=False, execution=execution,
        )  # fmt: skip
        wall = time.perf_counter() - started
        best = search.best.value
    return best, wall


def run_floor(client: Client, name: str, n: int, busy: bool = False) -> float:
    """Wall time of ``n`` evaluations at fixed parameters, one task each,
    ``IN_FLIGHT`` at once: Dask's floor for a one-task-per-trial driver."""
    _, space = PROBLEMS[name]
    slow = Slow(name, busy)
    params = {k: 0.5 * (d.low + d.high) for k, d in space.items()}
    started = time.perf_counter()
    harvest = as_completed(with_results=True)
    sent = 0
    for _ in range(min(n, IN_FLIGHT)):
        harvest.add(client.submit(slow, params, pure=False))
        sent += 1
    for _ in harvest:
        if sent < n:
            harvest.add(client.submit(slow, params, pure=False))
            sent += 1
    return time.perf_counter() - started


def run_ask_tell_floor(name: str, seed: int, n: int):
    """The same TPE driven by nothing but its own ask/tell and a pool of
    ``IN_FLIGHT`` threads (no Dask, no store, no thread per trial asking):
    the floor of any driver that asks one sampler in this process."""
    _, space = PROBLEMS[name]
    slow = Slow(name)
    dists = {
        k: optuna.distributions.FloatDistribution(d.low, d.high)
        for k, d in space.items()
    }
    study = optuna.create_study(sampler=tpe(seed))
    started = time.perf_counter()
    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        running: dict[Future, optuna.Trial] = {}

        def send() -> None:
            trial = study.ask(dists)
            running[pool.submit(slow, trial.params)] = trial

        for _ in range(min(n, IN_FLIGHT)):
            send()
        sent = len(running)
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                study.tell(running.pop(future), future.result())
                if sent < n:
                    send()
                    sent += 1
    return study.best_value, time.perf_counter() - started


def cpu_timed(run, *args, **kwargs):
    """``run(*args)`` as ``(best, wall, cpu)``: CPU seconds of this process."""
    cpu = time.process_time()
    best, wall = run(*args, **kwargs)
    return best, wall, time.process_time() - cpu


class Objective:
    """The problem as Optuna's objective (module level: pickles)."""

    def __init__(self, name: str, busy: bool = False) -> None:
        self.space = PROBLEMS[name][1]
        self.slow = Slow(name, busy)

    def __call__(self, trial: optuna.Trial) -> float:
        space = self.space
        params = {k: trial.suggest_float(k, d.low, d.high) for k, d in space.items()}
        return self.slow(params)


def run_optuna(name: str, seed: int, n: int, busy: bool = False):
    study = optuna.create_study(sampler=tpe(seed))
    started = time.perf_counter()
    study.optimize(Objective(name, busy), n_trials=n, n_jobs=IN_FLIGHT)
    return study.best_value, time.perf_counter() - started


def _journal(path: str) -> optuna.storages.BaseStorage:
    """Optuna's journal storage on a file (its 4.x name, or 3.x's)."""
    from optuna.storages import JournalStorage

    try:
        from optuna.storages.journal import JournalFileBackend
    except ImportError:  # Optuna 3.x
        from optuna.storages import JournalFileStorage as JournalFileBackend
    return JournalStorage(JournalFileBackend(path))


def _optuna_part(path: str, name: str, seed: int, n: int, busy: bool) -> None:
    """One process of Optuna's multi-process setup: its own TPE (its own
    seed), ``n`` trials on ``IN_FLIGHT // PROCESSES`` threads, on the study in
    the shared journal file."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = _journal(path)
    study = optuna.load_study(study_name=name, storage=storage, sampler=tpe(seed))
    study.optimize(Objective(name, busy), n_trials=n, n_jobs=IN_FLIGHT // PROCESSES)


def run_optuna_processes(
    pool: ProcessPoolExecutor, folder: str, name: str, seed: int, n: int, busy: bool
):
    """Optuna as its documentation runs a CPU-bound objective on one machine:
    ``PROCESSES`` processes sharing a study in a journal file, each running
    ``study.optimize`` with its own sampler on its share of the trials."""
    path = os.path.join(folder, f"{name}-{seed}.journal")
    storage = _journal(path)
    optuna.create_study(study_name=name, storage=storage)
    started = time.perf_counter()
    shares = [n // PROCESSES + (k < n % PROCESSES) for k in range(PROCESSES)]
    parts = [
        pool.submit(_optuna_part, path, name, 1000 * k + seed, share, busy)
        for k, share in enumerate(shares)
    ]
    for part in parts:
        part.result()
    wall = time.perf_counter() - started
    return optuna.load_study(study_name=name, storage=storage).best_value, wall


def busy_main(n: int, seeds: int, folder: str) -> None:
    """TPE on a CPU-bound objective: dasktune fed on 2 worker processes
    against Optuna's threads and Optuna's processes (seeds interleaved)."""
    med = statistics.median
    spawn = multiprocessing.get_context("spawn")  # no fork of a threaded process
    with (
        ProcessPoolExecutor(PROCESSES, mp_context=spawn) as pool,
        LocalCluster(n_workers=PROCESSES, threads_per_worker=IN_FLIGHT // PROCESSES,
                     host="127.0.0.1", dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):  # fmt: skip
        for warm in [pool.submit(burn, 0.01) for _ in range(PROCESSES)]:
            warm.result()  # the pool's processes started and this module imported
        run_floor(client, "branin", IN_FLIGHT)  # warm the cluster up
        print(
            f"CPU-bound objective (50 ms of Python per trial), {n} trials, "
            f"{IN_FLIGHT} in flight; dasktune fed on {PROCESSES} worker processes; "
            f"Optuna n_jobs={IN_FLIGHT} (threads), and {PROCESSES} processes on a "
            "journal file; ratio = their wall / dasktune's (above 1: dasktune "
            "faster)"
        )
        print(
            f"{'problem':>13} | {'best dasktune':>13} {'threads':>9} "
            f"{'processes':>9} | {'wall dasktune':>13} {'threads':>7} "
            f"{'processes':>9} | {'ratio threads':>13} {'processes':>9}"
        )
        for name in PROBLEMS:
            ours, threads, procs = [], [], []
            for s in range(seeds):
                ours.append(run_dasktune(client, folder, name, s, n, "feed", busy=True))
                threads.append(run_optuna(name, s, n, busy=True))
                procs.append(run_optuna_processes(pool, folder, name, s, n, True))
            wall = med(w for _, w in ours)
            wall_threads = med(w for _, w in threads)
            wall_procs = med(w for _, w in procs)
            print(
                f"{name:>13} | {med(b for b, _ in ours):>13.5g} "
                f"{med(b for b, _ in threads):>9.5g} {med(b for b, _ in procs):>9.5g} "
                f"| {wall:>11.2f} s {wall_threads:>5.2f} s {wall_procs:>7.2f} s | "
                f"{wall_threads / wall:>12.2f}x {wall_procs / wall:>8.2f}x",
                flush=True,
            )
    print(f"load average at end: {os.getloadavg()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--zdt-trials", type=int, default=320)
    parser.add_argument(
        "--only", choices=["tpe", "zdt1"], help="run one part of the benchmark"
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--processes",
        action="store_true",
        help="2 worker processes of 8 threads (a laptop's LocalCluster) instead "
        "of one in-process worker of 16 threads",
    )
    which.add_argument(
        "--busy",
        action="store_true",
        help="an objective computing 50 ms in Python instead of sleeping, on 2 "
        "worker processes, against Optuna's n_jobs=16 and Optuna on 2 processes "
        "sharing a journal file",
    )
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("distributed").setLevel(logging.ERROR)
    folder = tempfile.mkdtemp(prefix="dasktune-samplers-")
    print(f"load average at start: {os.getloadavg()}")
    if args.busy:
        busy_main(args.trials, args.seeds, folder)
        return
    med = statistics.median
    if args.processes:
        layout = {"n_workers": 2, "threads_per_worker": IN_FLIGHT // 2}
    else:
        layout = {"n_workers": 1, "threads_per_worker": IN_FLIGHT, "protocol": "tcp"}
    print(f"cluster: {layout}, processes={args.processes}")
    with (
        LocalCluster(**layout, processes=args.processes, host="127.0.0.1",
                     dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):  # fmt: skip
        run_floor(client, "branin", IN_FLIGHT)  # warm the cluster up
        if args.only != "zdt1":
            print(
                f"{'problem':>13} | {'best feed':>9} {'tasks':>9} {'Optuna':>9} | "
                f"{'wall feed':>9} {'tasks':>7} {'Optuna':>7} {'ratio':>6} "
                f"{'floor':>6} {'asks':>6} | {'CPU feed':>8} {'tasks':>6} {'Optuna':>7}"
            )
        for name in PROBLEMS if args.only != "zdt1" else ():
            fed, tasks, theirs, floor, asks = [], [], [], [], []
            for s in range(args.seeds):
                fed.append(cpu_timed(
                    run_dasktune, client, folder, name, s, args.trials, "feed"
                ))  # fmt: skip
                tasks.append(cpu_timed(
                    run_dasktune, client, folder, name, s, args.trials, "tasks"
                ))  # fmt: skip
                theirs.append(cpu_timed(run_optuna, name, s, args.trials))
                floor.append(run_floor(client, name, args.trials))
                asks.append(run_ask_tell_floor(name, s, args.trials)[1])
            wall_fed, wall_theirs = med(r[1] for r in fed), med(r[1] for r in theirs)
            print(
                f"{name:>13} | {med(r[0] for r in fed):>9.5g} "
                f"{med(r[0] for r in tasks):>9.5g} {med(r[0] for r in theirs):>9.5g} | "
                f"{wall_fed:>7.2f} s {med(r[1] for r in tasks):>5.2f} s "
                f"{wall_theirs:>5.2f} s {wall_theirs / wall_fed:>5.2f}x "
                f"{med(floor):>4.2f} s {med(asks):>4.2f} s | "
                f"{med(r[2] for r in fed):>6.2f} s "
                f"{med(r[2] for r in tasks):>4.2f} s {med(r[2] for r in theirs):>5.2f} s",
                flush=True,
            )  # fmt: skip
        if args.only != "tpe":
            ours, theirs = [], []
            for s in range(args.seeds):  # interleaved, as above
                ours.append(zdt_dasktune(client, folder, s, args.zdt_trials, "feed"))
                theirs.append(zdt_optuna(s, args.zdt_trials))
            hv_ours = statistics.median(h for h, _ in ours)
            hv_theirs = statistics.median(h for h, _ in theirs)
            wall_ours = statistics.median(t for _, t in ours)
            wall_theirs = statistics.median(t for _, t in theirs)
            print(
                f"{'zdt1 (NSGA-II)':>13}: hypervolume {hv_ours:.4g} (dasktune) vs "
                f"{hv_theirs:.4g} (Optuna n_jobs=16; larger is better, at most "
                f"{ZDT_REFERENCE[0] * ZDT_REFERENCE[1] - 1 / 3:.4g}); wall "
                f"{wall_ours:.2f} s vs {wall_theirs:.2f} s "
                f"({wall_theirs / wall_ours:.2f}x), {args.zdt_trials} trials",
                flush=True,
            )
    print(
        f"\nmedians over {args.seeds} seeds, {args.trials} trials each, "
        f"{IN_FLIGHT} in flight, {SLEEP * 1000:.0f} ms per evaluation; ratio = "
        "Optuna's wall / dasktune's (> 1: dasktune faster)"
    )
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
