"""ProducerConsumer against one actor round trip and against re-sending the data.

Run: ``python benchmarks/bench_producer_consumer.py`` (about a minute).

A LocalCluster with 2 worker processes, 8 shards of 25 MB each, a cheap process
function:
(a) ``run`` latency vs one Dask actor method round trip;
(b) ``run`` vs the naive alternative that sends each shard with every call
    (``client.submit(f, params, shard)`` for every shard, then gather);
(c) an SPSA fit of a Gaussian mean over the preloaded data vs the same fit with an
    objective that carries the data with every evaluation.

Targets: run <= 2x one actor round trip; >= 20x faster than re-sending.
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np
from _timing import median_seconds
from distributed import Client, LocalCluster

from dasktune import SPSA, ProducerConsumer

N_SHARDS = 8
SHARD_FLOATS = 25_000_000 // 8  # 25 MB of float64


class Ping:
    def ping(self) -> int:
        return 1


def make_shard(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(1.5, 1.0, size=SHARD_FLOATS)


def cheap(params: float, shard: np.ndarray) -> float:
    return float(shard[0] * params)


def neg_loglike(theta, shard: np.ndarray) -> float:
    return float(0.5 * np.sum((shard[:100_000] - theta[0]) ** 2))


class Shipping:
    """An objective carrying all the data with every evaluation."""

    def __init__(self, shards: list[np.ndarray]) -> None:
        self.shards = shards

    def __call__(self, theta) -> float:
        return sum(neg_loglike(theta, s) for s in self.shards)


def main() -> None:
    logging.getLogger("distributed").setLevel(logging.ERROR)
    print(f"load average {os.getloadavg()} (2 cores, shared with other users)")
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        actor = client.submit(Ping, actor=True).result()
        t_actor = median_seconds(lambda: actor.ping().result(), 50)
        with ProducerConsumer(make_shard, list(range(N_SHARDS)), cheap,
                              n_cores=N_SHARDS, client=client) as pc:  # fmt: skip
            t_run = median_seconds(lambda: pc.run(2.0, reduce=sum), 50)
            shards = [make_shard(i) for i in range(N_SHARDS)]

            def naive() -> None:
                client.gather(
                    [client.submit(cheap, 2.0, s, pure=False) for s in shards]
                )

            t_naive = median_seconds(naive, 3)
            fit_options = {"a_par": 2e-6, "c_par": 0.1, "maxiter": 10, "seed": 0,
                           "print_iters": None, "client": client}  # fmt: skip
            fit_pc = ProducerConsumer(make_shard, list(range(N_SHARDS)), neg_loglike,
                                      n_cores=N_SHARDS, client=client)  # fmt: skip
            with fit_pc:
                started = time.perf_counter()
                res_pc = SPSA(fit_pc.objective(reduce=sum), [0.0], **fit_options)
                t_fit_pc = time.perf_counter() - started
            started = time.perf_counter()
            res_ship = SPSA(Shipping(shards), [0.0], **fit_options)
            t_fit_ship = time.perf_counter() - started
    print(f"{N_SHARDS} shards x 25 MB on 2 worker processes, a cheap process function")
    print(f"(a) run: {t_run * 1e3:.2f} ms; one actor round trip: {t_actor * 1e3:.2f} ms "
          f"-> {t_run / t_actor:.2f}x (target <= 2x)")  # fmt: skip
    print(f"(b) re-sending the shards with every call: {t_naive * 1e3:.0f} ms "
          f"-> run is {t_naive / t_run:.0f}x faster (target >= 20x)")  # fmt: skip
    print(f"(c) SPSA fit, {res_pc.nfev} evaluations: preloaded {t_fit_pc:.2f} s, "
          f"re-sending {t_fit_ship:.2f} s -> {t_fit_ship / t_fit_pc:.1f}x; "
          f"same x: {np.allclose(res_pc.x, res_ship.x)}")  # fmt: skip


if __name__ == "__main__":
    main()
