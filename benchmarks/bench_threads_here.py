"""Where the bound on runs evaluated in threads here comes from.

A DE run of 10 ms sleeps (an objective that waits) on a warm, current
2-process x 8-thread ``LocalCluster``: the same run in threads of the caller's
process (``policy.THREADS_WITHIN`` lifted) against the cluster (the bound set
to 0: the path "auto" took before), for runs of about 0.04 to 2.5 s of work
on 16 threads, each side the best of 3 interleaved runs. What the cluster
costs over the threads is printed in seconds and as a share of the run:
measured here, a share of every run (a generation's round trip), not a
fixed cost; so the bound (``THREADS_WITHIN``, 1 s) is where a run becomes
worth watching on the dashboard, not where the cluster catches up.

Then ``async_map`` of 32 such sleeps (kept in threads here) against
``multiprocessing.Pool(16).map``, the Pool started before the clock.

Run: ``python benchmarks/bench_threads_here.py`` (about a minute).
"""

from __future__ import annotations

import math
import os
import time

import numpy as np

#: DE generations (16 points each, 2-D popsize 8): 10 ms per generation on 16
#: threads, so ~0.04 .. 2.5 s
GENERATIONS = (3, 15, 30, 60, 120, 250)


def sleep_10ms(x):
    time.sleep(0.01)  # the objective's cost
    return float(np.sum(np.asarray(x) ** 2))


def main() -> None:
    from distributed import Client, LocalCluster

    import dasktune.run.policy as policy
    from dasktune import minimize

    print(f"DE of 10 ms sleeps, 16 threads; load {os.getloadavg()[0]:.1f}")
    print(
        f"{'evals':>6} {'threads s':>10} {'cluster s':>10} {'cluster - threads':>18}"
        f" {'share':>6}"
    )
    bound = policy.THREADS_WITHIN
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=8, host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster),
    ):  # fmt: skip
        try:
            for generations in GENERATIONS:
                kw = {"popsize": 8, "maxiter": generations - 1, "polish": False,
                      "tol": 0.0}  # fmt: skip
                times = {"threads": math.inf, "cluster": math.inf}
                for _ in range(3):
                    for side, within in (("threads", math.inf), ("cluster", 0.0)):
                        policy.THREADS_WITHIN = within
                        started = time.perf_counter()
                        res = minimize(sleep_10ms, [(-1, 1)] * 2, seed=0, **kw)
                        seconds = time.perf_counter() - started
                        times[side] = min(times[side], seconds)
                        assert (res.execution == "local") == (side == "threads")
                extra = times["cluster"] - times["threads"]
                print(
                    f"{res.nfev:>6} {times['threads']:>10.3f} {times['cluster']:>10.3f}"
                    f" {extra:>17.3f}s {extra / times['cluster']:>6.0%}"
                )
        finally:
            policy.THREADS_WITHIN = bound
        map_row()
    print(f"load {os.getloadavg()[0]:.1f}")


def sleep_item(i):
    time.sleep(0.01)  # the function's cost
    return i * i


def map_row() -> None:
    """``async_map`` of 32 sleeps against a warm ``Pool(16).map``: the best
    of 5 interleaved runs each."""
    from multiprocessing import Pool

    from dasktune import async_map

    ours, theirs = math.inf, math.inf
    with Pool(16) as pool:
        pool.map(abs, range(32))  # its workers up
        for _ in range(5):
            started = time.perf_counter()
            pool.map(sleep_item, range(32))
            theirs = min(theirs, time.perf_counter() - started)
            started = time.perf_counter()
            async_map(sleep_item, range(32))
            ours = min(ours, time.perf_counter() - started)
    print(
        f"async_map, 32 x 10 ms sleeps: Pool(16).map {theirs:.3f} s, dasktune "
        f"{ours:.3f} s: {theirs / ours:.2f}x"
    )


if __name__ == "__main__":
    main()
