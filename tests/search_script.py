"""A search run in its own process by test_search.py (killed, or run twice at once).

Usage: python search_script.py STORE_URL LOG_FILE SLEEP_SECONDS [STALE_AFTER]
Every evaluation appends its parameter to LOG_FILE, so the tests can count them.
"""

from __future__ import annotations

import sys
import time

from clusters import local_client  # this script's folder: tests/

from dasktune import Search


def make_objective(log: str, sleep: float):
    def objective(params: dict) -> float:
        time.sleep(sleep)
        with open(log, "a") as f:
            f.write(f"{params['i']}\n")
        return float(params["i"])

    return objective


def main() -> None:
    url, log, sleep = sys.argv[1], sys.argv[2], float(sys.argv[3])
    stale_after = float(sys.argv[4]) if len(sys.argv) > 4 else 30.0
    with local_client(1, 2, processes=False) as client:
        search = Search(
            "shared",
            make_objective(log, sleep),
            url,
            client=client,
            stale_after=stale_after,
        )
        report = search.run([{"i": i} for i in range(40)], progress=False)
        print(report.stopped, flush=True)


if __name__ == "__main__":
    main()
