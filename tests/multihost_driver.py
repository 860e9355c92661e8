"""One driver of test_multihost.py's shared search, run on a "host" (a network
namespace) against a remote scheduler and a PostgreSQL store.

Usage: python multihost_driver.py STORE_URL SCHEDULER SEARCH TAG LOG N SLEEP STALE

It runs the grid ``{"i": 0} .. {"i": N - 1}`` (every driver the same grid in the
same order: they contend for every point). Every evaluation, on a worker,
appends ``TAG i`` to LOG, so the test counts what was evaluated, where.
"""

from __future__ import annotations

import functools
import sys
import time

from dasktune import Search


def objective(tag: str, log: str, sleep: float, params: dict) -> float:
    time.sleep(sleep)
    with open(log, "a") as f:
        f.write(f"{tag} {params['i']}\n")
    return float(params["i"])


def main() -> None:
    url, scheduler, name, tag, log = sys.argv[1:6]
    n, sleep, stale = int(sys.argv[6]), float(sys.argv[7]), float(sys.argv[8])
    search = Search(
        name,
        functools.partial(objective, tag, log, sleep),
        url,
        client=scheduler,
        stale_after=stale,
    )
    report = search.run([{"i": i} for i in range(n)], progress=False)
    print(report.stopped, report.evaluated, flush=True)
    search.close()


if __name__ == "__main__":
    main()
