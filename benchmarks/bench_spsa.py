"""dasktune SPSA against noisyopt's minimizeSPSA: quality and wall time.

Run: ``python benchmarks/bench_spsa.py`` (needs ``pip install -e ".[bench]"``);
``python benchmarks/bench_spsa.py quality`` runs part (a) only (serial, no Dask),
``python benchmarks/bench_spsa.py speed`` part (b) only.

(a) quality: noisy problems with independent noise at every evaluation (no
    common random numbers, which would cancel additive noise exactly), the same
    evaluation budget and perturbation size c for every column, median over
    ``SEEDS`` of the true objective at the returned x:
    - 5-D and 10-D quadratics sum(x**2) from x0 = [2]*d, noise sigma 0.01,
      c = 0.1, 325 evaluations (150 iterations of dasktune's default);
    - the 2-D Rosenbrock from (-1.2, 1) and from (0, 0), noise sigma 0.01,
      c = 0.05, 1000 evaluations, no max_step;
    - a Gaussian likelihood: (mu, log sigma) of 1000 draws of N(1.5, 0.7**2),
      each evaluation the mean negative log-likelihood of 50 of them drawn at
      random; the true objective is the full-data excess over its minimum;
      c = 0.1, 1000 evaluations.
    Columns: dasktune's default gains (a calibrated by a line search, Kesten's
    rule, a trust region); dasktune before them (``adaptive=False``: Spall's
    calibration and schedule, as before issue 10); noisyopt
    with a hand-tuned a = 0.5; noisyopt's default a = 1. The ratio printed is
    dasktune's default over its target: noisyopt hand-tuned on the quadratics
    (target <= 2), dasktune before on the others (target <= 1).
(b) speed: an objective sleeping 20 ms, n_perturbations = 8 (16 evaluations per
    iteration), a LocalCluster with 16 threads, against noisyopt serial at the
    same number of evaluations; and Dask's floor for those batches (one
    client.map + gather of 16 sleeping tasks per iteration, one after another).

Targets: the ratios in (a); >= 10x faster wall time in (b).
"""

from __future__ import annotations

import logging
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import noisyopt
import numpy as np
from distributed import Client, LocalCluster
from scipy.optimize import rosen

from dasktune import SPSA
from dasktune.optim.spsa import SPSAOptimizer

SEEDS = range(20)
N_CALIBRATION = 8  # SPSAOptimizer's default
Noisy = Callable[[np.ndarray, np.random.Generator], float]


@dataclass
class Problem:
    name: str
    noisy: Noisy
    truth: Callable[[np.ndarray], float]
    x0: list[float]
    c: float
    budget: int
    target: str  # the column dasktune's default is measured against
    extra: dict[str, Any] = field(default_factory=dict)


def quadratic(x: np.ndarray, rng: np.random.Generator) -> float:
    return float(np.sum(x**2) + 0.01 * rng.normal())


def sphere(x: np.ndarray) -> float:
    return float(np.sum(np.asarray(x) ** 2))


def noisy_rosen(x: np.ndarray, rng: np.random.Generator) -> float:
    return float(rosen(x) + 0.01 * rng.normal())


_DATA = np.random.default_rng(2024).normal(1.5, 0.7, size=1000)


def _nll(theta: np.ndarray, data: np.ndarray) -> float:
    mu, log_sigma = theta
    z = (data - mu) * np.exp(-log_sigma)
    return float(np.mean(0.5 * z**2) + log_sigma + 0.5 * np.log(2 * np.pi))


_BEST_NLL = _nll(np.array([_DATA.mean(), np.log(_DATA.std())]), _DATA)


def subsampled_nll(theta: np.ndarray, rng: np.random.Generator) -> float:
    return _nll(theta, rng.choice(_DATA, size=50, replace=False))


def excess_nll(theta: np.ndarray) -> float:
    with np.errstate(all="ignore"):
        return _nll(np.asarray(theta), _DATA) - _BEST_NLL


PROBLEMS = [
    Problem("5-D noisy quadratic", quadratic, sphere, [2.0] * 5, 0.1, 325, "hand"),
    Problem("10-D noisy quadratic", quadratic, sphere, [2.0] * 10, 0.1, 325, "hand"),
    Problem("Rosenbrock (-1.2, 1)", noisy_rosen, rosen, [-1.2, 1.0], 0.05, 1000,
            "before"),
    Problem("Rosenbrock (0, 0)", noisy_rosen, rosen, [0.0, 0.0], 0.05, 1000,
            "before"),
    Problem("Gaussian likelihood", subsampled_nll, excess_nll, [0.0, 0.0], 0.1, 1000,
            "before"),
]  # fmt: skip


def drive(opt: SPSAOptimizer, f: Callable[[np.ndarray], float]) -> np.ndarray:
    """Serially: the iterates are those of SPSA() on any cluster (tested)."""
    while not opt.finished:
        trials = []
        while (t := opt.ask()) is not None:
            trials.append(t)
        for t in trials:
            opt.tell(t, f(t.params.x))
    return opt.x


def _ours(p: Problem, seed: int, adaptive: bool) -> float:
    rng = np.random.default_rng([seed, 1])
    calibration = 2 * N_CALIBRATION + (len(SPSAOptimizer.probe_factors) * adaptive)
    opt = SPSAOptimizer(
        p.x0, c=p.c, maxiter=(p.budget - calibration - 1) // 2, seed=seed, tagged=True,
        adaptive=adaptive, **p.extra,
    )  # fmt: skip
    x = drive(opt, lambda x: p.noisy(x, rng))
    assert opt.nfev <= p.budget, (opt.nfev, p.budget)
    return p.truth(x)


def _theirs(p: Problem, seed: int, a: float) -> float:
    rng = np.random.default_rng([seed, 2])
    np.random.seed(seed)  # noisyopt's perturbations
    with np.errstate(all="ignore"):
        res = noisyopt.minimizeSPSA(
            lambda x: p.noisy(x, rng), np.array(p.x0, dtype=float),
            niter=p.budget // 2, a=a, c=p.c, paired=False,
        )  # fmt: skip
    return p.truth(res.x)


def quality() -> None:
    print(f"(a) median true objective over {len(SEEDS)} seeds, equal evaluations")
    print(f"    {'problem':<22} {'evals':>5} {'default':>10} {'before':>10} "
          f"{'noisyopt':>10} {'noisyopt':>10}  ratio")  # fmt: skip
    print(f"    {'':<22} {'':>5} {'dasktune':>10} {'dasktune':>10} "
          f"{'a=0.5':>10} {'a=1':>10}")  # fmt: skip
    for p in PROBLEMS:
        row = {
            "default": [_ours(p, s, adaptive=True) for s in SEEDS],
            "before": [_ours(p, s, adaptive=False) for s in SEEDS],
            "hand": [_theirs(p, s, a=0.5) for s in SEEDS],
            "noisyopt": [_theirs(p, s, a=1.0) for s in SEEDS],
        }
        med = {k: statistics.median(v) for k, v in row.items()}
        ratio = med["default"] / med[p.target]
        goal = 2.0 if p.target == "hand" else 1.0
        verdict = "ok" if ratio <= goal else "MISSED"
        print(f"    {p.name:<22} {p.budget:>5} {med['default']:10.3g} "
              f"{med['before']:10.3g} {med['hand']:10.3g} {med['noisyopt']:10.3g}"
              f"  {ratio:.2f}x {p.target} (<= {goal:g}: {verdict})")  # fmt: skip


def sleepy(x, seed=None):
    time.sleep(0.02)
    return float(np.sum(np.asarray(x) ** 2))


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
    if sys.argv[1:] != ["speed"]:
        quality()
    if sys.argv[1:] == ["quality"]:
        return
    print(f"load average {os.getloadavg()} (2 cores, shared with other users)")
    ours, serial, floor, nfev = speed()
    print(f"(b) {nfev} evaluations of a 20 ms objective, 16 per iteration, 16 threads")
    print(f"    dasktune SPSA {ours:.2f} s, noisyopt serial {serial:.2f} s: "
          f"{serial / ours:.1f}x faster (target >= 10x)")  # fmt: skip
    print(f"    Dask's floor for these batches: {floor:.2f} s "
          f"({serial / floor:.1f}x); dasktune is {ours / floor:.2f}x the floor")  # fmt: skip
    print(f"    load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
