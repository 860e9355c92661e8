"""dasktune serve: optuna-dashboard over a running search's store, read over HTTP.

A real search runs on worker processes; two of its trials report their curves
and wait, so that the store holds done and running trials while the test
reads it three ways — the store itself, ``optuna.load_study`` over
``dasktune.optuna_storage`` and optuna-dashboard's HTTP API (the routes of
``optuna_dashboard/_app.py``: ``/api/studies`` and ``/api/studies/<id>``) —
on SQLite and on a real PostgreSQL.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import optuna
import pytest
from distributed import Event
from distributed.utils_test import poll_for

import dasktune
from dasktune.records import Claim, canonical
from dasktune.search import Search
from dasktune.serve import make_server
from dasktune.store.sql import TrialStore

GO = "dasktune-test-serve-go"
STATES = {"done": "Complete", "running": "Running", "pruned": "Pruned",
          "failed": "Fail", "queued": "Waiting"}  # fmt: skip


def learn(params, trial):
    """Reports a curve of three steps; from x = 0.5 up, waits to be let go."""
    for step in range(3):
        trial.report(step, params["x"] / (step + 1))
    if params["x"] >= 0.5:
        Event(GO).wait(timeout=60)
    return params["x"]


def get(url):
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def in_store(url):
    """Each trial's (state, value, curve), as the store has them."""
    store = TrialStore(url, readonly=True)
    try:
        (row,) = store.list_searches()
        curves = store.curves(row["id"])
        return {
            t["number"]: (STATES[t["status"]], t["value"], curves.get(t["number"], []))
            for t in store.trials(row["id"])
        }
    finally:
        store.close()


def read_by_optuna(url):
    storage = dasktune.optuna_storage(url)
    study = optuna.load_study(study_name="live", storage=storage)
    trials = {
        t.number: (t.state.name.capitalize(), t.value,
                   sorted(t.intermediate_values.items()))
        for t in study.trials
    }  # fmt: skip
    storage.close()
    return trials


def read_by_dashboard(base):
    (study,) = get(base + "api/studies")["study_summaries"]
    assert study["study_name"] == "live"
    detail = get(base + f"api/studies/{study['study_id']}")
    return {
        t["number"]: (
            t["state"],
            t["values"][0] if "values" in t else None,
            [(v["step"], v["value"]) for v in t["intermediate_values"]],
        )
        for t in detail["trials"]
    }


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{tmp_path}/store.db"


def test_a_running_search_reads_the_same_in_optuna_and_the_dashboard(client, url):
    go = Event(GO, client=client)
    search = Search("live", learn, url, client=client)
    points = [{"x": x} for x in (0.1, 0.2, 0.6, 0.7)]
    runner = threading.Thread(
        target=search.run, args=(points,), kwargs={"progress": False}
    )
    runner.start()
    server = make_server(url, 0)
    server.start()
    try:

        def two_wait_with_their_curves():
            trials = in_store(url)
            states = sorted(s for s, _, _ in trials.values())
            curves = [len(c) for s, _, c in trials.values() if s == "Running"]
            return states == ["Complete", "Complete", "Running", "Running"] and (
                curves == [3, 3]
            )

        poll_for(two_wait_with_their_curves, timeout=60)
        expected = in_store(url)
        assert read_by_optuna(url) == expected
        assert read_by_dashboard(server.url) == expected
        go.set()
        runner.join(timeout=60)
        assert not runner.is_alive()
        finished = in_store(url)
        assert {s for s, _, _ in finished.values()} == {"Complete"}
        assert read_by_optuna(url) == finished
        # the dashboard keeps trials 2 s before reading again: live, not copied
        poll_for(lambda: read_by_dashboard(server.url) == finished, timeout=30)
    finally:
        go.set()
        runner.join(timeout=60)
        server.close()
        search.close()


def test_the_dashboard_refuses_edits_with_a_403_naming_them(tmp_path):
    # what a user clicks in optuna-dashboard, as its frontend sends it: each
    # answered 403 with the reason its error banner shows (not a 500 with
    # "internal server error"), and the store's files stay byte for byte
    store = TrialStore(tmp_path / "s.db")
    sid = store.open_search("s", space=None, direction="minimize", metadata={})
    driver = store.register_driver(sid)
    store.sync(sid, driver, [], [Claim(*reversed(canonical({"x": 1})))])  # running
    store.close()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with make_server(tmp_path / "s.db", 0) as server:
        server.start()
        assert server._server.server_address[0] == "127.0.0.1"
        (study,) = get(server.url + "api/studies")["study_summaries"]
        trial_id = get(server.url + f"api/studies/{study['study_id']}")["trials"][0][
            "trial_id"
        ]
        edits = [
            ("PUT", f"api/studies/{sid}/note", {"version": 1, "body": "hi"},
             "saving a note"),
            ("PUT", f"api/studies/{sid}/{trial_id}/note", {"version": 1, "body": "x"},
             "saving a note"),
            ("POST", f"api/trials/{trial_id}/user-attrs", {"user_attrs": {"k": 1}},
             "editing a trial's user attributes"),
            ("POST", f"api/trials/{trial_id}/tell", {"state": "Fail"},
             "marking a trial complete or failed"),
            ("POST", f"api/studies/{sid}/rename", {"study_name": "t"},
             "renaming a study"),
            ("DELETE", f"api/studies/{sid}", {}, "deleting a study"),
            ("POST", "api/studies", {"study_name": "new", "directions": ["minimize"]},
             "creating a study"),
        ]  # fmt: skip
        for method, path, body, what in edits:
            request = urllib.request.Request(
                server.url + path, data=json.dumps(body).encode(), method=method,
                headers={"Content-Type": "application/json"},
            )  # fmt: skip
            with pytest.raises(urllib.error.HTTPError) as failed:
                urllib.request.urlopen(request, timeout=30)
            assert failed.value.code == 403, (method, path)
            reason = json.loads(failed.value.read())["reason"]
            failed.value.close()
            assert reason.startswith("read-only: dasktune's store is written by its")
            assert f"{what} is refused on sqlite:///" in reason
            assert "dasktune export" in reason
        assert [s["study_name"] for s in get(server.url + "api/studies")[
            "study_summaries"]] == ["s"]  # fmt: skip
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert after == before


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_answers_over_http_from_a_subprocess(tmp_path):
    store = TrialStore(tmp_path / "s.db")
    store.open_search("first", space=None, direction="maximize", metadata={})
    store.close()
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dasktune", "serve", str(tmp_path / "s.db"),
         "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = proc.stdout.readline()  # printed once the server listens
        assert f"optuna-dashboard on http://127.0.0.1:{port}/" in line, (
            proc.stderr.read()
        )
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/dashboard", timeout=30
        ) as r:
            assert r.status == 200
        studies = get(f"http://127.0.0.1:{port}/api/studies")["study_summaries"]
        assert [(s["study_name"], s["directions"]) for s in studies] == [
            ("first", ["maximize"])
        ]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        stderr = proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
    assert "GET /api/studies" not in stderr  # no line per request by default


def test_bad_port_and_store(tmp_path, capsys):
    from dasktune.cli import main

    for bad in (-1, 65536, 1.5, True):
        with pytest.raises(
            ValueError, match=r"port must be an integer in \[0, 65535\]"
        ):
            make_server("sqlite://", bad)
    assert main(["serve", str(tmp_path / "missing.db")]) == 1
    assert "no store at" in capsys.readouterr().err


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
    assert len(err.strip().splitlines()) == 1
