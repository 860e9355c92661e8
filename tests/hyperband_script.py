"""A SuccessiveHalvingSearchCV fitted in its own process by
test_sklearn_hyperband_store.py (killed half-way, then run again).

Usage: python hyperband_script.py STORE_URL
Each partial_fit call appends "alpha penalty" to $FIT_LOG and sleeps
$STEP_SLEEP s (read from the environment, so neither changes the search's
fingerprint). Prints the fit's results as JSON on its last line.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

import numpy as np
from clusters import local_client  # this script's folder: tests/
from scipy.stats import loguniform
from sklearn.datasets import load_digits
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import train_test_split

from dasktune.sklearn import SuccessiveHalvingSearchCV

PARAMS = {"alpha": loguniform(1e-6, 1e0), "penalty": ["l2", "l1"]}
N_MODELS, MAX_ITER = 24, 27


class Logged(SGDClassifier):
    """An SGDClassifier whose every partial_fit call is logged (and slowed)."""

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        time.sleep(float(os.environ.get("STEP_SLEEP", "0")))
        log = os.environ.get("FIT_LOG")
        if log:
            with open(log, "a") as f:
                f.write(f"{self.alpha!r} {self.penalty}\n")
        return super().partial_fit(X, y, classes=classes, sample_weight=sample_weight)


def search(store: str, client=None) -> SuccessiveHalvingSearchCV:
    return SuccessiveHalvingSearchCV(
        Logged(tol=None, random_state=0),
        PARAMS,
        n_initial_parameters=N_MODELS,
        max_iter=MAX_ITER,
        random_state=0,
        store=store,
        name="resume",
        client=client,
    )


def main() -> None:
    X, y = load_digits(return_X_y=True)
    _, test = train_test_split(np.arange(len(X)), test_size=0.15, random_state=0)
    with local_client(1, 2, processes=False) as client:
        fitted = search(sys.argv[1], client).fit(X, y)
        out = {
            "reused": fitted.n_models_reused_,
            "calls_run": fitted.n_partial_fit_calls_run_,
            "best_index": fitted.best_index_,
            "best_score": fitted.best_score_,
            # the best model's accuracy where it was scored: its score, if
            # the model is the one scored (trained again when reused)
            "held_out": float(fitted.score(X[test], y[test])),
            "models": {
                str(i): [[r["partial_fit_calls"], r["score"]] for r in records]
                for i, records in fitted.model_history_.items()
            },
            # a record scored again by this fit has its time (a record
            # replayed from the store that this fit did not score: NaN)
            "timed": {
                str(i): [math.isfinite(r["partial_fit_time"]) for r in records]
                for i, records in fitted.model_history_.items()
            },
            "history": [
                [r["model_id"], r["partial_fit_calls"], r["score"]]
                for r in fitted.history_
            ],
            "decisions": {str(i): d for i, d in fitted.decisions_.items()},
            "params": [
                f"{p['alpha']!r} {p['penalty']}" for p in fitted.cv_results_["params"]
            ],
        }
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
