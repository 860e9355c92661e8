"""The trial store at scale: 10^3 to 10^6 trials, SQLite and PostgreSQL, and Optuna.

Run: ``python benchmarks/bench_scale.py [--max-rows 1000000] [--pg-max-rows 100000]``
(needs ``pip install -e ".[test,bench]"``; PostgreSQL is started in a temporary
directory as the test suite does, and skipped with a note when it cannot be).

What is measured is the store and the driver's own work per trial, not Dask (its
~1 ms per task is measured by the other benchmarks): trials go through the same
objects a ``Search`` run uses — parameters hashed with ``canonical``, claimed and
recorded by ``StoreRecorder.sync`` in batches of 256, and, with a filter, kept
or dropped by ``Search``'s own filter (which sees the trials table, brought up to
date once per batch from the rows written since it last looked).

(a) trials/s as the store grows, with and without a filter, each measured over
    5,000 new trials at the size reached; between checkpoints the store is
    filled in bulk (the fill rate is printed too). On SQLite each window ends
    by copying its WAL back into the file (``wal_checkpoint``, timed with it):
    the writer does so only every 20,000 pages, so a window of 5,000 trials
    would hold none of it, or two, at random;
(b) re-running over done trials: deciding that 5,000 asked points are done
    (the driver's reuse path) against recording 5,000 new ones;
(c) ``search.trials()`` at each size: by the search that keeps its table (the
    rows since its last look; it keeps the table as the store's snapshot when
    enough rows came since the last one), then by a new ``Search`` (another
    process's first look: the snapshot and the rows after it), and what the
    same costs without a snapshot (every row converted); the snapshot's size,
    and the store's size per trial (snapshot included);
(e) end to end, on a LocalCluster: ``Search.run`` over a grid of 10^4 trivial
    trials, then the same grid again (every point done: nothing evaluated);
(f) SQLite's own floor: the store's writes by ``sqlite3`` alone on a bare
    table of the same shape, at the smallest and largest size, with and
    without the unique index on the parameter hash: how much of the write
    rate's fall at 10^6 is SQLite's, not dasktune's;
(d) Optuna 5 with the same SQLite file and PostgreSQL server, at 10^4 trials
    (pre-filled with ``add_trials``): trials/s of ``study.optimize`` with a
    trivial objective, against dasktune's rate at the same size.

Targets (one run; the machine is shared, so ratios, not absolute times):
trials/s at 10^6 rows >= 80% of that at 10^3 (SQLite), with and without a
filter; a re-run >= 5x faster than evaluating; ``trials()`` <= 3 s at 10^6 and
<= 0.3 s at 10^5.

Why a snapshot: converting the rows cannot meet the ``trials()`` target. A
million rows of 16 fields are 16 million cells, each ~850 instructions in
CPython's ``sqlite3`` (about half of them SQLite's connection mutex), and one
JSON parse of the parameters: 10 s at 10^6 in the run before snapshots.
Gathering the fields in SQL (``json_group_array``) cost more than it saved;
floats cannot travel as text (SQLite 3.40's ``printf('%!.17g')`` missed 572 of
10^6 doubles); ADBC's SQLite driver (Arrow columns, in C) read 10^5 rows no
faster than ``sqlite3`` (0.39-0.42 s against 0.4-0.5 s); reading in the
table's own order rather than by number saved nothing measurable at 10^5.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dasktune.records import Claim, Outcome, TrialStatus, canonical
from dasktune.search import Search
from dasktune.store import StoreRecorder, TrialStore
from dasktune.table import TrialTable

BATCH = 256
MEASURE = 5_000


def objective(params: dict) -> float:
    return (params["x"] - 0.5) ** 2 + params["k"]


def params_of(i: int) -> dict:
    return {"x": (i % 9973) / 9973, "k": i % 7, "i": i}


def keep_small_k(params: dict, trials: pd.DataFrame) -> bool:
    # a filter that looks at the table, as optomatic's do
    return params["k"] < 6 or len(trials) % 2 == 0


class Rig:
    """One search on one store, driven the way the driver drives a recorder."""

    def __init__(self, url: str) -> None:
        self.store = TrialStore(url)
        self.search = Search("scale", objective, self.store)
        self.driver = self.store.register_driver(self.search.search_id)
        self.recorder = StoreRecorder(
            self.store, self.search.search_id, self.driver, False, 30.0
        )
        self.n = 0  # parameter sets asked so far

    def claims(self, start: int, count: int) -> list[Claim]:
        return [
            Claim(*reversed(canonical(params_of(i))))
            for i in range(start, start + count)
        ]

    def run(self, count: int, keep=None) -> float:
        """Claim, evaluate (in-process) and record ``count`` new trials; trials/s."""
        started = time.perf_counter()
        outcomes: list[Outcome] = []
        done = 0
        while done < count:
            batch = self.claims(self.n, BATCH)
            self.n += BATCH
            if keep is not None:
                batch = [c for c in batch if keep(c.params)]
            decisions = self.recorder.sync(outcomes, batch)
            outcomes = []
            now = time.time()
            for claim, decision in zip(batch, decisions, strict=True):
                if decision.kind == "evaluate":
                    value = objective(claim.params)
                    outcomes.append(
                        Outcome(claim.param_hash, TrialStatus.DONE, value=value,
                                started=now, finished=now, duration=1e-6)
                    )  # fmt: skip
            done += len(outcomes)
        self.recorder.sync(outcomes, [])
        self.checkpoint()  # what these trials wrote, copied back: their cost
        return done / (time.perf_counter() - started)

    def checkpoint(self) -> None:
        """Copy a SQLite store's WAL back into its file, as its writer does every
        20,000 pages (80 MB): a window of 5,000 trials may hold no checkpoint
        of its own, or two, so each window is charged for copying back what it
        wrote (PostgreSQL's checkpoints are its server's own work)."""
        if self.store.engine.dialect.name == "sqlite":
            raw = self.store.engine.raw_connection()  # outside any transaction
            try:
                raw.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
            finally:
                raw.close()

    def reuse(self, count: int) -> float:
        """Decide that ``count`` asked points are done already; points/s."""
        started = time.perf_counter()
        burst = self.recorder.reuse_burst  # the driver's, on this store
        for start in range(0, count, burst):
            decisions = self.recorder.sync(
                [], self.claims(start, min(burst, count - start))
            )
            assert all(d.kind == "done" for d in decisions)
        return count / (time.perf_counter() - started)

    def fill(self, target: int) -> float:
        """Bulk-fill up to ``target`` done trials; trials/s."""
        started, before = time.perf_counter(), self.n
        while self.n < target:
            count = min(5_000, target - self.n)
            batch = self.claims(self.n, count)
            self.n += count
            self.recorder.sync([], batch)
            now = time.time()
            self.recorder.sync(
                [Outcome(c.param_hash, TrialStatus.DONE, value=objective(c.params),
                         started=now, finished=now, duration=1e-6) for c in batch],
                [],
            )  # fmt: skip
        self.checkpoint()  # the next window starts with nothing to copy back
        return (self.n - before) / max(time.perf_counter() - started, 1e-9)

    def size_per_trial(self) -> float:
        """The database's bytes per trial, snapshots included; for SQLite, its
        file (the WAL, up to 80 MB and cut back to 16 MB, is not the store's
        size: a closed store has none)."""
        url = self.store.engine.url
        if url.get_backend_name() == "sqlite":
            total = Path(url.database or "").stat().st_size
        else:
            with self.store.engine.connect() as conn:
                total = conn.exec_driver_sql(
                    "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = 'public' AND c.relkind = 'r'"
                ).scalar_one()
        return float(total) / max(self.n, 1)


def bench_backend(label: str, url: str, sizes: list[int]) -> list[dict]:
    rig = Rig(url)
    keep = rig.search._keeper([keep_small_k], rig.recorder)
    rows = []
    for size in sizes:
        fill_rate = rig.fill(size)
        at = rig.n
        plain = rig.run(MEASURE)
        keep(params_of(0))  # the filter's table catches up with the bulk fill
        filtered = rig.run(MEASURE, keep=keep)
        reuse = rig.reuse(MEASURE)
        started = time.perf_counter()
        # the search's own table: the rows since it last looked; it keeps the
        # table as the store's snapshot when enough rows came since the last
        rig.search.trials()
        again_s = time.perf_counter() - started
        kept = rig.store.read_snapshot(rig.search.search_id)
        snapshot_mb = len(kept[1]) / 1e6 if kept is not None else 0.0
        started = time.perf_counter()  # a new reader (another process)
        rows_read = len(Search("scale", objective, rig.store).trials())
        trials_s = time.perf_counter() - started
        # what trials() costs a new reader that finds no snapshot: every row
        started = time.perf_counter()
        table = TrialTable()
        table.update_columns(rig.store.read_columns(rig.search.search_id)[1])
        assert len(table.frame(copy=True)) == rows_read
        rows_s = time.perf_counter() - started
        row = {
            "store": label,
            "rows": at,
            "stored": rows_read,
            "fill/s": round(fill_rate),
            "trials/s": round(plain),
            "with filter/s": round(filtered),
            "re-run/s": round(reuse),
            "re-run ratio": round(reuse / plain, 1),
            "trials() s": round(trials_s, 3),
            "no snapshot s": round(rows_s, 3),
            "again s": round(again_s, 4),
            "snapshot MB": round(snapshot_mb, 1),
            "bytes/trial": round(rig.size_per_trial()),
        }
        rows.append(row)
        print(row, f"load {os.getloadavg()[0]:.1f}", flush=True)
    rig.store.close()
    return rows


def bench_rerun(folder: str, n: int = 10_000) -> tuple[float, float]:
    """``Search.run`` over ``n`` new grid points, then over the same, done."""
    from distributed import Client, LocalCluster

    grid = [params_of(i) for i in range(n)]
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                     host="127.0.0.1", dashboard_address=None) as cluster,
        Client(cluster) as client,
        Search("rerun", objective, f"sqlite:///{folder}/rerun.db",
               client=client) as search,
    ):  # fmt: skip
        started = time.perf_counter()
        report = search.run(grid, progress=False)
        fresh = time.perf_counter() - started
        assert report.evaluated == n
        started = time.perf_counter()
        report = search.run(grid, progress=False)
        again = time.perf_counter() - started
        assert report.reused == n and report.evaluated == 0
    return n / fresh, n / again


def bench_bare_sqlite(folder: str, sizes: list[int]) -> list[dict]:
    """SQLite's own floor: a bare table of the trials table's shape, written
    as the store writes it (per batch of 256: look the hashes up, insert them
    running, mark the batch before done; one transaction each; each window
    charged for its checkpoint), by ``sqlite3`` alone, with and without the
    unique index on (search, parameter hash) that makes claims exact."""
    import hashlib
    import sqlite3

    columns = (
        "search_id, number, param_hash, params, status, value, worker, host, "
        "attempts, driver_id, created, started, finished, duration, seq"
    )
    marks = ",".join("?" * 15)

    def row(i: int, status: str) -> tuple:
        now = time.time()
        return (1, i, hashlib.sha256(str(i).encode()).hexdigest(),
                f'{{"i":{i},"k":{i % 7},"x":{(i % 9973) / 9973!r}}}', status, 0.25,
                "tcp://127.0.0.1:40000", "host", 1, "0123456789abcdef", now, now,
                now, 1e-6, i)  # fmt: skip

    rows = []
    for indexed in (True, False):
        for size in (sizes[0], sizes[-1]):
            path = Path(folder) / f"bare-{indexed}-{size}.db"
            con = sqlite3.connect(path, isolation_level=None)
            for pragma in ("journal_mode=WAL", "synchronous=NORMAL",
                           "wal_autocheckpoint=20000", "cache_size=-65536"):  # fmt: skip
                con.execute(f"PRAGMA {pragma}")
            con.execute(
                "CREATE TABLE trials (id INTEGER PRIMARY KEY, search_id INT NOT NULL, "
                "number INT NOT NULL, param_hash VARCHAR(64) NOT NULL, params TEXT, "
                "status VARCHAR(8), value REAL, worker TEXT, host TEXT, attempts INT, "
                "driver_id TEXT, created REAL, started REAL, finished REAL, "
                "duration REAL, seq INT, UNIQUE (search_id, number))"
            )
            if indexed:
                con.execute("CREATE UNIQUE INDEX uq ON trials (search_id, param_hash)")
            con.execute("CREATE INDEX ix_status ON trials (search_id, status)")
            con.execute("CREATE INDEX ix_seq ON trials (search_id, seq)")
            insert = f"INSERT INTO trials ({columns}) VALUES ({marks})"
            con.execute("BEGIN")
            con.executemany(insert, (row(i, "done") for i in range(size)))
            con.execute("COMMIT")
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            started, n, last = time.perf_counter(), size, size
            while n < size + MEASURE:
                batch = [row(i, "running") for i in range(n, n + BATCH)]
                con.execute("BEGIN IMMEDIATE")
                con.execute(
                    "UPDATE trials SET status = 'done', seq = ? "
                    "WHERE search_id = 1 AND number >= ? AND number < ?",
                    (n, last, n),
                )
                if indexed:  # the claims' lookup (without the index: a scan)
                    hashes = [r[2] for r in batch]
                    con.execute(
                        "SELECT number FROM trials WHERE search_id = 1 AND "
                        f"param_hash IN ({','.join('?' * len(hashes))})",
                        hashes,
                    ).fetchall()
                con.executemany(insert, batch)
                con.execute("COMMIT")
                last, n = n, n + BATCH
            con.execute("PRAGMA wal_checkpoint(PASSIVE)")
            rate = (n - size) / (time.perf_counter() - started)
            con.close()
            path.unlink()
            rows.append({"unique hash index": indexed, "rows": size, "trials/s": rate})
    return rows


def bench_optuna(url: str, n_prefill: int, n_measure: int = 200) -> tuple[float, float]:
    import optuna
    from optuna.distributions import FloatDistribution, IntDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=url, study_name="scale")
    dists = {"x": FloatDistribution(0, 1), "k": IntDistribution(0, 6)}
    started = time.perf_counter()
    for start in range(0, n_prefill, 1000):
        study.add_trials(
            [
                optuna.trial.create_trial(
                    params={"x": params_of(i)["x"], "k": params_of(i)["k"]},
                    distributions=dists,
                    value=objective(params_of(i)),
                )
                for i in range(start, min(start + 1000, n_prefill))
            ]
        )
    fill = n_prefill / (time.perf_counter() - started)

    def trial_objective(trial: optuna.Trial) -> float:
        return objective(
            {"x": trial.suggest_float("x", 0, 1), "k": trial.suggest_int("k", 0, 6)}
        )

    study.sampler = optuna.samplers.RandomSampler(seed=0)
    started = time.perf_counter()
    study.optimize(trial_objective, n_trials=n_measure)
    return fill, n_measure / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-rows", type=int, default=1_000_000)
    parser.add_argument("--pg-max-rows", type=int, default=100_000)
    parser.add_argument("--optuna-rows", type=int, default=10_000)
    args = parser.parse_args()
    sizes = [s for s in (1_000, 10_000, 100_000, 1_000_000) if s <= args.max_rows]
    pg_sizes = [s for s in sizes if s <= args.pg_max_rows]
    folder = tempfile.mkdtemp(prefix="dasktune-scale-")
    print(f"load average at start: {os.getloadavg()}")
    results = bench_backend("sqlite", f"sqlite:///{folder}/scale.db", sizes)

    server = None
    pg_url = None
    try:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from postgres import PostgresServer, _binaries

        bindir = _binaries()
        if bindir is not None:
            server = PostgresServer(bindir)
            server.start()
            pg_url = server.create_database()
    except Exception as err:  # the comparison is optional: say why it is missing
        print(f"PostgreSQL skipped: {err}")
    try:
        if pg_url is not None:
            results += bench_backend("postgresql", pg_url, pg_sizes)
        frame = pd.DataFrame(results)
        print()
        print(frame.to_string(index=False))
        for store, part in frame.groupby("store"):
            first, last = part.iloc[0], part.iloc[-1]
            print(
                f"{store}: trials/s at {last['rows']:,} rows = "
                f"{last['trials/s'] / first['trials/s']:.2f}x that at {first['rows']:,} "
                f"(target >= 0.8); with a filter {last['with filter/s'] / first['with filter/s']:.2f}x; "
                f"re-run {last['re-run ratio']}x faster than evaluating (target >= 5); "
                f"trials() {last['trials() s']} s"
            )
        fresh, again = bench_rerun(folder)
        print(
            f"\nSearch.run end to end (LocalCluster, 2 processes): 10,000 new grid "
            f"points {fresh:,.0f} trials/s; the same grid again, all done: "
            f"{again:,.0f}/s ({again / fresh:.1f}x faster; target >= 5)"
        )
        bare = bench_bare_sqlite(folder, sizes)
        print("\nSQLite alone (sqlite3, the same writes, no dasktune):")
        for indexed in (True, False):
            small, large = (r for r in bare if r["unique hash index"] is indexed)
            print(
                f"  {'with' if indexed else 'without'} the unique hash index: "
                f"{small['trials/s']:,.0f} trials/s at {small['rows']:,} rows, "
                f"{large['trials/s']:,.0f} at {large['rows']:,} "
                f"({large['trials/s'] / small['trials/s']:.2f}x)"
            )
        print()
        peers = [("sqlite", f"sqlite:///{folder}/optuna.db")]
        if server is not None:
            peers.append(("postgresql", server.create_database()))
        for label, url in peers:
            fill, rate = bench_optuna(url, args.optuna_rows)
            ours = frame[frame["store"] == label]
            near = ours.iloc[(ours["rows"] - args.optuna_rows).abs().argmin()]
            print(
                f"Optuna on {label} at {args.optuna_rows:,} trials: {rate:.0f} trials/s "
                f"(add_trials fill {fill:.0f}/s); dasktune's store at "
                f"{near['rows']:,} rows: {near['trials/s']:,} trials/s "
                f"({near['trials/s'] / rate:.0f}x)"
            )
    finally:
        if server is not None:
            server.stop()
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
