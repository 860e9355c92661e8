"""dasktune.optuna_storage on a large store, against Optuna's own RDBStorage.

Run: ``python benchmarks/bench_optuna_storage.py [--trials 100000] [--peer 10000]``

A SQLite store gets ``--trials`` done trials (and 100 running ones that reported
a curve of 10 steps). Measured, medians:

(a) the first read of a study's trials (every trial converted);
(b) a read when nothing changed, and after 100 new trials: what optuna-dashboard
    does each time it re-reads a live study (only the rows changed since the
    last read are read and converted, and the running trials' curves);
(c) one poll of optuna-dashboard's study API (``/api/studies/<id>?after=N``,
    the browser's request for the trials it lacks) through its WSGI app, and
    the share of a core it costs at the dashboard's fastest refresh (every 5 s);
(d) the peer: the same ``--peer`` trials exported into Optuna's own
    ``RDBStorage`` (SQLite), read with ``get_all_trials``, against this
    storage's first read and re-read of the same trials.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import optuna
import optuna_dashboard
from _timing import median_seconds

import dasktune
from dasktune.export import to_optuna
from dasktune.records import Claim, Outcome, TrialStatus, canonical
from dasktune.space import Float, Int, Space
from dasktune.store.sql import TrialStore

SPACE = Space({"x": Float(-5.0, 5.0), "n": Int(1, 64)})


def fill(store: TrialStore, name: str, n: int, start: int = 0) -> None:
    sid = store.open_search(name, space=SPACE.to_json(), direction="minimize",
                            metadata={})  # fmt: skip
    driver = store.register_driver(sid)
    for first in range(start, start + n, 1000):
        points = [{"x": (i % 9973) / 997.3 - 5.0, "n": 1 + i % 64}
                  for i in range(first, min(first + 1000, start + n))]  # fmt: skip
        claims = [Claim(*reversed(canonical(p))) for p in points]
        store.sync(sid, driver, [], claims)
        now = time.time()
        store.sync(sid, driver, [
            Outcome(c.param_hash, TrialStatus.DONE, value=c.params["x"] ** 2,
                    started=now - 1, finished=now, duration=1.0)
            for c in claims
        ], [])  # fmt: skip


def running(store: TrialStore, name: str) -> None:
    row = store.find_search(name)
    assert row is not None
    driver = store.register_driver(row["id"])
    claims = [Claim(*reversed(canonical({"x": 0.001 * i, "n": 65 - 1})))
              for i in range(1, 101)]  # fmt: skip
    numbers = [d.number for d in store.sync(row["id"], driver, [], claims)]
    store.add_values(row["id"], [(m, step, 1.0 / (step + 1), time.time())
                                 for m in numbers for step in range(10)])  # fmt: skip


def dashboard_poll(app, study_id: int, after: int) -> None:
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": f"/api/studies/{study_id}",
               "QUERY_STRING": f"after={after}", "SERVER_NAME": "127.0.0.1",
               "SERVER_PORT": "0", "wsgi.input": io.BytesIO(), "wsgi.errors": sys.stderr,
               "wsgi.url_scheme": "http"}  # fmt: skip
    body = b"".join(app(environ, lambda *response: None))
    assert body.startswith(b"{"), body[:200]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100_000)
    parser.add_argument("--peer", type=int, default=10_000)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        store = TrialStore(Path(tmp) / "store.db")
        started = time.perf_counter()
        fill(store, "big", args.trials)
        running(store, "big")
        print(f"filled {args.trials} trials in {time.perf_counter() - started:.1f} s")
        sid = store.find_search("big")["id"]

        storage = dasktune.optuna_storage(Path(tmp) / "store.db")
        started = time.perf_counter()
        n = len(storage.get_all_trials(sid, deepcopy=False))
        first = time.perf_counter() - started
        print(f"(a) first read of {n} trials: {first:.2f} s "
              f"({first / n * 1e6:.0f} us per trial)")  # fmt: skip
        again = median_seconds(lambda: storage.get_all_trials(sid, deepcopy=False), 5)
        print(f"(b) re-read, nothing changed: {again * 1e3:.1f} ms "
              f"({first / again:.0f}x faster than the first read)")  # fmt: skip
        grown = []
        for k in range(3):
            fill(store, "big", 100, start=args.trials + 100 * k)
            started = time.perf_counter()
            storage.get_all_trials(sid, deepcopy=False)
            grown.append(time.perf_counter() - started)
        print(f"    re-read after 100 new trials: {sorted(grown)[1] * 1e3:.1f} ms")

        app = optuna_dashboard.wsgi(storage)
        total = len(storage.get_all_trials(sid, deepcopy=False))
        poll = median_seconds(lambda: dashboard_poll(app, sid, total), 5)
        print(f"(c) a dashboard poll (/api/studies/{sid}?after={total}): "
              f"{poll * 1e3:.0f} ms: {poll / 5.0:.1%} of a core at one poll "
              "every 5 s")  # fmt: skip
        storage.close()

        fill(store, "peer", args.peer)
        peer_url = f"sqlite:///{tmp}/optuna.db"
        to_optuna(store, "peer", peer_url)
        rdb = optuna.storages.RDBStorage(peer_url)
        peer_id = rdb.get_study_id_from_name("peer")
        theirs = median_seconds(lambda: rdb.get_all_trials(peer_id, deepcopy=False), 3)
        ours_first = []
        for _ in range(3):
            fresh = dasktune.optuna_storage(store)
            started = time.perf_counter()
            fresh.get_all_trials(store.find_search("peer")["id"], deepcopy=False)
            ours_first.append(time.perf_counter() - started)
        ours_again = median_seconds(
            lambda: fresh.get_all_trials(store.find_search("peer")["id"],
                                         deepcopy=False), 3)  # fmt: skip
        mine = sorted(ours_first)[1]
        print(f"(d) {args.peer} trials, get_all_trials: Optuna RDBStorage "
              f"{theirs * 1e3:.0f} ms; this storage's first read {mine * 1e3:.0f} ms "
              f"({theirs / mine:.2f}x Optuna's speed), re-read "
              f"{ours_again * 1e3:.1f} ms ({theirs / ours_again:.0f}x)")  # fmt: skip
        store.close()


if __name__ == "__main__":
    main()
