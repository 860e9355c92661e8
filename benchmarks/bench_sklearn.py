"""dasktune's GridSearchCV against scikit-learn's and dask-ml's.

Run: ``python benchmarks/bench_sklearn.py`` (needs ``pip install -e ".[bench]"``).

One run, same machine: ``SVC`` on ``load_digits``, 20 candidates x 3 folds
(60 fits), each search timed as the median of ``REPEATS`` fits after a
warm-up:
- dasktune ``GridSearchCV`` on a 2-process ``LocalCluster`` (1 thread each),
  in-memory store;
- scikit-learn ``GridSearchCV(n_jobs=2)`` (joblib's loky processes);
- dask-ml ``GridSearchCV`` on the same cluster.

Printed: each wall time, the ratios (peer / dasktune: above 1, dasktune is
faster), whether ``mean_test_score`` and ``best_params_`` equal
scikit-learn's, and ``os.getloadavg()`` (the machine may be shared).
Target: >= 1.0x scikit-learn's and dask-ml's.
"""

from __future__ import annotations

import logging
import os
import sys

import numpy as np
from _timing import median_seconds
from distributed import Client, LocalCluster
from sklearn import model_selection as skms
from sklearn.datasets import load_digits
from sklearn.svm import SVC

from dasktune import sklearn as dsk

GRID = {"C": [0.1, 1.0, 10.0, 100.0], "gamma": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2]}
#: timed fits of each search after a warm-up (``bench_sklearn.py N`` sets it)
REPEATS = int(sys.argv[1]) if len(sys.argv) > 1 else 3


def main() -> None:
    logging.getLogger("distributed").setLevel(logging.ERROR)
    X, y = load_digits(return_X_y=True)
    try:
        import dask_ml.model_selection as dml
    except ImportError:
        dml = None
        print("dask-ml is not installed: pip install dask-ml (the bench extra)")
    print(f"load average before: {os.getloadavg()}")
    theirs = skms.GridSearchCV(SVC(), GRID, cv=3, n_jobs=2).fit(X, y)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        ours = dsk.GridSearchCV(SVC(), GRID, cv=3, client=client)
        ours.fit(X, y)
        same = np.array_equal(
            ours.cv_results_["mean_test_score"], theirs.cv_results_["mean_test_score"]
        )
        print(
            f"dasktune mean_test_score equal to scikit-learn's: {same}; "
            f"best_params_ equal: {ours.best_params_ == theirs.best_params_}"
        )
        t_ours = median_seconds(lambda: ours.fit(X, y), REPEATS)
        t_dml = None
        if dml is not None:
            peer = dml.GridSearchCV(SVC(), GRID, cv=3, scheduler=client)
            t_dml = median_seconds(lambda: peer.fit(X, y), REPEATS)
    sk = skms.GridSearchCV(SVC(), GRID, cv=3, n_jobs=2)
    t_sk = median_seconds(lambda: sk.fit(X, y), REPEATS)
    print(f"dasktune GridSearchCV (2-process LocalCluster): {t_ours:.2f} s")
    print(f"scikit-learn GridSearchCV(n_jobs=2):            {t_sk:.2f} s")
    print(f"  ratio scikit-learn / dasktune: {t_sk / t_ours:.2f}x")
    if t_dml is not None:
        print(f"dask-ml GridSearchCV (same cluster):            {t_dml:.2f} s")
        print(f"  ratio dask-ml / dasktune:      {t_dml / t_ours:.2f}x")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
