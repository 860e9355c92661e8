"""A GridSearchCV fitted in its own process by test_sklearn_search.py (killed).

Usage: python sklearn_script.py STORE_URL
Each fit appends "C n_rows data-hash" to $FIT_LOG and sleeps $FIT_SLEEP s
(read from the environment, so neither changes the search's fingerprint).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time

import numpy as np
from clusters import local_client  # this script's folder: tests/
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from dasktune.sklearn import GridSearchCV

GRID = {"C": [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0]}


class Logged(ClassifierMixin, BaseEstimator):
    """A logistic regression whose every fit is logged (and slowed down)."""

    def __init__(self, C: float = 1.0) -> None:
        self.C = C

    def fit(self, X, y):
        time.sleep(float(os.environ.get("FIT_SLEEP", "0")))
        self.model_ = LogisticRegression(C=self.C, max_iter=1000).fit(X, y)
        self.classes_ = self.model_.classes_
        log = os.environ.get("FIT_LOG")
        if log:
            with open(log, "a") as f:
                digest = hashlib.md5(np.ascontiguousarray(X).tobytes()).hexdigest()
                f.write(f"{self.C} {len(X)} {digest}\n")
        return self

    def predict(self, X):
        return self.model_.predict(X)


def data() -> tuple[np.ndarray, np.ndarray]:
    return load_iris(return_X_y=True)


def main() -> None:
    X, y = data()
    with local_client(1, 2, processes=False) as client:
        search = GridSearchCV(
            Logged(), GRID, cv=3, store=sys.argv[1], name="resume", client=client
        )
        search.fit(X, y)
        scores = search.cv_results_["mean_test_score"].tolist()
        print(json.dumps({"scores": scores, "run": search.n_fits_run_}), flush=True)


if __name__ == "__main__":
    main()
