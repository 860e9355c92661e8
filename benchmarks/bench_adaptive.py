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
  (the Pool started inside the timing), and where dasktune ran.

Run: ``python benchmarks/bench_adaptive.py`` (a few minutes).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np

COSTS = (1e-6, 1e-4, 1e-3, 1e-2)


def busy(x, cost=0.0):
    """A CPU-bound objective lasting ``cost`` seconds: a sphere, then a spin."""
    end = time.perf_counter() + cost
    while time.perf_counter() < end:
        pass
    return float(np.sum(np.asarray(x) ** 2))


def quadratic(x):
    return float(np.sum((np.asarray(x) - 1.0) ** 2))


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


def main() -> None:
    print("cold calls, each in a fresh interpreter (speed ratio = peer s / dasktune s)")
    peer, _ = fresh("de-scipy")
    same, _ = fresh("de-scipy-deferred")
    ours, where = fresh("de-dasktune")
    print(
        f"DE 5-D Rosenbrock maxiter=100: scipy serial {peer:.2f} s, dasktune "
        f"{ours:.2f} s ({where}): {peer / ours:.2f}x (target >= 0.5x); against "
        f"scipy serial updating='deferred' (dasktune's iterates) {same:.2f} s: "
        f"{same / ours:.2f}x"
    )
    peer, _ = fresh("spsa-noisyopt")
    ours, where = fresh("spsa-dasktune")
    print(
        f"SPSA 2-D quadratic 300 iterations: noisyopt {peer:.3f} s, dasktune "
        f"{ours:.3f} s ({where}): {peer / ours:.2f}x (target >= 0.5x)"
    )
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


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--case":
        print(json.dumps(_case(sys.argv[2], float(sys.argv[3]))))
    else:
        main()
