"""Screenshot ``dasktune serve`` (optuna-dashboard on a store) in headless Chromium.

Usage::

    python scripts/screenshot_serve.py STORE out.png   # a store of yours
    python scripts/screenshot_serve.py --demo out.png  # a small store made here

Starts ``dasktune serve`` on a free port of 127.0.0.1, waits for the line it
prints once it listens, has Chromium (``apt-get install -y chromium``) render
the first study's page (``scripts/_chromium.py``) until optuna-dashboard has
drawn its plots, writes the PNG and stops the server. Look at the PNG to check the page is readable.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _chromium import browser, capture, free_port

from dasktune.records import Claim, Outcome, TrialStatus, canonical
from dasktune.store.sql import TrialStore


def demo_store(path: Path) -> None:
    """A store with two searches, trials spread over a minute, one failure,
    some pruned, every finished trial with a reported curve."""
    store = TrialStore(f"sqlite:///{path}")
    for name, direction, n in (
        ("branin-tpe", "minimize", 40),
        ("svm-grid", "maximize", 12),
    ):
        search_id = store.open_search(
            name, space=None, direction=direction,
            metadata={"metric_names": ["loss" if direction == "minimize" else "accuracy"]},
        )  # fmt: skip
        driver = store.register_driver(search_id)
        claims = []
        for i in range(n):
            params = {
                "x": round(-5 + 10 * ((i * 0.618) % 1), 3),
                "kernel": ["rbf", "linear", "poly"][i % 3],
            }
            record, key = canonical(params)
            claims.append(Claim(key, record))
        decisions = store.sync(search_id, driver, [], claims)
        start = time.time() - 60
        outcomes = []
        for i, c in enumerate(claims[:-2]):  # the last two stay running
            x = c.params["x"]
            failed = i == 5
            pruned = i % 4 == 3
            value = (
                (x - 1) ** 2 + 3 * math.sin(x) if direction == "minimize" else -abs(x)
            )
            steps = 2 if pruned else 6
            store.add_values(search_id, [
                (decisions[i].number, step, value * (1 + 1 / (step + 1)), start + i)
                for step in range(steps)
            ])  # fmt: skip
            status = TrialStatus.PRUNED if pruned else TrialStatus.DONE
            outcomes.append(
                Outcome(
                    c.param_hash,
                    TrialStatus.FAILED if failed else status,
                    value=None if failed else value,
                    error="ValueError: diverged" if failed else None,
                    started=start + i,
                    finished=start + i + 1.5,
                    duration=1.5,
                )
            )
        store.sync(search_id, driver, outcomes, [])
    store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", nargs="?", help="store URL or SQLite file")
    parser.add_argument("out", help="the PNG to write")
    parser.add_argument("--demo", action="store_true", help="make a small store")
    args = parser.parse_args()
    browser()  # Chromium is there, before any work
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store
        if args.demo:
            store = str(Path(tmp) / "demo.db")
            demo_store(Path(store))
        if store is None:
            parser.error("give STORE or --demo")
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "dasktune", "serve", store, "--port", str(port)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            line = server.stdout.readline() if server.stdout else ""
            if f":{port}/" not in line:
                print(f"dasktune serve did not start: {line!r}", file=sys.stderr)
                return 1
            out = Path(args.out).resolve()
            asyncio.run(
                capture(
                    f"http://127.0.0.1:{port}/dashboard/studies/1",
                    out,
                    f"{tmp}/chromium",
                    ready="document.querySelectorAll('.js-plotly-plot').length > 0",
                    full_page=True,
                )
            )
            print(f"wrote {out}")
        finally:
            server.terminate()
            server.wait(timeout=30)
            if server.stdout:
                server.stdout.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
