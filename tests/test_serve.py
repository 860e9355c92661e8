"""dasktune serve: the live page, read from a real store, served over HTTP."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from bokeh.client import pull_session
from bokeh.document import Document

import dasktune.serve as serve_module
from dasktune.records import Claim, Outcome, TrialStatus, canonical
from dasktune.serve import LivePage, make_server
from dasktune.store.sql import TrialStore


def record(store, search_id, driver, xs, status=TrialStatus.DONE):
    """Claim and finish trials at ``xs`` as a driver would (value x**2)."""
    claims = [Claim(*reversed(canonical({"x": x, "kind": "ab"[i % 2]})))
              for i, x in enumerate(xs)]  # fmt: skip
    store.sync(search_id, driver, [], claims)
    now = time.time()
    outcomes = [
        Outcome(c.param_hash, status, value=c.params["x"] ** 2
                if status == TrialStatus.DONE else None,
                error=None if status == TrialStatus.DONE else "boom",
                started=now - 1, finished=now, duration=1.0)
        for c in claims
    ]  # fmt: skip
    store.sync(search_id, driver, outcomes, [])


def make_store(path):
    store = TrialStore(f"sqlite:///{path}")
    search_id = store.open_search("live", space=None, direction="minimize",
                                  metadata={})  # fmt: skip
    driver = store.register_driver(search_id)
    record(store, search_id, driver, [3.0, -2.0, 0.5])
    record(store, search_id, driver, [9.0], TrialStatus.FAILED)
    other = store.open_search("other", space=None, direction="maximize", metadata={})
    record(store, other, store.register_driver(other), [1.0, 2.0])
    return store, search_id, driver


def test_the_page_reads_only_new_rows_and_redraws(tmp_path):
    store, search_id, driver = make_store(tmp_path / "s.db")
    reader = TrialStore(f"sqlite:///{tmp_path / 's.db'}", readonly=True)
    page = LivePage(reader, Document(), interval_ms=1000)
    summary = page.summary.data
    assert summary["name"] == ["live", "other"]
    assert summary["done"] == [3, 2] and summary["failed"] == [1, 0]
    assert summary["best"] == ["0.25", "4"]  # "other" maximises
    assert page.search_select.value == "live"
    assert dict(zip(page.counts.data["status"], page.counts.data["n"], strict=True)) \
        == {"queued": 0, "running": 0, "done": 3, "failed": 1}  # fmt: skip
    assert page.history.data["best"] == [9.0, 4.0, 0.25]
    assert page.param_select.options == ["kind", "x"]
    page.param_select.value = "x"  # redraws at once
    assert sorted(page.points.data["x"]) == [-2.0, 0.5, 3.0]
    assert "0.25" in page.best_div.text and "<b>x</b>" in page.best_div.text
    seq = page.tables[search_id].seq

    record(store, search_id, driver, [0.1])
    page.refresh()
    table = page.tables[search_id]
    assert table.seq > seq and table.n == 5
    assert page.summary.data["done"] == [4, 2]
    assert page.history.data["best"][-1] == pytest.approx(0.01)
    page.param_select.value = "kind"  # a categorical: its choices on the axis
    assert sorted(set(page.points.data["x"])) == [0, 1]
    assert page.scatter.xaxis[0].major_label_overrides == {0: "a", 1: "b"}
    reader.close()
    store.close()


def test_the_page_starts_from_the_stores_snapshot(tmp_path, monkeypatch):
    from dasktune.table import TrialTable

    store, search_id, driver = make_store(tmp_path / "s.db")
    table = TrialTable()
    table.update(store.read_trials(search_id)[1])
    assert store.write_snapshot(search_id, table.seq, table.n, table.dumps())
    record(store, search_id, driver, [0.1])  # a row after the snapshot
    reads = []
    read_trials = TrialStore.read_trials

    def spy(self, sid, *, status=None, since=None):
        reads.append((sid, since))
        return read_trials(self, sid, status=status, since=since)

    monkeypatch.setattr(TrialStore, "read_trials", spy)
    reader = TrialStore(f"sqlite:///{tmp_path / 's.db'}", readonly=True)
    page = LivePage(reader, Document(), interval_ms=1000)
    assert (search_id, table.seq) in reads  # only the rows after the snapshot
    assert page.tables[search_id].n == 5
    assert page.summary.data["done"] == [4, 2]
    reader.close()
    store.close()


def test_the_page_shows_the_front_and_never_an_infeasible_best(tmp_path):
    store = TrialStore(f"sqlite:///{tmp_path / 's.db'}")
    mo = store.open_search("mo", space=None, direction="minimize", metadata={},
                           directions=["minimize", "maximize"])  # fmt: skip
    driver = store.register_driver(mo)
    claims = [Claim(*reversed(canonical({"x": float(x)}))) for x in range(5)]
    store.sync(mo, driver, [], claims)
    store.sync(mo, driver, [
        Outcome(c.param_hash, TrialStatus.DONE, value=x,
                values=(x, -((x - 2) ** 2)), constraints=(1.0 - x,))
        for x, c in enumerate(claims)
    ], [])  # fmt: skip
    one = store.open_search("one", space=None, direction="minimize", metadata={})
    driver = store.register_driver(one)
    store.sync(one, driver, [], claims[:2])
    store.sync(one, driver, [
        Outcome(c.param_hash, TrialStatus.DONE, value=float(x),
                constraints=(1.0 - x,))
        for x, c in enumerate(claims[:2])
    ], [])  # fmt: skip
    page = LivePage(store, Document(), interval_ms=1000)
    summary = page.summary.data
    assert summary["direction"] == ["minimize, maximize", "minimize"]
    # x=0 is infeasible: neither on the front nor the best
    assert summary["best"] == ["2 on the Pareto front", "1"]
    assert "Pareto front: 2 trials" in page.best_div.text
    assert page.param_select.options == ["x"]
    page.search_select.value = "one"
    assert page.history.data["best"] == [1.0]
    store.close()


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_answers_over_http_from_a_subprocess(tmp_path):
    store, _, _ = make_store(tmp_path / "s.db")
    store.close()
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dasktune", "serve", str(tmp_path / "s.db"),
         "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = proc.stdout.readline()  # printed once the server listens
        assert f"http://127.0.0.1:{port}/" in line, proc.stderr.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as r:
            page = r.read().decode()
        assert r.status == 200
        assert "<title>dasktune</title>" in page and "Bokeh" in page
        session = pull_session(url=f"http://127.0.0.1:{port}/")
        try:
            sources = [m for m in session.document.roots[0].references()
                       if getattr(m, "data", None) and "direction" in m.data]  # fmt: skip
            assert sources[0].data["name"] == ["live", "other"]
        finally:
            session.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()


def test_bad_port_and_store():
    with pytest.raises(ValueError, match=r"port must be an integer in \[1, 65535\]"):
        make_server("sqlite://", 0)
    # 0 would redraw in a busy loop, a core's worth of CPU per open page
    for bad in (0, -5, 50, 1.5, True):
        with pytest.raises(ValueError, match="at least 100 milliseconds"):
            make_server("sqlite://", 5006, interval_ms=bad)
    with pytest.raises(ValueError, match="at least 100 milliseconds"):
        LivePage(TrialStore("sqlite://"), Document(), interval_ms=0)


def test_an_unchanged_store_is_not_redrawn(tmp_path, monkeypatch):
    store, search_id, driver = make_store(tmp_path / "s.db")
    reader = TrialStore(f"sqlite:///{tmp_path / 's.db'}", readonly=True)
    page = LivePage(reader, Document(), interval_ms=1000)
    drawn = []
    summary = LivePage._summary
    monkeypatch.setattr(LivePage, "_summary",
                        lambda self, frames: drawn.append(1) or summary(self, frames))  # fmt: skip
    for _ in range(3):
        page.refresh()  # nothing new: read, not drawn
    assert drawn == []
    record(store, search_id, driver, [0.1])
    page.refresh()
    assert drawn == [1] and page.summary.data["done"] == [4, 2]
    assert page.param_select.value == "kind"
    page.param_select.value = "x"  # a new choice redraws at once
    assert drawn == [1, 1]
    reader.close()
    store.close()


def test_a_slow_redraw_leaves_out_ticks(tmp_path, monkeypatch):
    store, _, _ = make_store(tmp_path / "s.db")
    reader = TrialStore(f"sqlite:///{tmp_path / 's.db'}", readonly=True)
    page = LivePage(reader, Document(), interval_ms=100)
    calls = []
    clock = [0.0]  # the page's clock: each redraw takes 60 ms of it, however
    # long it takes on this machine

    def slow(force=False):
        calls.append(1)
        clock[0] += 0.06  # more than a quarter of the 100 ms tick

    monkeypatch.setattr(page, "refresh", slow)
    monkeypatch.setattr(serve_module.time, "perf_counter", lambda: clock[0])
    for _ in range(9):
        page._tick()
    # each refresh (60 ms) is followed by ceil(4 * 60 / 100) - 1 = 2 ticks left out
    assert len(calls) == 3
    reader.close()
    store.close()


def test_an_empty_store_says_searches_appear_when_they_start(tmp_path):
    TrialStore(f"sqlite:///{tmp_path / 's.db'}").close()
    reader = TrialStore(f"sqlite:///{tmp_path / 's.db'}", readonly=True)
    page = LivePage(reader, Document(), interval_ms=1000)
    assert "no search in this store yet" in page.best_div.text
    reader.close()


def test_a_port_in_use_is_one_line_naming_port(tmp_path, capsys):

    from dasktune.cli import main

    store = f"sqlite:///{tmp_path}/s.db"
    TrialStore(store).close()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", store, "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert f"port {port} on 127.0.0.1 is in use: give another with --port" in err
