"""dasktune's parallel scipy methods against the plain serial scipy calls.

Run: ``python benchmarks/bench_scipy.py`` (a few minutes: the serial runs sleep).

An objective that sleeps 10 ms (5-D Rastrigin for DE; 2-D Branin, whose
minimum is not at the centre of the box that DIRECT samples first, for the
others), a LocalCluster with 16 threads (2 processes x 8):
- differential_evolution: ``dasktune.minimize`` vs ``scipy.optimize.
  differential_evolution(..., updating="deferred")``, same seed and budget,
  polish included: wall times, ratio, and whether x, fun and nfev are identical;
- dual_annealing and direct: 16 replicas vs one serial run, at about the same
  number of evaluations: evaluations per second, ratio, and the best value of
  each (dasktune's must be no worse than scipy's serial run).

Also, for DE (``python benchmarks/bench_scipy.py de`` runs these alone):
- against ``differential_evolution(..., workers=multiprocessing.Pool(16).map)``,
  what a user already has, same seed and budget;
- a laptop: a CPU-bound 5 ms objective on ``LocalCluster(2 processes x 1
  thread)``, against ``Pool(2).map`` and against raw Dask with each generation
  split into one chunk per worker (``client.map`` + ``gather``), polish off
  (the generations are what the cluster runs);
- the driver's CPU per evaluation (trivial objective; the driver in a process
  of its own, so the in-process scheduler of a ``LocalCluster`` is not counted):
  ``time.process_time`` of the driver process / evaluations.

Targets: DE >= 10x faster with identical results and >= 1.0x ``Pool(16)``;
laptop >= 0.9x ``Pool(2)`` and >= 1.0x raw Dask; driver <= 100 us per
evaluation; dual_annealing and direct >= 8x more evaluations per second, best
value no worse. ``os.getloadavg()`` is printed: the machine may be shared.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import time

import numpy as np
from distributed import Client, LocalCluster
from scipy import optimize

from dasktune import minimize

BOUNDS = [(-5.12, 5.12)] * 5


def slow_rastrigin(x):
    time.sleep(0.01)
    x = np.asarray(x)
    return float(10 * len(x) + np.sum(x**2 - 10 * np.cos(2 * np.pi * x)))


BRANIN_BOUNDS = [(-5.0, 10.0), (0.0, 15.0)]


def slow_branin(x):
    time.sleep(0.01)
    x1, x2 = x
    b, c, t = 5.1 / (4 * np.pi**2), 5 / np.pi, 1 / (8 * np.pi)
    return float((x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * np.cos(x1) + 10)


def sleepy_group(points):
    return [slow_rastrigin(x) for x in points]


def de_floor(client, n_generations: int, population: int) -> float:
    """Dask's floor for DE's generations: one client.map + gather per generation
    of one task per thread, each evaluating its share of the population."""
    threads = sum(client.nthreads().values())
    points = [np.zeros(5)] * population
    groups = [points[i::threads] for i in range(threads)]
    started = time.perf_counter()
    for _ in range(n_generations):
        client.gather(client.map(sleepy_group, groups, pure=False))
    return time.perf_counter() - started


def busy_rastrigin(x):
    """Rastrigin after 5 ms of CPU work (not a sleep: the laptop case)."""
    started = time.process_time()
    while time.process_time() - started < 0.005:
        pass
    x = np.asarray(x)
    return float(10 * len(x) + np.sum(x**2 - 10 * np.cos(2 * np.pi * x)))


def trivial(x):
    return float(np.sum(np.asarray(x) ** 2))


class ChunkPerThread:
    """A map-like for scipy's ``workers=``: raw Dask, each batch split into one
    chunk per worker thread (one per worker on 1-thread workers), one
    ``client.map`` + ``gather``."""

    def __init__(self, client):
        self.client = client
        self.parts = sum(client.nthreads().values())

    def __call__(self, func, iterable):
        points = list(iterable)
        parts = min(self.parts, len(points))
        chunks = [points[i::parts] for i in range(parts)]
        results = self.client.gather(
            self.client.map(_run_chunk, [func] * len(chunks), chunks, pure=False)
        )
        out = [None] * len(points)
        for i, part in enumerate(results):
            out[i::parts] = part
        return out


def _run_chunk(func, chunk):
    return [func(x) for x in chunk]


def _drive(address, queue):
    """In a process of its own: the driver's CPU per evaluation."""
    from distributed import Client

    logging.getLogger("distributed").setLevel(logging.ERROR)
    with Client(address) as client:
        minimize(trivial, BOUNDS, seed=0, maxiter=2, polish=False, client=client)
        started = time.process_time()
        res = minimize(trivial, BOUNDS, seed=1, maxiter=60, polish=False, client=client)
        queue.put((res.nfev, time.process_time() - started))


def driver_cpu(address: str) -> tuple[int, float]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_drive, args=(address, queue))
    process.start()
    nfev, cpu = queue.get()
    process.join()
    return nfev, cpu


def bench_de() -> None:
    print(f"load average {os.getloadavg()} (2 cores, shared with other users)")
    de_options = {"maxiter": 15, "popsize": 15}
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=8, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        minimize(slow_rastrigin, BOUNDS, seed=0, maxiter=1, polish=False, client=client)
        ours, t_ours = timed(
            minimize, slow_rastrigin, BOUNDS, seed=3, client=client, **de_options
        )
        raw, t_raw = timed(optimize.differential_evolution, slow_rastrigin, BOUNDS,
                           rng=3, updating="deferred", workers=ChunkPerThread(client),
                           **de_options)  # fmt: skip
    with multiprocessing.Pool(16) as pool:
        pooled, t_pool = timed(optimize.differential_evolution, slow_rastrigin,
                               BOUNDS, rng=3, updating="deferred", workers=pool.map,
                               **de_options)  # fmt: skip
    same = np.array_equal(ours.x, pooled.x) and ours.fun == pooled.fun
    print("DE, 10 ms objective, 16 threads, polish included:")
    print(
        f"  dasktune {t_ours:.2f} s, scipy workers=Pool(16).map {t_pool:.2f} s: "
        f"{t_pool / t_ours:.2f}x (target >= 1.0x); identical x, fun: {same}"
    )
    print(f"  Dask's floor, scipy with workers= raw Dask (one chunk per thread, "
          f"polish one point per round trip): {t_raw:.2f} s, "
          f"{t_pool / t_raw:.2f}x Pool(16)")  # fmt: skip
    print(f"  load average {os.getloadavg()}")

    laptop = {"maxiter": 20, "popsize": 10, "polish": False}
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        minimize(busy_rastrigin, BOUNDS, seed=0, maxiter=1, polish=False, client=client)
        ours, t_ours = timed(
            minimize, busy_rastrigin, BOUNDS, seed=5, client=client, **laptop
        )
        raw, t_raw = timed(optimize.differential_evolution, busy_rastrigin, BOUNDS,
                           rng=5, updating="deferred", workers=ChunkPerThread(client),
                           **laptop)  # fmt: skip
        nfev, cpu = driver_cpu(cluster.scheduler_address)
    with multiprocessing.Pool(2) as pool:
        pooled, t_pool = timed(optimize.differential_evolution, busy_rastrigin,
                               BOUNDS, rng=5, updating="deferred", workers=pool.map,
                               **laptop)  # fmt: skip
    same = all(np.array_equal(ours.x, r.x) and ours.fun == r.fun for r in (raw, pooled))
    print("laptop: DE, CPU-bound 5 ms objective, 2 processes x 1 thread, no polish:")
    print(f"  dasktune {t_ours:.2f} s; Pool(2).map {t_pool:.2f} s: {t_pool / t_ours:.2f}x "
          f"(target >= 0.9x); raw Dask, one chunk per worker {t_raw:.2f} s: "
          f"{t_raw / t_ours:.2f}x (target >= 1.0x); identical x, fun: {same}")  # fmt: skip
    print(f"driver CPU, DE with a trivial objective: {1e6 * cpu / nfev:.0f} us per "
          f"evaluation ({nfev} evaluations; target <= 100 us)")  # fmt: skip
    print(f"  load average {os.getloadavg()}")


def timed(fn, *args, **kwargs):
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - started


def main() -> None:
    logging.getLogger("distributed").setLevel(logging.ERROR)
    print(f"load average {os.getloadavg()} (2 cores, shared with other users)")
    rows = []
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=8, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        minimize(slow_rastrigin, BOUNDS, seed=0, maxiter=1, polish=False, client=client)
        de_options = {"maxiter": 15, "popsize": 15}
        ours, t_ours = timed(
            minimize, slow_rastrigin, BOUNDS, seed=3, client=client, **de_options
        )
        theirs, t_theirs = timed(optimize.differential_evolution, slow_rastrigin, BOUNDS,
                                 rng=3, updating="deferred", **de_options)  # fmt: skip
        same = (
            np.array_equal(ours.x, theirs.x)
            and ours.fun == theirs.fun
            and ours.nfev == theirs.nfev
        )
        population = de_options["popsize"] * len(BOUNDS)
        generations = ours.nit + 1
        floor = de_floor(client, generations, population)
        serial_generations = generations * population * 0.01
        print("differential_evolution, polish included:")
        print(f"  dasktune {t_ours:.2f} s, scipy serial {t_theirs:.2f} s: "
              f"{t_theirs / t_ours:.1f}x faster (target >= 10x); identical x, fun, "
              f"nfev: {same} (nfev {ours.nfev}, evaluated {ours.nfev_evaluated})")  # fmt: skip
        print(f"  Dask's floor for the {generations} generations alone (one map of "
              f"{population} evaluations per generation, grouped one task per thread): "
              f"{floor:.2f} s, against {serial_generations:.1f} s of serial sleep: "
              f"at most {serial_generations / floor:.1f}x before the polish")  # fmt: skip

        for method, options in (
            ("dual_annealing", {"maxiter": 40}),
            ("direct", {"maxfun": 150}),
        ):
            ours, t_ours = timed(minimize, slow_branin, BRANIN_BOUNDS, method=method,
                                 n_workers=16, seed=1, client=client, **options)  # fmt: skip
            kwargs = {"maxfun": ours.nfev}  # scipy serial at the same budget
            if method == "dual_annealing":
                kwargs["rng"] = 1
            theirs, t_theirs = timed(
                getattr(optimize, method), slow_branin, BRANIN_BOUNDS, **kwargs
            )
            rows.append((method, ours, t_ours, theirs, t_theirs))
    for method, ours, t_ours, theirs, t_theirs in rows:
        rate_ours, rate_theirs = ours.nfev / t_ours, theirs.nfev / t_theirs
        # "no worse" up to 1e-6 relative: the precision to which both converge
        verdict = (
            "no worse"
            if ours.fun <= theirs.fun + 1e-6 * max(1.0, abs(theirs.fun))
            else "WORSE"
        )
        print(f"{method}: 16 replicas vs serial")
        print(f"  evaluations/s: dasktune {rate_ours:.0f} ({ours.nfev} in {t_ours:.1f} s), "
              f"scipy {rate_theirs:.0f} ({theirs.nfev} in {t_theirs:.1f} s): "
              f"{rate_ours / rate_theirs:.1f}x (target >= 8x)")  # fmt: skip
        print(
            f"  best value: dasktune {ours.fun:.9g}, scipy {theirs.fun:.9g}: {verdict}"
        )


if __name__ == "__main__":
    if sys.argv[1:] == ["de"]:
        bench_de()
    else:
        main()
        bench_de()
