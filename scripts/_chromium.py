"""Headless Chromium, driven over its DevTools protocol: a page's screenshot
once the page has drawn (shared by the scripts under ``scripts/``).

Chromium's own ``--screenshot`` fires at the load event, before a page that
fetches its data (optuna-dashboard's study, a Bokeh document over its
websocket) has drawn anything. Here the page is polled with a JavaScript
condition, then captured. The protocol is spoken through tornado, which Dask
already needs.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
]


async def capture(
    url: str,
    out: Path,
    profile: str,
    *,
    ready: str,
    settle: float = 3.0,
    size: tuple[int, int] = (1280, 1050),
    full_page: bool = False,
) -> None:
    """Load ``url`` in headless Chromium and write its screenshot to ``out``
    once the JavaScript expression ``ready`` is true (30 s at most) and
    ``settle`` seconds more have passed (the page's other plots follow).

    ``profile`` is a fresh directory for Chromium's profile; ``full_page``
    captures the page's whole height, not only the window's ``size``.
    """
    from tornado.httpclient import AsyncHTTPClient
    from tornado.websocket import websocket_connect

    port = free_port()
    proc = subprocess.Popen(
        [
            browser(),
            *CHROMIUM_FLAGS,
            f"--window-size={size[0]},{size[1]}",
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
        deadline = time.monotonic() + 30
        while True:
            result = await call("Runtime.evaluate", expression=ready)
            if result.get("result", {}).get("value") is True:
                break
            if time.monotonic() > deadline:
                raise TimeoutError("the page did not draw within 30 s")
            await asyncio.sleep(0.25)
        await asyncio.sleep(settle)
        if full_page:  # the whole page, below the window's height too
            size_ = (await call("Page.getLayoutMetrics"))["cssContentSize"]
            clip = {"x": 0, "y": 0, "width": size_["width"],
                    "height": size_["height"], "scale": 1}  # fmt: skip
            shot = await call("Page.captureScreenshot", format="png", clip=clip,
                              captureBeyondViewport=True)  # fmt: skip
        else:
            shot = await call("Page.captureScreenshot", format="png")
        out.write_bytes(base64.b64decode(shot["data"]))
        conn.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def browser() -> str:
    """Chromium's executable; ``SystemExit`` with what to install without it."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise SystemExit("needs Chromium: apt-get install -y chromium")
    return found


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
