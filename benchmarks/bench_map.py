"""async_map against multiprocessing, raw client.map and Dask's own floor.

Run: ``python benchmarks/bench_map.py`` (about a minute on 2 cores).

(a)  10,000 calls of a trivial function on N worker processes (N = cores):
     async_map vs ``multiprocessing.Pool(N).map`` (default chunking, pool made
     before timing) vs raw ``client.map`` + ``gather`` (one task per element,
     measured on fewer elements and reported per element);
(a') Dask's floor for that work: one ``client.map`` + ``gather`` of pre-wrapped
     chunks, one per worker thread;
(b)  200 calls sleeping 50 ms on a LocalCluster with 16 worker threads:
     efficiency = ideal time / measured time.

Targets: (a) async_map within 1.5x of the floor and >= 20x faster than raw
client.map; (b) efficiency >= 90%. Medians of several repeats after a warm-up.
"""

from __future__ import annotations

import multiprocessing
import os
import time

from _timing import median_seconds
from distributed import Client, LocalCluster

from dasktune import async_map

N_TRIVIAL = 10_000
N_RAW = 1_000
REPEATS = 7


def trivial(x: int) -> int:
    return x + 1


def nap(x: int) -> int:
    time.sleep(0.05)
    return x


class Wrapped:
    """A chunk as one opaque object, as Dask's floor needs it."""

    def __init__(self, items: list[int]) -> None:
        self.items = items


def run_wrapped(chunk: Wrapped) -> Wrapped:
    return Wrapped([trivial(x) for x in chunk.items])


def part_a(n_procs: int) -> dict[str, float]:
    data = list(range(N_TRIVIAL))
    with (
        LocalCluster(
            n_workers=n_procs,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        per = {}
        t = median_seconds(lambda: async_map(trivial, data, client=client), REPEATS)
        per["async_map"] = t / N_TRIVIAL

        threads = sum(client.nthreads().values())
        size = -(-N_TRIVIAL // threads)
        chunks = [Wrapped(data[i : i + size]) for i in range(0, N_TRIVIAL, size)]

        def floor() -> None:
            client.gather(client.map(run_wrapped, chunks, pure=False))

        per["dask floor (a')"] = median_seconds(floor, REPEATS) / N_TRIVIAL

        raw_data = data[:N_RAW]

        def raw() -> None:
            client.gather(client.map(trivial, raw_data, pure=False))

        per["raw client.map"] = median_seconds(raw, repeats=3) / N_RAW

    with multiprocessing.get_context("spawn").Pool(n_procs) as pool:
        per["Pool.map"] = (
            median_seconds(lambda: pool.map(trivial, data), REPEATS) / N_TRIVIAL
        )
    return per


def part_b() -> tuple[float, float]:
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=8,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        measured = median_seconds(
            lambda: async_map(nap, range(200), client=client), repeats=5
        )
    ideal = 200 * 0.05 / 16
    return ideal, measured


def main() -> None:
    n_procs = os.cpu_count() or 2
    print(f"load average {os.getloadavg()} (2 cores, shared with other users)")
    per = part_a(n_procs)
    ours = per["async_map"]
    print(f"(a) {N_TRIVIAL:,} trivial calls on {n_procs} worker processes")
    print(f"    {'method':<18} {'us/element':>11} {'async_map is':>16}")
    for name, value in per.items():
        ratio = "" if name == "async_map" else f"{value / ours:8.2f}x faster"
        if name in ("dask floor (a')", "Pool.map"):
            ratio = f"{ours / value:8.2f}x its time"
        print(f"    {name:<18} {value * 1e6:11.2f} {ratio:>16}")
    floor_ratio = ours / per["dask floor (a')"]
    raw_ratio = per["raw client.map"] / ours
    print(f"    target: <= 1.5x the floor -> {floor_ratio:.2f}x")
    print(f"    target: >= 20x faster than raw client.map -> {raw_ratio:.1f}x")

    ideal, measured = part_b()
    print("(b) 200 calls sleeping 50 ms, LocalCluster with 16 threads")
    print(
        f"    ideal {ideal:.3f} s, measured {measured:.3f} s, "
        f"efficiency {ideal / measured:.1%} (target >= 90%, at most 96% possible)"
    )
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
