"""Cold calls with no client: dasktune against the library a user would call.

Each measurement runs in a FRESH interpreter (a subprocess of this script),
imports done before the clock, no client given and none current: what a new
user's first call costs. Printed as ratios of speed (peer time / dasktune
time; 1.0 is as fast as the peer, higher is faster), each against its peer
measured in the same run:

- DE, 5-D Rosenbrock, ``maxiter=100``, vs scipy's serial
  ``differential_evolution`` (target >= 0.5);
- SPSA, 2-D quadratic, 300 iterations, vs noisyopt's ``minimizeSPSA``
  (target >= 0.5);
- a sweep of objective costs (1 us, 100 us, 1 ms, 10 ms; a busy loop), DE 2-D,
  popsize 5, no polish, vs scipy serial and scipy with ``workers=Pool(2).map``
  (the Pool started inside the timing), and where dasktune ran;
- DE, 2-D, popsize 5, 80 generations of a 20 ms CPU-bound objective (~16 s of
  serial work) vs ``workers=Pool(2).map``, the Pool started inside the timing
  (target >= 0.9x; ``bench_adaptive.py long`` runs this row alone).

And warm (``python benchmarks/bench_adaptive.py warm``, one interpreter, a
2-process ``LocalCluster`` and its client current and a ``Pool(2)`` started
before any clock): the same DE at costs of 1 us .. 100 ms, dasktune's
``execution="auto"`` against the best of scipy serial, scipy with
``workers=Pool(2).map`` and dasktune's cluster path (``execution="tasks"``,
what it did before it chose), target >= 0.9x at every cost; then two short
DE runs: ~1 s of CPU-bound 5 ms calls against ``Pool(2).map`` (target >=
0.9x) and ~0.3 s of 10 ms sleeps on 16 threads against ``Pool(16).map``
(target >= 1.0x). ``warm --costs 0.01 --short cpu`` runs only those rows
(``--costs ''``: no sweep row; ``--short ''``: no short run); ``--repeats 3``
takes each sweep row's sides as the best of 3 interleaved runs.

Run: ``python benchmarks/bench_adaptive.py`` (a few minutes).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np

COSTS = (1e-6, 1e-4, 1e-3, 1e-2)
WARM_COSTS = (1e-6, 1e-4, 1e-3, 1e-2, 1e-1)
SHORTS = ("cpu", "sleep")


def busy(x, cost=0.0):
    """A CPU-bound objective lasting ``cost`` seconds: a sphere, then a spin."""
    end = time.perf_counter() + cost
    while time.perf_counter() < end:
        pass
    return float(np.sum(np.asarray(x) ** 2))


def quadratic(x):
    return float(np.sum((np.asarray(x) - 1.0) ** 2))


#: the issue's long cold run: DE 2-D, popsize 5, 80 generations of a 20 ms
#: CPU-bound objective (810 evaluations, ~16 s of serial work)
LONG = {"seed": 0, "maxiter": 80, "popsize": 5, "polish": False, "tol": 0.0}
LONG_COST = 0.02


def _sweep_maxiter(cost: float) -> int:
    """Generations of 10 evaluations: about 1 s of serial work, 20 to 200."""
    return int(min(200, max(20, 1.0 / (max(cost, 1e-6) * 10))))


def _case(name: str, cost: float) -> tuple[float, str]:
    """One timed call, in this (fresh) interpreter: seconds and where it ran."""
    from functools import partial
    from multiprocessing import Pool

    import noisyopt
    from scipy.optimize import differential_evolution, rosen

    from dasktune import SPSA, minimize

    fun = partial(busy, cost=cost)
    sweep = {
        "seed": 0, "maxiter": _sweep_maxiter(cost), "popsize": 5, "polish": False,
        "tol": 0.0,
    }  # fmt: skip
    where = ""
    started = time.perf_counter()
    if name == "de-scipy":
        differential_evolution(rosen, [(-5, 5)] * 5, rng=1, maxiter=100)
    elif name == "de-scipy-deferred":  # the same iterates as dasktune's
        differential_evolution(
            rosen, [(-5, 5)] * 5, rng=1, maxiter=100, updating="deferred"
        )
    elif name == "de-dasktune":
        res = minimize(rosen, [(-5, 5)] * 5, seed=1, maxiter=100)
        where = res.execution
    elif name == "spsa-noisyopt":
        noisyopt.minimizeSPSA(
            quadratic, [0.0, 0.0], niter=300, paired=False, c=0.01, disp=False
        )
    elif name == "spsa-dasktune":
        # ftol=0: all 300 iterations, as noisyopt runs (no convergence test)
        res = SPSA(
            quadratic, [0.0, 0.0], maxiter=300, seed=1, print_iters=None, ftol=0.0
        )
        assert res.nit == 300, res.message
        where = res.execution
    elif name == "sweep-serial":
        differential_evolution(fun, [(-1, 1)] * 2, rng=0, **_scipy(sweep))
    elif name == "sweep-pool":
        with Pool(2) as pool:
            differential_evolution(
                fun, [(-1, 1)] * 2, rng=0, workers=pool.map, updating="deferred",
                **_scipy(sweep),
            )  # fmt: skip
    elif name == "long-pool":  # the row: ~16 s of serial work
        with Pool(2) as pool:
            differential_evolution(
                fun, [(-1, 1)] * 2, rng=0, workers=pool.map, updating="deferred",
                **_scipy(LONG),
            )  # fmt: skip
    elif name == "long-dasktune":
        res = minimize(fun, [(-1, 1)] * 2, **LONG)
        where = res.execution
    elif name == "sweep-dasktune":
        res = minimize(fun, [(-1, 1)] * 2, **sweep)
        where = res.execution
    else:
        raise ValueError(name)
    return time.perf_counter() - started, where


def _scipy(sweep: dict) -> dict:
    return {k: v for k, v in sweep.items() if k != "seed"}


def fresh(name: str, cost: float = 0.0) -> tuple[float, str]:
    """``_case(name, cost)`` in a new interpreter."""
    done = subprocess.run(
        [sys.executable, __file__, "--case", name, repr(cost)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        msg = f"{name} (cost {cost}) failed:\n{done.stderr}"
        raise RuntimeError(msg)
    seconds, where = json.loads(done.stdout.strip().splitlines()[-1])
    return seconds, where


def best_of(name: str, repeats: int = 3) -> tuple[float, str]:
    """The fastest of ``repeats`` fresh interpreters' ``name`` (the machine
    is shared: the least disturbed run of each side is compared)."""
    return min(fresh(name) for _ in range(repeats))


def main() -> None:
    print("cold calls, each in a fresh interpreter (speed ratio = peer s / dasktune s)")
    print("DE and SPSA: the best of 3 fresh interpreters each")
    peer, _ = best_of("de-scipy")
    same, _ = best_of("de-scipy-deferred")
    ours, where = best_of("de-dasktune")
    print(
        f"DE 5-D Rosenbrock maxiter=100: scipy serial {peer:.2f} s, dasktune "
        f"{ours:.2f} s ({where}): {peer / ours:.2f}x (target >= 0.5x); against "
        f"scipy serial updating='deferred' (dasktune's iterates) {same:.2f} s: "
        f"{same / ours:.2f}x"
    )
    peer, _ = best_of("spsa-noisyopt")
    ours, where = best_of("spsa-dasktune")
    print(
        f"SPSA 2-D quadratic 300 iterations: noisyopt {peer:.3f} s, dasktune "
        f"{ours:.3f} s ({where}): {peer / ours:.2f}x (target >= 0.5x)"
    )
    long_run()
    print()
    print("cost sweep: DE 2-D popsize 5, no polish (evaluations: 10 per generation)")
    print(
        f"{'cost':>8} {'evals':>6} {'serial s':>9} {'Pool(2) s':>10} "
        f"{'dasktune s':>11} {'where':>8} {'vs serial':>10} {'vs Pool':>8} "
        f"{'vs best':>8}"
    )
    for cost in COSTS:
        serial, _ = fresh("sweep-serial", cost)
        pool, _ = fresh("sweep-pool", cost)
        ours, where = fresh("sweep-dasktune", cost)
        evals = 10 * (_sweep_maxiter(cost) + 1)
        print(
            f"{cost * 1e3:>6.3f}ms {evals:>6} {serial:>9.2f} {pool:>10.2f} "
            f"{ours:>11.2f} {where:>8} {serial / ours:>9.2f}x {pool / ours:>7.2f}x "
            f"{min(serial, pool) / ours:>7.2f}x"
        )


def long_run() -> None:
    """The issue's cold DE of a 20 ms CPU-bound objective against scipy with
    ``workers=Pool(2).map``, the Pool started inside the timing."""
    pool, _ = fresh("long-pool", LONG_COST)
    ours, where = fresh("long-dasktune", LONG_COST)
    print(
        f"DE 2-D popsize 5, 80 generations of a 20 ms CPU-bound objective: "
        f"scipy workers=Pool(2).map {pool:.2f} s (Pool started inside), "
        f"dasktune {ours:.2f} s ({where}): {pool / ours:.2f}x (target >= 0.9x)"
    )


def _warm_maxiter(cost: float) -> int:
    """Generations of 10 evaluations: about 1 s of serial work, 5 to 200."""
    return int(min(200, max(5, 1.0 / (max(cost, 1e-6) * 10))))


def warm(
    costs: tuple[float, ...] = WARM_COSTS,
    shorts: tuple[str, ...] = SHORTS,
    repeats: int = 1,
) -> None:
    """The cost sweep on a warm cluster (see the module notes), at ``costs``,
    each side the best of ``repeats`` interleaved runs, then the short runs
    named in ``shorts`` ("cpu", "sleep")."""
    import os
    from functools import partial
    from multiprocessing import Pool

    from distributed import Client, LocalCluster
    from scipy.optimize import differential_evolution

    from dasktune import minimize

    print(f"warm sweep: DE 2-D popsize 5, no polish; load {os.getloadavg()[0]:.1f}")
    print(
        f"{'cost':>8} {'evals':>6} {'serial s':>9} {'Pool(2) s':>10} "
        f"{'tasks s':>8} {'auto s':>7} {'where':>8} {'vs best':>8}"
    )
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster),
        Pool(2) as pool,
    ):  # fmt: skip
        pool.map(abs, range(4))  # its workers up
        for cost in costs:
            fun = partial(busy, cost=cost)
            kw = {"maxiter": _warm_maxiter(cost), "popsize": 5, "polish": False,
                  "tol": 0.0}  # fmt: skip
            bounds = [(-1, 1)] * 2
            times: dict[str, float] = {}
            for _ in range(repeats):  # interleaved; the best of each side
                started = time.perf_counter()
                differential_evolution(fun, bounds, rng=0, updating="deferred", **kw)
                _best(times, "serial", started)
                started = time.perf_counter()
                differential_evolution(
                    fun, bounds, rng=0, workers=pool.map, updating="deferred", **kw
                )
                _best(times, "pool", started)
                started = time.perf_counter()
                minimize(fun, bounds, seed=0, execution="tasks", **kw)
                _best(times, "tasks", started)
                started = time.perf_counter()
                res = minimize(fun, bounds, seed=0, **kw)
                _best(times, "auto", started)
            best = min(times["serial"], times["pool"], times["tasks"])
            print(
                f"{cost * 1e3:>6.3f}ms {res.nfev:>6} {times['serial']:>9.3f} "
                f"{times['pool']:>10.3f} {times['tasks']:>8.3f} {times['auto']:>7.3f} "
                f"{_where(res):>8} {best / times['auto']:>7.2f}x"
            )
        # a short run on the same warm cluster: ~1 s of CPU-bound 5 ms calls
        if "cpu" in shorts:
            short_run("CPU-bound 5 ms, 2 processes x 1 thread", pool, busy_5ms, 10, 9)
    if "sleep" not in shorts:
        print(f"load {os.getloadavg()[0]:.1f}")
        return
    # and ~0.3 s of 10 ms sleeps on 16 threads (2 processes x 8)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=8, host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster),
        Pool(16) as pool,
    ):  # fmt: skip
        pool.map(abs, range(32))
        short_run("10 ms sleeps, 16 threads", pool, sleep_10ms, 8, 1, peer="Pool(16)")
    print(f"load {os.getloadavg()[0]:.1f}")


def busy_5ms(x):
    return busy(x, 5e-3)


def sleep_10ms(x):
    time.sleep(0.01)  # the objective's cost
    return float(np.sum(np.asarray(x) ** 2))


def short_run(
    what: str, pool, fun, popsize: int, maxiter: int, peer: str = "Pool(2)"
) -> None:
    """One short DE run on the warm cluster against scipy with the warm
    ``pool``'s map: the best of 3 each."""
    from scipy.optimize import differential_evolution

    from dasktune import minimize

    kw = {"popsize": popsize, "maxiter": maxiter, "polish": False, "tol": 0.0}
    bounds = [(-1, 1)] * 2
    ours, theirs, nfev = [], [], 0
    for _ in range(3):
        started = time.perf_counter()
        differential_evolution(
            fun, bounds, rng=0, workers=pool.map, updating="deferred", **kw
        )
        theirs.append(time.perf_counter() - started)
        started = time.perf_counter()
        res = minimize(fun, bounds, seed=0, **kw)
        ours.append(time.perf_counter() - started)
        nfev = res.nfev
    print(
        f"short run, {what}, {nfev} evaluations: {peer}.map {min(theirs):.3f} s, "
        f"dasktune {min(ours):.3f} s ({_where(res)}): "
        f"{min(theirs) / min(ours):.2f}x"
    )


def _best(times: dict[str, float], side: str, started: float) -> None:
    """Keep the fastest time of ``side``, started at ``started``."""
    seconds = time.perf_counter() - started
    times[side] = min(times.get(side, seconds), seconds)


def _where(res) -> str:
    """Where a result's evaluations ran: "local", "cluster", "fed" (on the
    cluster, fed to long-lived tasks)."""
    if res.execution == "cluster" and "trials fed" in res.execution_reason:
        return "fed"
    return res.execution


def _warm_args(argv: list[str]):
    """``warm``'s rows: ``--costs 0.01,0.1`` (seconds; the sweep's rows,
    none with ``--costs ''``) and ``--short cpu,sleep`` (the short runs)."""
    import argparse

    def floats(text: str) -> tuple[float, ...]:
        return tuple(float(v) for v in text.split(",") if v)

    def names(text: str) -> tuple[str, ...]:
        return tuple(v for v in text.split(",") if v)

    parser = argparse.ArgumentParser(prog="bench_adaptive.py warm")
    parser.add_argument("--costs", type=floats, default=WARM_COSTS)
    parser.add_argument("--short", type=names, default=SHORTS)
    parser.add_argument("--repeats", type=int, default=1)
    return parser.parse_args(argv)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--case":
        print(json.dumps(_case(sys.argv[2], float(sys.argv[3]))))
    elif sys.argv[1:2] == ["long"]:
        long_run()
    elif sys.argv[1:2] == ["warm"]:
        args = _warm_args(sys.argv[2:])
        warm(args.costs, args.short, args.repeats)
    else:
        main()
