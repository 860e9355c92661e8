"""Screenshot dasktune's page in the Dask dashboard in headless Chromium.

Usage::

    python scripts/screenshot_dask_page.py out.png

Starts a ``LocalCluster`` as dasktune does (its page registered), runs two
searches on it at once — a simulated training whose trials report a loss per
epoch, stopped early by a ``MedianPruner``, and a plain search — and, once
trials of each state are on the page and the training's running trials have
drawn part of their curves, has Chromium (``apt-get install -y chromium``)
render ``/individual-dasktune`` (``scripts/_chromium.py``) and writes the PNG.
Look at the PNG to check the page is readable.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import threading
import time
from pathlib import Path

from _chromium import browser, capture

import dasktune
from dasktune.exceptions import TrialPruned
from dasktune.optim.pruners import MedianPruner
from dasktune.run.dask_page import PATH
from dasktune.run.watch import latest

EPOCHS = 25


def train(params, trial):
    """A simulated training: a loss that decays towards a floor set by the
    parameters, one epoch every 0.2 s."""
    floor = 0.2 + (math.log10(params["lr"]) + 2.5) ** 2 / 3 + params["dropout"]
    for epoch in range(EPOCHS):
        time.sleep(0.2)
        loss = floor + (2.5 - floor) * math.exp(-epoch / 6)
        trial.report(epoch, loss)
        if trial.should_prune():
            raise TrialPruned
    return loss


def branin(params):
    """Branin's function, slowed down to 50 ms a trial."""
    time.sleep(0.05)
    x, y = params["x"], params["y"]
    b, c = 5.1 / (4 * math.pi**2), 5 / math.pi
    return (y - b * x**2 + c * x - 6) ** 2 + 10 * (1 - 1 / (8 * math.pi)) * math.cos(
        x
    ) + 10  # fmt: skip


def grids() -> tuple[list[dict], list[dict]]:
    training = [
        {"lr": 10 ** (-4 + 3 * ((i * 0.618) % 1)), "dropout": 0.1 * (i % 4)}
        for i in range(40)
    ]
    plain = [
        {"x": -5 + 15 * ((i * 0.618) % 1), "y": 15 * ((i * 0.414) % 1)}
        for i in range(300)
    ]
    return training, plain


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="the PNG to write")
    args = parser.parse_args()
    browser()  # Chromium is there, before any work
    client = dasktune.get_client(
        n_workers=1, threads_per_worker=5, processes=False,
        dashboard_address="127.0.0.1:0",
    )  # fmt: skip
    training, plain = grids()
    errors: list[BaseException] = []
    with tempfile.TemporaryDirectory() as tmp:
        searches = [
            dasktune.Search("mlp-median", train, f"sqlite:///{tmp}/s.db",
                            client=client, metric_names=["val_loss"]),
            dasktune.Search("branin-grid", branin, f"sqlite:///{tmp}/s.db",
                            client=client),
        ]  # fmt: skip
        # a task per trial: fed trials would hold every thread for one search
        runs = [
            lambda: searches[0].run(
                training, pruner=MedianPruner(n_startup_trials=3, n_warmup_steps=4),
                max_in_flight=4, progress=False, execution="tasks", timeout=60,
            ),
            lambda: searches[1].run(plain, max_in_flight=1, progress=False,
                                    execution="tasks", timeout=60),
        ]  # fmt: skip

        def run(job):
            try:
                job()
            except BaseException as err:  # shown below, after the threads end
                errors.append(err)

        threads = [threading.Thread(target=run, args=(job,)) for job in runs]
        for thread in threads:
            thread.start()
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not errors:
                rows = {r["search"]: r for r in latest(client.get_events("dasktune"))}
                row = rows.get("mlp-median", {})
                if row.get("done", 0) >= 4 and row.get("pruned", 0) >= 3:
                    break
                time.sleep(0.5)
            else:
                raise TimeoutError(f"the searches did not get far enough: {errors}")
            time.sleep(1.5)  # the running trials draw part of their curves
            url = client.dashboard_link.replace("/status", PATH)
            out = Path(args.out).resolve()
            asyncio.run(
                capture(
                    url, out, f"{tmp}/chromium", size=(1280, 500), settle=1.5,
                    ready="window.Bokeh !== undefined && Bokeh.documents.length > 0"
                    " && Bokeh.documents[0].roots()[0].children.length > 1",
                )
            )  # fmt: skip
            print(f"wrote {out}")
        finally:
            for thread in threads:  # the runs' timeout ends them
                thread.join(timeout=120)
            for search in searches:
                search.close()
            client.close()
    if errors:
        raise errors[0]
    return 0


if __name__ == "__main__":
    sys.exit(main())
