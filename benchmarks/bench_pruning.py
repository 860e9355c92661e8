"""dasktune's pruners on synthetic learning curves, beside Optuna's.

Run: ``python benchmarks/bench_pruning.py [SEED ...]`` (``pip install -e
".[bench]"``; a few seconds per seed of the curves).

200 configurations; configuration ``i`` has the loss curve
``a_i + (1 - a_i) * exp(-r_i * t) + noise`` over ``t = 1 .. 81`` epochs, with
the floor ``a_i`` uniform in [0.05, 0.5], the rate ``r_i`` log-uniform in
[0.02, 0.5] and Gaussian noise of 0.005 per epoch: fast starters are not always
the best finishers. The pruners are driven serially, without Dask (the
decisions, not the transport, are measured here):

- no pruning: every configuration runs its 81 epochs;
- dasktune's ``SuccessiveHalvingPruner`` (ASHA, eta = 3, first rung after 1, 3
  or 9 epochs) and
  ``HyperbandPruner`` (1 .. 81, eta = 3, seeded), with trials run one at a time
  and with 16 running at once (their epochs interleaved, as 16 workers would);
- dasktune's ``MedianPruner`` (5 startup trials, 5 warm-up epochs);
- Optuna's ``SuccessiveHalvingPruner`` and ``HyperbandPruner`` with the same
  settings on an in-memory study, trials one at a time.

Then the wall-time part (``--wall``, or by default after the serial part): the
same curves, each epoch a ``EPOCH_SECONDS`` sleep, through ``Search.run`` on a
16-thread in-process ``LocalCluster`` with ASHA (eta 3, from 1) and without
pruning, beside Optuna's ``SuccessiveHalvingPruner`` with ``n_jobs=16`` on an
in-memory study: best, epochs actually run and seconds side by side.

The best is the lowest final loss of a configuration run to the end. Target:
within 5% of the no-pruning best with at least 3x fewer epochs. With equal
epoch times trials reach every rung in the order of their numbers in both
schedules, so ASHA decides the same one at a time and 16 at once; the median
rule, which compares with completed trials, does not.
"""

from __future__ import annotations

import math
import threading
import time

import numpy as np

from dasktune.optim.pruners import (
    HyperbandPruner,
    MedianPruner,
    Pruner,
    SuccessiveHalvingPruner,
)

N_CONFIGS = 200
MAX_EPOCHS = 81
SEED = 0
EPOCH_SECONDS = 0.005
THREADS = 16


def curves(seed: int = SEED) -> np.ndarray:
    """The (configurations, epochs) noisy losses, epoch ``t`` at column ``t - 1``."""
    rng = np.random.default_rng(seed)
    floor = rng.uniform(0.05, 0.5, N_CONFIGS)
    rate = np.exp(rng.uniform(math.log(0.02), math.log(0.5), N_CONFIGS))
    t = np.arange(1, MAX_EPOCHS + 1)
    clean = floor[:, None] + (1 - floor[:, None]) * np.exp(-rate[:, None] * t)
    return clean + 0.005 * rng.standard_normal(clean.shape)


def run_dasktune(pruner: Pruner | None, losses: np.ndarray, parallel: int):
    """Run every configuration, ``parallel`` at a time, epochs interleaved."""
    epochs = 0
    finals: list[float] = []
    upcoming = iter(range(N_CONFIGS))
    running: dict[int, int] = {}  # number -> epochs done
    while True:
        while len(running) < parallel:
            number = next(upcoming, None)
            if number is None:
                break
            running[number] = 0
        if not running:
            return min(finals), epochs
        for number in list(running):
            running[number] += 1
            epoch = running[number]
            epochs += 1
            value = float(losses[number, epoch - 1])
            if pruner is not None and pruner.report(number, epoch, value):
                del running[number]
            elif epoch == MAX_EPOCHS:
                finals.append(value)
                if pruner is not None:
                    pruner.complete(number, value)
                del running[number]


def run_optuna(make_pruner, losses: np.ndarray):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    epochs = 0
    finals: list[float] = []

    def objective(trial):
        nonlocal epochs
        value = math.nan
        for epoch in range(1, MAX_EPOCHS + 1):
            epochs += 1
            value = float(losses[trial.number, epoch - 1])
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned
        finals.append(value)
        return value

    study = optuna.create_study(pruner=make_pruner())
    study.optimize(objective, n_trials=N_CONFIGS)
    return min(finals), epochs


def main(seed: int = SEED) -> None:
    losses = curves(seed)
    rows = []

    def add(name, run):
        started = time.perf_counter()
        best, epochs = run()
        rows.append((name, best, epochs, time.perf_counter() - started))

    add("no pruning", lambda: run_dasktune(None, losses, 1))
    for parallel in (1, 16):
        for grace in (1, 3, 9):
            add(
                f"dasktune ASHA (eta 3, from {grace}), {parallel} at once",
                lambda p=parallel, g=grace: run_dasktune(
                    SuccessiveHalvingPruner(g, 3, max_resource=MAX_EPOCHS), losses, p
                ),
            )
        add(
            f"dasktune Hyperband (1..81, eta 3), {parallel} at once",
            lambda p=parallel: run_dasktune(
                HyperbandPruner(1, MAX_EPOCHS, 3, seed=SEED), losses, p
            ),
        )
        add(
            f"dasktune median rule, {parallel} at once",
            lambda p=parallel: run_dasktune(MedianPruner(5, 5), losses, p),
        )
    try:
        import optuna
    except ImportError:
        print("optuna not installed: pip install -e '.[bench]' to compare")
    else:
        add(
            "Optuna SuccessiveHalvingPruner, 1 at once",
            lambda: run_optuna(
                lambda: optuna.pruners.SuccessiveHalvingPruner(
                    min_resource=1, reduction_factor=3
                ),
                losses,
            ),
        )
        add(
            "Optuna HyperbandPruner, 1 at once",
            lambda: run_optuna(
                lambda: optuna.pruners.HyperbandPruner(
                    min_resource=1, max_resource=MAX_EPOCHS, reduction_factor=3
                ),
                losses,
            ),
        )
    base_best, base_epochs = rows[0][1], rows[0][2]
    print(f"{N_CONFIGS} configurations x {MAX_EPOCHS} epochs, curves of seed {seed}")
    print(
        f"{'run':44s} {'best':>8s} {'vs none':>8s} {'epochs':>7s} "
        f"{'fewer':>7s} {'target':>7s} {'seconds':>8s}"
    )
    for name, best, epochs, seconds in rows:
        ratio = best / base_best
        fewer = base_epochs / epochs
        met = "met" if ratio <= 1.05 and fewer >= 3 else "-"
        print(
            f"{name:44s} {best:8.4f} {ratio:7.3f}x {epochs:7d} {fewer:6.1f}x "
            f"{met:>7s} {seconds:8.3f}"
        )


class _Epochs:
    """Epochs actually run, counted across the threads that run them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0

    def add(self) -> None:
        with self.lock:
            self.count += 1


def _train(losses: np.ndarray):
    import dasktune

    def objective(params, trial):
        value = math.nan
        for epoch in range(1, MAX_EPOCHS + 1):
            time.sleep(EPOCH_SECONDS)
            value = float(losses[params["i"], epoch - 1])
            trial.report(epoch, value)
            if trial.should_prune():
                raise dasktune.TrialPruned
        return value

    return objective


def wall(seed: int = SEED) -> None:
    """Search.run with ASHA and without pruning, and Optuna with n_jobs=16."""
    from distributed import Client, LocalCluster

    from dasktune import Search

    losses = curves(seed)
    grid = [{"i": i} for i in range(N_CONFIGS)]
    rows = []
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=THREADS, processes=False,
            host="127.0.0.1", protocol="tcp", dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):  # fmt: skip
        for name, pruner in (
            ("dasktune Search, no pruning", None),
            (
                "dasktune Search, ASHA (eta 3, from 1)",
                SuccessiveHalvingPruner(1, 3, max_resource=MAX_EPOCHS),
            ),
        ):
            search = Search("bench", _train(losses), "sqlite://", client=client)
            started = time.perf_counter()
            search.run(grid, pruner=pruner, max_in_flight=THREADS, progress=False)
            seconds = time.perf_counter() - started
            # every epoch reports once: the stored reports count the epochs run
            epochs = len(search.store.read_values(search.search_id))
            rows.append((name, search.best.value, epochs, seconds))
            search.close()
    try:
        import optuna
    except ImportError:
        print("optuna not installed: pip install -e '.[bench]' to compare")
    else:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        counter = _Epochs()

        def objective(trial):
            value = math.nan
            i = trial.suggest_int("i", 0, N_CONFIGS - 1)
            for epoch in range(1, MAX_EPOCHS + 1):
                time.sleep(EPOCH_SECONDS)
                counter.add()
                value = float(losses[i, epoch - 1])
                trial.report(value, epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned
            return value

        study = optuna.create_study(
            sampler=optuna.samplers.BruteForceSampler(seed=seed),
            pruner=optuna.pruners.SuccessiveHalvingPruner(
                min_resource=1, reduction_factor=3
            ),
        )
        started = time.perf_counter()
        study.optimize(objective, n_trials=N_CONFIGS, n_jobs=THREADS)
        seconds = time.perf_counter() - started
        rows.append(
            ("Optuna SuccessiveHalving, n_jobs=16", study.best_value, counter.count,
             seconds)
        )  # fmt: skip
    ideal = N_CONFIGS * MAX_EPOCHS * EPOCH_SECONDS / THREADS
    print(
        f"wall time, {THREADS} threads, {EPOCH_SECONDS * 1e3:g} ms per epoch "
        f"(no pruning ideal {ideal:.2f} s), curves of seed {seed}"
    )
    base_best, base_epochs = rows[0][1], rows[0][2]
    print(f"{'run':44s} {'best':>8s} {'vs none':>8s} {'epochs':>7s} {'seconds':>8s}")
    for name, best, epochs, seconds in rows:
        print(
            f"{name:44s} {best:8.4f} {best / base_best:7.3f}x {epochs:7d} "
            f"{seconds:8.2f}   ({base_epochs / epochs:.1f}x fewer epochs)"
        )


if __name__ == "__main__":
    import sys

    args = [a for a in sys.argv[1:] if a != "--wall"]
    if "--wall" not in sys.argv:
        for arg in args or [str(SEED)]:
            main(int(arg))
    wall(int(args[0]) if args else SEED)
