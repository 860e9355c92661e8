"""dasktune's HyperbandSearchCV against a full search over the same candidates.

Run: ``python benchmarks/bench_hyperband.py [max_iter]`` (default 81).

One run, same machine, a 2-process ``LocalCluster`` (1 thread each):
``SGDClassifier`` on ``load_digits``, the candidates of
``HyperbandSearchCV(max_iter=81, random_state=0)`` (143 of them):
- dasktune ``HyperbandSearchCV``;
- the peer: every one of the same candidates trained to ``max_iter``
  ``partial_fit`` calls and scored on the same held-out split (one task per
  candidate on the same cluster), as a random search over them would;
- dask-ml's ``HyperbandSearchCV`` when installed (the issue found it failing
  at ``fit`` with the current dask; printed either way).

Printed: best held-out score of each, the score gap, the ``partial_fit``
calls and their ratio (peer / dasktune), wall times, ``os.getloadavg()``.
Target (#26): score within 1% of the peer's with >= 3x fewer calls.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
import time

import numpy as np
from distributed import Client, LocalCluster
from scipy.stats import loguniform
from sklearn.datasets import load_digits
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import train_test_split

from dasktune.sklearn import HyperbandSearchCV

PARAMS = {
    "alpha": loguniform(1e-6, 1e0),
    "penalty": ["l2", "l1", "elasticnet"],
    "learning_rate": ["optimal", "invscaling", "adaptive"],
    "eta0": loguniform(1e-3, 1e0),
}
MAX_ITER = int(sys.argv[1]) if len(sys.argv) > 1 else 81


def full(model, X, y, train, test, calls, classes):
    """``model`` trained to ``calls`` partial_fit calls: its held-out score."""
    model = copy.deepcopy(model)
    for _ in range(calls):
        model.partial_fit(X[train], y[train], classes=classes)
    return model.score(X[test], y[test])


def main() -> None:
    logging.getLogger("distributed").setLevel(logging.ERROR)
    X, y = load_digits(return_X_y=True)
    estimator = SGDClassifier(tol=None, random_state=0)
    print(f"load average before: {os.getloadavg()}")
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster,
        Client(cluster) as client,
    ):
        search = HyperbandSearchCV(
            estimator, PARAMS, max_iter=MAX_ITER, random_state=0, client=client
        )
        start = time.perf_counter()
        search.fit(X, y)
        ours = time.perf_counter() - start
        candidates = search.cv_results_["params"]
        train, test = train_test_split(
            np.arange(len(X)), test_size=search.test_size, random_state=0
        )
        models = [copy.deepcopy(estimator).set_params(**c) for c in candidates]
        start = time.perf_counter()
        n = len(models)
        Xf, yf = client.scatter(X, broadcast=True), client.scatter(y, broadcast=True)
        futures = client.map(
            full,
            models,
            [Xf] * n,
            [yf] * n,
            [train] * n,
            [test] * n,
            [MAX_ITER] * n,
            [np.unique(y)] * n,
            pure=False,
        )
        scores = client.gather(futures)
        theirs = time.perf_counter() - start
        peer_calls = len(candidates) * MAX_ITER
        print(f"{len(candidates)} candidates, max_iter={MAX_ITER}")
        print(
            f"dasktune HyperbandSearchCV: best {search.best_score_:.4f}, "
            f"{search.n_partial_fit_calls_} partial_fit calls, {ours:.2f} s"
        )
        print(
            f"full search (same candidates): best {max(scores):.4f}, "
            f"{peer_calls} partial_fit calls, {theirs:.2f} s"
        )
        gap = (max(scores) - search.best_score_) / max(scores)
        print(
            f"score gap {100 * gap:.2f}% of the peer's (target <= 1%); calls "
            f"ratio {peer_calls / search.n_partial_fit_calls_:.2f}x fewer "
            f"(target >= 3x); wall ratio {theirs / ours:.2f}x"
        )
        try:
            from dask_ml.model_selection import HyperbandSearchCV as DaskML
        except ImportError:
            print("dask-ml is not installed: pip install dask-ml (the bench extra)")
        else:
            try:
                start = time.perf_counter()
                DaskML(estimator, PARAMS, max_iter=MAX_ITER, random_state=0).fit(
                    X, y, classes=np.unique(y)
                )
                print(f"dask-ml HyperbandSearchCV: {time.perf_counter() - start:.2f} s")
            except Exception as err:
                print(f"dask-ml HyperbandSearchCV failed: {type(err).__name__}: {err}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
