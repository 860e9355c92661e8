"""Screenshot ``dasktune serve`` (optuna-dashboard on a store) in headless Chromium.

Usage::

    python scripts/screenshot_serve.py STORE out.png   # a store of yours
    python scripts/screenshot_serve.py --demo out.png  # a small store made here

Starts ``dasktune serve`` on a free port of 127.0.0.1, waits for the line it
prints once it listens, has Chromium (``apt-get install -y chromium``) render
the first study's page (driven over its DevTools protocol, through tornado,
which Dask already needs) until optuna-dashboard has drawn its plots, writes
the PNG and stops the server. Look at the PNG to check the page is readable.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dasktune.records import Claim, Outcome, TrialStatus, canonical
from dasktune.store.sql import TrialStore

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--window-size=1280,1050",
]


async def _capture(browser: str, url: str, out: Path, profile: str) -> None:
    """Load ``url`` in Chromium driven over the DevTools protocol; wait until
    optuna-dashboard has drawn its plots, then capture the page.

    Chromium's own ``--screenshot`` fires at the load event, before the page
    has fetched the study from the API, so it shows an empty page.
    """
    from tornado.httpclient import AsyncHTTPClient
    from tornado.websocket import websocket_connect

    port = free_port()
    proc = subprocess.Popen(
        [
            browser,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--remote-debugging-port={port}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:  # the DevTools endpoint answers once Chromium is up
            try:
                # a tab of our own (the first one may still be replaced)
                reply = await AsyncHTTPClient().fetch(
                    f"http://127.0.0.1:{port}/json/new?about:blank",
                    method="PUT",
                    body=b"",
                )
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        target = json.loads(reply.body)
        conn = await websocket_connect(target["webSocketDebuggerUrl"])
        ids = iter(range(1, 10**6))

        async def call(method: str, **params: object) -> dict:
            key = next(ids)
            await conn.write_message(
                json.dumps({"id": key, "method": method, "params": params})
            )
            while True:
                message = json.loads(await conn.read_message())
                if message.get("id") == key:  # events in between are skipped
                    return message.get("result", {})

        await call("Runtime.enable")
        await call("Page.enable")
        await call("Page.navigate", url=url)
        drawn = "document.querySelectorAll('.js-plotly-plot').length > 0"
        deadline = time.monotonic() + 30
        while True:
            result = await call("Runtime.evaluate", expression=drawn)
            if result.get("result", {}).get("value") is True:
                break
            if time.monotonic() > deadline:
                raise TimeoutError("the page did not draw within 30 s")
            await asyncio.sleep(0.25)
        await asyncio.sleep(3.0)  # the other plots follow
        shot = await call("Page.captureScreenshot", format="png")
        out.write_bytes(base64.b64decode(shot["data"]))
        conn.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", nargs="?", help="store URL or SQLite file")
    parser.add_argument("out", help="the PNG to write")
    parser.add_argument("--demo", action="store_true", help="make a small store")
    args = parser.parse_args()
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("needs Chromium: apt-get install -y chromium", file=sys.stderr)
        return 1
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
                _capture(
                    browser,
                    f"http://127.0.0.1:{port}/dashboard/studies/1",
                    out,
                    f"{tmp}/chromium",
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
