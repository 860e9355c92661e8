"""dasktune's page in the Dask dashboard, read over HTTP as a browser does.

The page is registered before the scheduler starts (importing
``dasktune.run.dask_page`` does it, as ``dask scheduler --preload`` does), and
fed by the drivers' Dask events, not by the store (the store here is in
memory, in this process: the page could not read it).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from distributed.utils_test import gen_cluster

from dasktune import Search
from dasktune.exceptions import TrialPruned
from dasktune.run.dask_page import PATH, latest, render


def objective(params, trial):
    """Module level, so that it pickles to the workers."""
    trial.report(step=0, value=params["x"])  # an integer value: by keyword
    if params["x"] == 3:
        raise TrialPruned
    if params["x"] == 4:
        raise ValueError("no good")
    return params["x"]


READ = """
import json, sys, urllib.request
from bokeh.client import pull_session

base = sys.argv[1]
with urllib.request.urlopen(base + "/individual-plots.json", timeout=30) as response:
    plots = json.loads(response.read())
session = pull_session(url=base + sys.argv[2])
(div,) = session.document.roots
print(json.dumps({"plots": plots, "text": div.text}))
session.close()
"""


def page_text(port):
    """The page's list entry and text as a browser gets them (its Bokeh
    document's Div), read in a process of its own (Bokeh's client leaves
    threads behind)."""
    done = subprocess.run(
        [sys.executable, "-c", READ, f"http://127.0.0.1:{port}", PATH],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    return got["plots"], got["text"]


@gen_cluster(
    client=True,
    timeout=120,
    scheduler_kwargs={"dashboard": True, "dashboard_address": "127.0.0.1:0"},
)
async def test_the_page_is_listed_and_counts_a_searchs_trials(c, s, a, b):
    port = s.http_server.port
    plots, text = await asyncio.to_thread(page_text, port)
    assert plots["Individual Dasktune"] == PATH
    assert "No dasktune search has run on this cluster yet" in text
    search = Search("on-the-page", objective, "sqlite://", client=c)
    await asyncio.to_thread(search.run, [{"x": x} for x in range(6)], progress=False)
    search.close()
    _, text = await asyncio.to_thread(page_text, port)
    assert "on-the-page" in text
    (row,) = latest(s.get_events("dasktune"))
    assert (row["done"], row["pruned"], row["failed"], row["total"]) == (4, 1, 1, 6)
    assert row["finished"] and row["execution"] in ("tasks", "feed")
    # the page's cells, in order: done, pruned, failed, running, of
    assert (
        "<td style='padding:2px 8px'>4</td><td style='padding:2px 8px'>1</td>" in text
    )


def test_the_table_escapes_names_and_marks_the_finished():
    rows = [{"search": "<b>x</b>", "driver": "d", "host": "h", "pid": 1, "done": 2,
             "pruned": 0, "failed": 0, "running": 1, "total": None, "best": 0.5,
             "execution": "feed", "finished": False, "time": 100.0}]  # fmt: skip
    text = render(rows, now=103.0)
    assert "&lt;b&gt;x&lt;/b&gt;" in text and "3 s ago" in text and ">?<" in text
    assert "finished" in render([{**rows[0], "finished": True}], now=103.0)


def test_a_scheduler_started_apart_shows_the_page_with_preload(tmp_path):
    # the recipe the README gives: dask scheduler --preload dasktune.run.dask_page
    from distributed import Client

    from tests.deploy import DASK, WORKER, free_port

    root = Path(__file__).resolve().parents[1]
    # this dasktune, and this module (the objective) for the worker
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), str(root / "tests")]),
    }
    port, dashboard = free_port(), free_port()
    address = f"tcp://127.0.0.1:{port}"
    quiet = {"cwd": tmp_path, "env": env, "stdout": subprocess.DEVNULL,
             "stderr": subprocess.DEVNULL}  # fmt: skip
    procs = [subprocess.Popen(
        [*DASK, "--host", "127.0.0.1", "--port", str(port), "--dashboard-address",
         f"127.0.0.1:{dashboard}", "--preload", "dasktune.run.dask_page"], **quiet,
    )]  # fmt: skip
    try:
        procs.append(subprocess.Popen(
            [*WORKER, address, "--nthreads", "2", "--no-dashboard", "--host",
             "127.0.0.1"], **quiet,
        ))  # fmt: skip
        with Client(address, timeout=60) as client:
            client.wait_for_workers(1, timeout=60)
            with Search("apart", objective, "sqlite://", client=client) as search:
                search.run([{"x": x} for x in range(5)], progress=False)
        plots, text = page_text(dashboard)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)
    assert plots["Individual Dasktune"] == PATH
    assert "apart" in text and "finished" in text
    # done, pruned, failed, running, of
    cells = "".join(f"<td style='padding:2px 8px'>{n}</td>" for n in (3, 1, 1, 0, 5))
    assert cells in text
