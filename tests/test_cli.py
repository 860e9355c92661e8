"""The dasktune command: demo, run, show, and their error paths."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dasktune.cli import main

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


def test_unknown_search_name(tmp_path, capsys):
    from dasktune.store.sql import TrialStore

    url = f"sqlite:///{tmp_path}/s.db"
    TrialStore(url).open_search("known", space=None, direction="minimize", metadata={})
    assert main(["show", url, "--name", "unknown"]) == 1
    assert "no search named 'unknown'" in capsys.readouterr().err


def test_debug_shows_the_traceback_and_module_entry_point():
    done = subprocess.run(
        [sys.executable, "-m", "dasktune", "--debug", "run", "no/such/file.py"],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "CLIError" in done.stderr


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
