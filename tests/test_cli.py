"""The dasktune command: demo, run, show, and their error paths."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dasktune.cli import main
from tests.deploy import dask_processes, write_certificates

ROOT = Path(__file__).resolve().parents[1]


def test_demo_end_to_end_and_second_run_reuses(tmp_path, capsys):
    store = str(tmp_path / "demo.db")
    assert main(["demo", "--store", store, "--n-workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "dashboard: http://127.0.0.1:" in out
    for method in ("SPSA", "minimize (DE)", "Search (grid)"):
        assert method in out
    spsa = next(line for line in out.splitlines() if line.startswith("SPSA"))
    assert abs(float(spsa.split()[1]) - 1.5) < 0.05  # the fitted mean
    assert main(["demo", "--store", store, "--n-workers", "2"]) == 0
    again = capsys.readouterr().out
    assert "reused 63 stored trials" in again
    de = next(line for line in again.splitlines() if line.startswith("minimize"))
    assert de.split()[-2] == "0"  # nothing evaluated again


# the demo's whole import path, with scikit-learn (a test extra only) unimportable
WITHOUT_SKLEARN = (
    "import sys; sys.modules['sklearn'] = None; "
    "from dasktune.cli import main; sys.exit(main(sys.argv[1:]))"
)


def test_demo_needs_no_sklearn_and_prints_the_dashboard_once(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_SKLEARN, "demo", "--store",
         str(tmp_path / "demo.db"), "--n-workers", "1"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Search (grid)" in done.stdout
    assert "sklearn" not in done.stderr
    assert (done.stdout + done.stderr).count("dashboard") == 1


def test_grid_is_every_combination():
    from dasktune.cli import _grid

    grid = _grid({"a": [1, 2, 3], "b": ["x", "y"]})
    assert len(grid) == 6
    assert {(p["a"], p["b"]) for p in grid} == {
        (a, b) for a in (1, 2, 3) for b in ("x", "y")
    }


def test_run_and_show(tmp_path, capsys):
    store = f"sqlite:///{tmp_path}/run.db"
    example = str(ROOT / "examples" / "grid_search.py")
    assert main(["run", example, "--store", store, "--n-workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "example-grid: 24 evaluated" in out
    assert "best: 0 at" in out
    assert main(["show", store]) == 0
    listing = capsys.readouterr().out
    assert "example-grid" in listing and "24" in listing
    assert main(["show", store, "--name", "example-grid", "--top", "3"]) == 0
    table = capsys.readouterr().out
    assert "24 trials, 24 done" in table
    assert main(["show", store, "--name", "example-grid", "--format", "json"]) == 0
    best = json.loads(capsys.readouterr().out)
    assert len(best) == 10 and best[0]["value"] == 0.0 and best[0]["kind"] == "a"
    assert (
        main(["show", store, "--name", "example-grid", "--format", "csv", "--top", "2"])
        == 0
    )
    assert capsys.readouterr().out.splitlines()[0].startswith("number,value")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "no/such/file.py"], "no such file: no/such/file.py"),
        (["show", "missing.db"], "no store at missing.db"),
        (["show", "nosuchdb://x"], "cannot open the store"),
        (
            [
                "run",
                str(ROOT / "examples" / "grid_search.py"),
                "--scheduler",
                "tcp://127.0.0.1:9",
                "--connect-timeout",
                "1",
            ],
            "cannot reach the scheduler at tcp://127.0.0.1:9",
        ),
    ],
)
def test_errors_are_one_line_and_exit_non_zero(argv, message, capsys):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dasktune: error:")
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize("value", ["0", "-2", "two"])
@pytest.mark.parametrize(
    "argv",
    [["demo", "--n-workers"], ["run", "x.py", "--n-trials"], ["show", "x.db", "--top"]],
)
def test_counts_below_one_are_refused_by_argparse(argv, value, capsys):
    # before anything starts: no cluster, no store
    with pytest.raises(SystemExit) as info:
        main([*argv, value])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"{argv[-1]}: must be an integer >= 1, got '{value}'" in err


def test_a_space_without_n_trials_says_which_flag(tmp_path, capsys):
    script = tmp_path / "space_only.py"
    script.write_text(
        "from dasktune import Float\n"
        "space = {'x': Float(0, 1)}\n"
        "def objective(p):\n    return p['x']\n"
    )
    store = tmp_path / "s.db"
    assert main(["run", str(script), "--store", str(store)]) == 1
    assert "give --n-trials N to sample it at random" in capsys.readouterr().err
    assert not store.exists()  # refused before a search was made


def test_unknown_search_name(tmp_path, capsys):
    from dasktune.store.sql import TrialStore

    url = f"sqlite:///{tmp_path}/s.db"
    TrialStore(url).open_search("known", space=None, direction="minimize", metadata={})
    assert main(["show", url, "--name", "unknown"]) == 1
    assert "no search named 'unknown'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [["--debug", "run", "no/such/file.py"], ["run", "no/such/file.py", "--debug"]],
    ids=["before the command", "after it"],
)
def test_debug_shows_the_traceback_and_module_entry_point(argv):
    done = subprocess.run(
        [sys.executable, "-m", "dasktune", *argv],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "CLIError" in done.stderr


def test_jobs_without_a_cluster_is_refused(capsys):
    with pytest.raises(SystemExit) as info:
        main(["run", "x.py", "--jobs", "3"])
    assert info.value.code == 2
    assert "--jobs needs --cluster" in capsys.readouterr().err


def test_demo_with_a_store_it_cannot_open_fails_before_any_work(tmp_path, capsys):
    assert main(["demo", "--store", str(tmp_path / "no" / "such" / "d.db")]) == 1
    out, err = capsys.readouterr()
    assert "no/such does not exist" in err
    assert "dashboard" not in out  # no cluster was started, no data loaded


def test_run_with_an_objective_that_is_not_a_function_starts_nothing(tmp_path, capsys):
    script = tmp_path / "five.py"
    script.write_text("objective = 5\nsource = [{'x': 1}]\n")
    store = tmp_path / "s.db"
    assert main(["run", str(script), "--store", str(store)]) == 1
    out, err = capsys.readouterr()
    assert "`objective` must be a function of a parameter dict, got int: 5" in err
    assert "dashboard" not in out and not store.exists()


def test_run_of_a_file_that_fails_to_import_names_the_file(tmp_path, capsys):
    script = tmp_path / "needs.py"
    script.write_text("import sklearnx\n")
    assert main(["run", str(script), "--store", str(tmp_path / "s.db")]) == 1
    err = capsys.readouterr().err
    assert f"running {script} failed: ModuleNotFoundError" in err
    assert (
        "install the package that provides sklearnx, here and where the workers" in err
    )


def test_show_into_a_closed_pipe_stops_quietly(tmp_path, monkeypatch, capsys):
    from dasktune.store.sql import TrialStore

    url = f"sqlite:///{tmp_path}/s.db"
    TrialStore(url).open_search("known", space=None, direction="minimize", metadata={})
    read, write = os.pipe()
    os.close(read)  # the reader (`| head`) is gone: writes fail with EPIPE
    with os.fdopen(write, "w", buffering=1) as closed:
        monkeypatch.setattr(sys, "stdout", closed)
        assert main(["show", url]) == 1
        monkeypatch.undo()
    assert capsys.readouterr().err == ""  # no "error: BrokenPipeError"


def test_show_on_a_foreign_sqlite_file_writes_nothing(tmp_path, capsys):
    import sqlite3

    path = tmp_path / "foreign.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE trials (id INTEGER PRIMARY KEY)")
    con.commit()
    con.close()
    before = path.read_bytes()
    assert main(["show", str(path)]) == 1
    assert "not a dasktune store" in capsys.readouterr().err
    assert path.read_bytes() == before
    assert not (tmp_path / "foreign.db-wal").exists()


def test_show_on_postgresql_hides_the_password_and_is_read_only(postgres_url, capsys):
    import sqlalchemy as sa

    from dasktune.store.sql import TrialStore

    assert main(["show", postgres_url]) == 1  # an empty database: nothing created
    assert "none of dasktune's tables" in capsys.readouterr().err
    engine = sa.create_engine(postgres_url)
    assert sa.inspect(engine).get_table_names() == []
    engine.dispose()
    store = TrialStore(postgres_url)
    store.open_search("known", space=None, direction="minimize", metadata={})
    store.close()
    assert main(["show", postgres_url]) == 0
    assert "known" in capsys.readouterr().out
    assert main(["show", postgres_url, "--name", "unknown"]) == 1
    err = capsys.readouterr().err
    assert "no search named 'unknown'" in err and "s3cret" not in err


# -- dasktune run as `python FILE.py` would, against separately started workers --

SCRIPT = """
from helper import shifted_square  # a module beside this file

name = "beside"
source = [{"x": float(x)} for x in range(4)]


def objective(params):
    return shifted_square(params["x"])
"""

FAILING = """
source = [{"x": x} for x in range(3)]


def objective(params):
    raise ValueError(f"no good: {params['x']}")
"""


def _project(tmp_path: Path, helper_body: str = "return (x - 2.0) ** 2") -> Path:
    project = tmp_path / "project"
    project.mkdir()
    (project / "helper.py").write_text(f"def shifted_square(x):\n    {helper_body}\n")
    (project / "search.py").write_text(SCRIPT)
    return project


def _dasktune(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # the checkout under test, and no folder of the search's own modules
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "dasktune", *argv],
        capture_output=True, text=True, cwd=cwd, timeout=120, env=env,
    )  # fmt: skip


def test_run_ships_a_sibling_module_to_workers_started_elsewhere(tmp_path):
    project = _project(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    store = str(tmp_path / "run.db")
    with dask_processes(elsewhere, workers=2) as address:
        done = _dasktune("run", str(project / "search.py"), "--store", store,
                         "--scheduler", address, cwd=tmp_path)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "4 evaluated, 0 failed" in done.stdout
        assert "best: 0 at {'x': 2.0}" in done.stdout
        # an edited helper is shipped afresh (by value, not a stale upload)
        (project / "helper.py").write_text("def shifted_square(x):\n    return -x\n")
        (project / "search.py").write_text(
            SCRIPT.replace('"beside"', '"edited"').replace("range(4)", "range(5)")
        )
        done = _dasktune("run", str(project / "search.py"), "--store", store,
                         "--scheduler", address, cwd=tmp_path)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "best: -4 at {'x': 4.0}" in done.stdout


def test_run_exits_non_zero_when_every_trial_failed(tmp_path):
    (tmp_path / "failing.py").write_text(FAILING)
    store = str(tmp_path / "fail.db")
    argv = ("run", "failing.py", "--store", store, "--n-workers", "1")
    first = _dasktune(*argv, cwd=tmp_path)
    assert first.returncode == 1
    assert "0 evaluated, 3 failed" in first.stdout
    assert "search 'failing' has no successful trial yet (3 trials, 3 failed)" in (
        first.stderr
    )
    assert "ValueError: no good: 2" in first.stderr
    assert "RuntimeWarning" not in first.stderr  # the command's own words only
    # the hint names this store and search, and the command it gives lists them
    assert f"dasktune show {store} --name failing --status failed" in first.stderr
    again = _dasktune(*argv, cwd=tmp_path)  # nothing new to run: the same summary
    assert again.returncode == 1
    assert "has no successful trial yet" in again.stderr
    assert "Traceback" not in again.stderr
    listed = _dasktune("show", store, "--name", "failing", "--status", "failed",
                       cwd=tmp_path)  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert "failed trials, newest first:" in listed.stdout
    for x in range(3):
        assert f"ValueError: no good: {x}" in listed.stdout
    best = _dasktune("show", store, "--name", "failing", cwd=tmp_path)
    assert "(no done trial yet; --status failed lists the failed ones" in best.stdout


@pytest.mark.parametrize("form", ["user:pw@", "?password="])
def test_the_all_failed_hint_hides_a_postgresql_password(tmp_path, postgres_url, form):
    (tmp_path / "failing.py").write_text(FAILING)
    url = postgres_url
    if form == "?password=":
        url = url.replace(":s3cret-pw@", "@") + "?password=s3cret-pw"
    done = _dasktune("run", "failing.py", "--store", url, "--n-workers",
                     "1", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 1
    assert "--name failing --status failed" in done.stderr
    assert "s3cret" not in done.stdout + done.stderr and "***" in done.stderr


def test_tls_flags_reach_a_tls_scheduler(tmp_path):
    project = _project(tmp_path)
    certs = write_certificates(tmp_path)
    with dask_processes(tmp_path, tls=certs) as address:
        flags = [item for pair in certs.items() for item in pair]
        done = _dasktune("run", str(project / "search.py"), "--store",
                         str(tmp_path / "tls.db"), "--scheduler", address, *flags,
                         cwd=tmp_path)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "4 evaluated" in done.stdout
        without = _dasktune("run", str(project / "search.py"), "--store",
                            str(tmp_path / "tls.db"), "--scheduler", address,
                            cwd=tmp_path)  # fmt: skip
    assert without.returncode == 1
    assert "is a TLS address: pass security=" in without.stderr
    assert "--tls-ca-file" in without.stderr


def test_a_scheduler_without_workers_times_out(tmp_path):
    project = _project(tmp_path)
    with dask_processes(tmp_path, workers=0) as address:
        done = _dasktune("run", str(project / "search.py"), "--store",
                         str(tmp_path / "none.db"), "--scheduler", address,
                         "--worker-timeout", "2", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 1
    assert f"no worker joined {address} within 2 s (--worker-timeout)" in done.stderr


def test_run_and_show_two_objectives_under_a_constraint(tmp_path, capsys):
    store = f"sqlite:///{tmp_path}/run.db"
    example = str(ROOT / "examples" / "two_objectives.py")
    assert main(["run", example, "--store", store, "--n-workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "16 evaluated" in out and "Pareto front:" in out
    name = "example-two-objectives"
    assert main(["show", store, "--name", name, "--format", "json"]) == 0
    front = json.loads(capsys.readouterr().out)
    sizes = [t["size"] for t in front]  # the example's metric names
    assert front and max(sizes) <= 48  # over 48 units never fits: never shown
    errors = [t["error"] for t in front]
    assert errors == sorted(errors)  # by first objective
    assert sizes == sorted(
        sizes, reverse=True
    )  # a front: each trades one for the other
    assert main(["show", store, "--format", "json"]) == 0  # every direction listed
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["direction"] == "minimize, minimize"


def test_show_keeps_an_int_parameter_an_int_beside_floats():
    from dasktune.cli import _frame

    frame = _frame([{"C": 0.1, "value": 1.0}, {"C": 1, "value": 2.0}])
    assert list(frame["C"]) == [0.1, 1] and type(frame["C"][1]) is int
    assert " 1 " in frame.to_string(index=False) + " "  # shown as 1, not 1.0
    assert frame["value"].dtype == float  # columns of one kind keep their dtype


def test_show_keeps_an_int_parameter_an_int_where_some_trials_lack_it():
    from dasktune.cli import _frame

    frame = _frame([{"layers": 3}, {"other": 0.5}])
    assert frame["layers"][0] == 3 and type(frame["layers"][0]) is int


FAILING_TWO = """
directions = ["minimize", "maximize"]
source = [{"x": x} for x in range(3)]


def objective(params):
    raise ValueError(f"no good: {params['x']}")
"""


def test_two_objectives_with_every_trial_failed(tmp_path, capsys):
    (tmp_path / "failing.py").write_text(FAILING_TWO)
    store = str(tmp_path / "fail.db")
    argv = ["run", str(tmp_path / "failing.py"), "--store", store, "--n-workers", "1"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "has no successful trial yet (3 trials, 3 failed)" in err
    assert main(argv) == 1  # again, nothing new to run: still no result
    assert "has no successful trial yet" in capsys.readouterr().err
    # show's front of an all-failed search is empty, not a crash
    assert main(["show", store, "--name", "failing", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["show", store, "--name", "failing"]) == 0
    assert "(no done trial yet; --status failed" in capsys.readouterr().out
    assert main(["show", store, "--name", "failing", "--status", "all",
                 "--format", "json"]) == 0  # fmt: skip
    rows = json.loads(capsys.readouterr().out)
    assert [r["number"] for r in rows] == [2, 1, 0]  # newest first
    assert {"values_0", "values_1", "error"} <= set(rows[0])
    assert rows[0]["error"] == "ValueError: no good: 2"


def test_run_with_a_store_it_cannot_open_starts_no_cluster(tmp_path, capsys):
    script = tmp_path / "ok.py"
    script.write_text("source = [{'x': 1}]\n\ndef objective(p):\n    return p['x']\n")
    assert main(["run", str(script), "--store", str(tmp_path / "no" / "s.db")]) == 1
    out, err = capsys.readouterr()
    assert "no does not exist" in err and "dashboard" not in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["show", "s.db", "--status", "failed"], "--status needs --name"),
        (["run", "x.py", "--cluster", "slurm", "--jobs", "0"],
         "--jobs: must be an integer >= 1"),
    ],
)  # fmt: skip
def test_usage_errors_before_anything_runs(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_show_into_head_through_a_real_pipe_stops_quietly(tmp_path):
    from dasktune.records import Claim, canonical
    from dasktune.store.sql import TrialStore

    url = f"sqlite:///{tmp_path}/big.db"
    store = TrialStore(url)
    sid = store.open_search("big", space=None, direction="minimize", metadata={})
    driver = store.register_driver(sid)
    claims = [Claim(*reversed(canonical({"x": i}))) for i in range(5000)]
    store.sync(sid, driver, [], claims)  # 5,000 rows: more than a pipe holds
    store.close()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    show = subprocess.Popen(
        [sys.executable, "-m", "dasktune", "show", url, "--name", "big",
         "--status", "all", "--top", "100000", "--format", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env,
    )  # fmt: skip
    assert show.stdout is not None and show.stderr is not None
    assert show.stdout.read(10)  # `| head -c 10`: read a little, then go away
    show.stdout.close()
    err = show.stderr.read().decode()
    assert show.wait(timeout=60) == 1
    assert err == ""  # not "dasktune: error: BrokenPipeError"


def test_a_broken_pipe_elsewhere_is_reported(monkeypatch, capsys):
    import dasktune.cli as cli

    def broken(args):
        raise BrokenPipeError(32, "Broken pipe (a socket, not stdout)")

    monkeypatch.setattr(cli, "_show", broken)  # the parser binds it on each call
    assert main(["show", "x.db"]) == 1
    assert "error: BrokenPipeError" in capsys.readouterr().err  # stdout is fine
