"""A pruned search run in its own process by test_search_pruning.py (killed).

Usage: python prune_script.py STORE_URL LOG_FILE
Every epoch appends ``<i> <epoch>`` to LOG_FILE, so the tests can count them.
"""

from __future__ import annotations

import sys
import time

from clusters import local_client  # this script's folder: tests/

import dasktune
from dasktune import Search
from dasktune.optim.pruners import SuccessiveHalvingPruner

GRID = [{"i": i} for i in range(16)]


def make_objective(log: str):
    def objective(params: dict, trial) -> float:
        loss = 0.0
        for epoch in range(12):
            with open(log, "a") as f:
                f.write(f"{params['i']} {epoch}\n")
            loss = (1 + params["i"] % 5) / (epoch + 1)
            trial.report(epoch, loss)
            if trial.should_prune():
                raise dasktune.TrialPruned
            time.sleep(0.03)
        return loss

    return objective


def make_pruner() -> SuccessiveHalvingPruner:
    return SuccessiveHalvingPruner(min_resource=2, reduction_factor=2)


def main() -> None:
    url, log = sys.argv[1], sys.argv[2]
    with local_client(1, 2, processes=False) as client:
        search = Search("pruned", make_objective(log), url, client=client)
        search.run(GRID, pruner=make_pruner(), progress=False)
        print("finished", flush=True)


if __name__ == "__main__":
    main()
