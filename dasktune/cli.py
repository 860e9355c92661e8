"""The ``dasktune`` command.

``dasktune demo`` runs the README's main job on the embedded default (an owned
``LocalCluster`` bound to 127.0.0.1): it prints the dashboard link and maps a
small simulated-likelihood function over a grid of parameters with
:func:`dasktune.async_map`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import numpy as np

__all__ = ["main"]


def _demo_point(theta: float) -> float:
    """A noisy simulated log-likelihood: slow enough to be worth a cluster."""
    rng = np.random.default_rng(int(abs(theta) * 1e6))
    data = rng.normal(loc=1.5, scale=1.0, size=20_000)
    return float(-0.5 * np.sum((data - theta) ** 2))


def _demo(args: argparse.Namespace) -> int:
    from dasktune import async_map
    from dasktune.cluster import capacity, get_client

    client = get_client(
        args.scheduler,
        **(
            {"n_workers": args.n_workers}
            if args.n_workers and not args.scheduler
            else {}
        ),
    )
    print(f"dashboard: {client.dashboard_link}")
    print(f"cluster: {len(client.nthreads())} workers, {capacity(client)} threads")
    grid = np.linspace(-1.0, 4.0, 201).tolist()
    started = time.perf_counter()
    values = async_map(_demo_point, grid, client=client, progress=True)
    elapsed = time.perf_counter() - started
    best = int(np.argmax(values))
    print(f"async_map: {len(grid)} evaluations in {elapsed:.2f} s")
    print(
        f"best theta on the grid: {grid[best]:.3f} (log-likelihood {values[best]:.1f})"
    )
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dasktune",
        description="Run functions, optimizers and searches as Dask futures.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="a short end-to-end run on a LocalCluster")
    demo.add_argument("--scheduler", help="scheduler address (default: a LocalCluster)")
    demo.add_argument("--n-workers", type=int, help="workers of the LocalCluster")
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``dasktune`` command; return its exit code."""
    args = _parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("dasktune: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if args.debug:
            raise
        print(f"dasktune: error: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
