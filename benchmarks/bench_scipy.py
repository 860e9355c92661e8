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

Targets: DE >= 10x faster with identical results; dual_annealing and direct
>= 8x more evaluations per second, best value no worse.
"""

from __future__ import annotations

import logging
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


def timed(fn, *args, **kwargs):
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - started


def main() -> None:
    logging.getLogger("distributed").setLevel(logging.ERROR)
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
    main()
