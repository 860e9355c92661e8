"""dasktune SPSA against noisyopt's minimizeSPSA: quality and wall time.

Run: ``python benchmarks/bench_spsa.py`` (needs ``pip install -e ".[bench]"``).

(a) quality: the same noisy problems (10-D quadratic, sigma 0.1; 2-D Rosenbrock,
    sigma 0.01; independent noise at every evaluation, no common random numbers,
    which would cancel additive noise exactly), the same evaluation budget and
    perturbation size c, median true objective at the returned x over 10 seeds. noisyopt uses its default gain
    a = 1; dasktune calibrates a (and caps the step at 0.2 on Rosenbrock).
(b) speed: an objective sleeping 20 ms, n_perturbations = 8 (16 evaluations per
    iteration), a LocalCluster with 16 threads, against noisyopt serial at the
    same number of evaluations; and Dask's floor for those batches (one
    client.map + gather of 16 sleeping tasks per iteration, one after another).

Targets: final objective no worse than noisyopt; >= 10x faster wall time.
"""

from __future__ import annotations

import logging
import statistics
import time

import noisyopt
import numpy as np
from distributed import Client, LocalCluster
from scipy.optimize import rosen

from dasktune import SPSA
from dasktune.spsa import SPSAOptimizer

BUDGET = 1000
SEEDS = range(10)
N_CALIBRATION = 8


def noisy_quadratic(x, seed=None):
    rng = np.random.default_rng(seed)
    return float(np.sum((np.asarray(x) - 1.0) ** 2) + 0.1 * rng.normal())


def true_quadratic(x):
    return float(np.sum((np.asarray(x) - 1.0) ** 2))


def noisy_rosen(x, seed=None):
    rng = np.random.default_rng(seed)
    return float(rosen(np.asarray(x)) + 0.01 * rng.normal())


def sleepy(x, seed=None):
    time.sleep(0.02)
    return float(np.sum(np.asarray(x) ** 2))


def drive(opt: SPSAOptimizer, f) -> np.ndarray:
    """Serially: the iterates are those of SPSA() on any cluster (tested)."""
    while not opt.finished:
        trials = []
        while (t := opt.ask()) is not None:
            trials.append(t)
        for t in trials:
            opt.tell(t, f(t.params.x, seed=t.params.seed))
    return opt.x


def quality(name, f, truth, x0, c, extra) -> tuple[float, float]:
    ours, theirs = [], []
    maxiter = (BUDGET - 2 * N_CALIBRATION - 1) // 2
    for seed in SEEDS:
        opt = SPSAOptimizer(
            x0, c=c, maxiter=maxiter, seed=seed, paired=False, tagged=True, **extra
        )
        ours.append(truth(drive(opt, f)))
        np.random.seed(seed)
        with np.errstate(all="ignore"):
            res = noisyopt.minimizeSPSA(
                f, np.array(x0, dtype=float), niter=BUDGET // 2, c=c, paired=False
            )
            theirs.append(truth(res.x))
    return statistics.median(ours), statistics.median(theirs)


def speed(iterations: int = 15) -> tuple[float, float, float, int]:
    x0 = np.ones(6)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=8, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        SPSA(sleepy, x0, a_par=0.1, maxiter=2, n_perturbations=8, client=client,
             print_iters=None)  # fmt: skip
        started = time.perf_counter()
        res = SPSA(sleepy, x0, a_par=0.1, maxiter=iterations, n_perturbations=8,
                   client=client, print_iters=None, seed=0)  # fmt: skip
        ours = time.perf_counter() - started
        points = [x0 + 0.01 * i for i in range(16)]
        started = time.perf_counter()
        for _ in range(iterations):
            client.gather(client.map(sleepy, points, pure=False))
        floor = (time.perf_counter() - started) / iterations * (res.nfev / 16)
    started = time.perf_counter()
    np.random.seed(0)
    noisyopt.minimizeSPSA(sleepy, x0.copy(), niter=res.nfev // 2, paired=True)
    serial = time.perf_counter() - started
    return ours, serial, floor, res.nfev


def main() -> None:
    logging.getLogger("distributed").setLevel(logging.ERROR)
    print(
        f"(a) median true objective over {len(SEEDS)} seeds, {BUDGET} evaluations each"
    )
    print(f"    {'problem':<22} {'dasktune':>12} {'noisyopt':>12}")
    for name, f, truth, x0, c, extra in (
        ("10-D noisy quadratic", noisy_quadratic, true_quadratic, np.zeros(10), 0.3, {}),
        ("2-D noisy Rosenbrock", noisy_rosen, rosen, [0.0, 0.0], 0.05,
         {"max_step": 0.2, "A": 10}),
    ):  # fmt: skip
        ours, theirs = quality(name, f, truth, x0, c, extra)
        verdict = "no worse" if ours <= theirs else "WORSE"
        print(f"    {name:<22} {ours:12.4g} {theirs:12.4g}  {verdict}")
    ours, serial, floor, nfev = speed()
    print(f"(b) {nfev} evaluations of a 20 ms objective, 16 per iteration, 16 threads")
    print(f"    dasktune SPSA {ours:.2f} s, noisyopt serial {serial:.2f} s: "
          f"{serial / ours:.1f}x faster (target >= 10x)")  # fmt: skip
    print(f"    Dask's floor for these batches: {floor:.2f} s "
          f"({serial / floor:.1f}x); dasktune is {ours / floor:.2f}x the floor")  # fmt: skip


if __name__ == "__main__":
    main()
