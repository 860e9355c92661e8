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

import distributed
from distributed.utils_test import gen_cluster

from dasktune import Search
from dasktune.exceptions import TrialPruned
from dasktune.run.dask_page import PATH, latest, render

CELL = "padding:2px 8px;white-space:nowrap"  # a table cell's style


def objective(params, trial):
    """Module level, so that it pickles to the workers."""
    trial.report(step=0, value=params["x"])  # an integer value: by keyword
    if params["x"] == 3:
        raise TrialPruned
    if params["x"] == 4:
        raise ValueError("no good")
    return params["x"]


RELEASE = "dasktune-page-test-release"
CURVES = "curves: the running trials' reported values"  # the plot's title


def reporting(params, trial):
    """Reports three steps, then runs until the test has read the page."""
    for step in range(3):
        trial.report(step, params["x"] + 1.0 / (step + 1))
    if not distributed.Event(RELEASE).wait(timeout=60):
        raise TimeoutError(f"the test never set the Event {RELEASE!r}")
    return params["x"]


READ = """
import json, sys, urllib.request
from bokeh.client import pull_session
from bokeh.models import Div, Plot

base = sys.argv[1]
with urllib.request.urlopen(base + "/individual-plots.json", timeout=30) as response:
    plots = json.loads(response.read())
session = pull_session(url=base + sys.argv[2])
(div,) = session.document.select({"type": Div})
curves = {}
for plot in session.document.select({"type": Plot}):
    (line,) = plot.renderers
    data = line.data_source.data
    curves[plot.title.text] = {
        str(n): [list(x), list(y)] for n, x, y in zip(data["trial"], data["xs"], data["ys"])
    }
print(json.dumps({"plots": plots, "text": div.text, "curves": curves}))
session.close()
"""


def read_page(port):
    """The page's list entry, table and curves as a browser gets them (its
    Bokeh document: the Div's text, each plot's lines by trial number), read
    in a process of its own (Bokeh's client leaves threads behind)."""
    done = subprocess.run(
        [sys.executable, "-c", READ, f"http://127.0.0.1:{port}", PATH],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def page_text(port):
    """The page's list entry and table."""
    got = read_page(port)
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
    assert f"<td style='{CELL}'>4</td><td style='{CELL}'>1</td>" in text


@gen_cluster(
    client=True,
    timeout=120,
    scheduler_kwargs={"dashboard": True, "dashboard_address": "127.0.0.1:0"},
)
async def test_the_page_draws_the_running_trials_reported_curves(c, s, a, b):
    port = s.http_server.port
    search = Search("curves", reporting, "sqlite://", client=c)
    run = asyncio.ensure_future(
        asyncio.to_thread(search.run, [{"x": 1.0}, {"x": 2.0}], progress=False)
    )
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while True:  # each read takes a second or so: no sleep needed
            curves = (await asyncio.to_thread(read_page, port))["curves"]
            drawn = curves.get(CURVES, {})
            if len(drawn) == 2 and all(len(x) == 3 for x, _ in drawn.values()):
                break
            assert not run.done(), run.result()
            assert asyncio.get_running_loop().time() < deadline, curves
    finally:
        await distributed.Event(RELEASE, client=c).set()
        await run
        numbers = sorted(map(str, search.trials()["number"]))
        search.close()
    # each running trial's line: its steps and the values it reported
    lines = sorted(drawn.values(), key=lambda line: line[1][0])
    assert lines == [[[0, 1, 2], [x + 1.0, x + 0.5, x + 1 / 3]] for x in (1.0, 2.0)]
    assert numbers == sorted(drawn)
    # once the search is over, nothing runs: no plot
    assert (await asyncio.to_thread(read_page, port))["curves"] == {}


OWN_CLUSTER = """
import json, subprocess, sys
import dasktune
from dasktune.run.cluster import close_owned


def objective(params):
    return params["x"]


client = dasktune.get_client(n_workers=1, processes=False,
                             dashboard_address="127.0.0.1:0")
try:
    with dasktune.Search("own", objective, "sqlite://", client=client) as search:
        search.run([{"x": x} for x in range(4)], progress=False)
    port = client.dashboard_link.split(":")[2].split("/")[0]
    read = subprocess.run([sys.executable, "-c", sys.argv[1], f"http://127.0.0.1:{port}",
                           sys.argv[2]], capture_output=True, text=True, timeout=60)
    print(read.stdout if read.returncode == 0 else read.stderr)
finally:
    close_owned()
"""


def test_the_page_is_on_the_local_cluster_dasktune_starts(tmp_path):
    # a fresh interpreter, where nothing imported the page: starting the
    # cluster registers it
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run(
        [sys.executable, "-c", OWN_CLUSTER, READ, PATH], capture_output=True,
        text=True, timeout=120, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["plots"]["Individual Dasktune"] == PATH
    assert "own" in got["text"] and "finished" in got["text"]
    cells = "".join(f"<td style='{CELL}'>{n}</td>" for n in (4, 0, 0, 0, 4))
    assert cells in got["text"]


def test_the_table_escapes_names_and_marks_the_finished():
    rows = [{"search": "<b>x</b>", "driver": "d", "host": "h", "pid": 1, "done": 2,
             "pruned": 0, "failed": 0, "running": 1, "total": None, "best": 0.5,
             "execution": "feed", "finished": False, "time": 100.0}]  # fmt: skip
    text = render(rows, now=103.0)
    assert "&lt;b&gt;x&lt;/b&gt;" in text and "3 s ago" in text and ">?<" in text
    assert "finished" in render([{**rows[0], "finished": True}], now=103.0)


def two(params):
    return params["x"], -(params["x"] ** 2)


@gen_cluster(client=True, timeout=120)
async def test_the_page_names_the_metrics_and_counts_a_pareto_front(c, s, a, b):
    with Search("named", objective, "sqlite://", client=c,
                metric_names=["val_loss"]) as search:  # fmt: skip
        await asyncio.to_thread(search.run, [{"x": 1}, {"x": 2}], progress=False)
    with Search("pareto", two, "sqlite://", client=c,
                directions=["minimize", "minimize"],
                metric_names=["loss", "size"]) as search:  # fmt: skip
        await asyncio.to_thread(
            search.run, [{"x": x} for x in (1, 2, 5)], progress=False
        )
    text = render(latest(s.get_events("dasktune")), now=0.0)
    assert f"<td style='{CELL}'>val_loss = 1</td>" in text
    # x = 1 and 2 are on the front of (x, -x²) minimised, 5 too: 3 points
    assert f"<td style='{CELL}'>Pareto front: 3 (loss, size)</td>" in text


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
    cells = "".join(f"<td style='{CELL}'>{n}</td>" for n in (3, 1, 1, 0, 5))
    assert cells in text
