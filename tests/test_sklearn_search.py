"""dasktune.sklearn's GridSearchCV and RandomizedSearchCV against scikit-learn's.

One in-process cluster for the module (scikit-learn's fits are the slow part);
the kill test drives its own cluster in a subprocess.
"""

from __future__ import annotations

import collections
import concurrent.futures
import json
import os
import pickle
import signal
import subprocess
import time
from pathlib import Path

import cloudpickle
import dask
import dask.array as da
import numpy as np
import pytest
from clusters import local_client
from distributed.diagnostics.plugin import SchedulerPlugin
from scipy.stats import loguniform
from sklearn import model_selection as skms
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.datasets import load_digits, load_iris
from sklearn.exceptions import FitFailedWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, KFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

import dasktune.sklearn.base as base_module
from dasktune.sklearn import GridSearchCV, RandomizedSearchCV
from dasktune.sklearn.folds import FoldFit
from dasktune.store.sql import TrialStore
from tests.subprocesses import launch

# scikit-learn's fits on a shared 2-core machine: slower than the default bound
pytestmark = pytest.mark.timeout(300)

GRID = {"C": [0.1, 1.0, 10.0], "gamma": [1e-3, 1e-2]}


@pytest.fixture(scope="module")
def client():
    with local_client(2, 1, processes=False) as c:
        yield c


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:300], y[:300]


def test_grid_scores_equal_scikit_learns(client, digits):
    X, y = digits
    ours = GridSearchCV(SVC(), GRID, cv=3, client=client).fit(X, y)
    theirs = skms.GridSearchCV(SVC(), GRID, cv=3).fit(X, y)
    assert sorted(ours.cv_results_) == sorted(theirs.cv_results_)
    for key in ("mean_test_score", "std_test_score", "rank_test_score"):
        np.testing.assert_array_equal(ours.cv_results_[key], theirs.cv_results_[key])
    assert ours.best_params_ == theirs.best_params_
    assert ours.best_score_ == theirs.best_score_
    assert ours.best_index_ == theirs.best_index_ and ours.n_splits_ == 3
    # delegation to the refitted best estimator
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
    np.testing.assert_array_equal(
        ours.decision_function(X), theirs.decision_function(X)
    )
    assert ours.score(X, y) == theirs.score(X, y)


def test_randomized_proposes_scikit_learns_candidates(client, digits):
    X, y = digits
    dists = {"C": loguniform(1e-2, 1e2), "gamma": loguniform(1e-4, 1e-1)}
    ours = RandomizedSearchCV(
        SVC(), dists, n_iter=5, cv=3, random_state=0, client=client
    )
    theirs = skms.RandomizedSearchCV(SVC(), dists, n_iter=5, cv=3, random_state=0)
    ours.fit(X, y)
    theirs.fit(X, y)
    assert ours.cv_results_["params"] == theirs.cv_results_["params"]
    np.testing.assert_array_equal(
        ours.cv_results_["mean_test_score"], theirs.cv_results_["mean_test_score"]
    )


def test_several_metrics_refit_by_name_and_train_scores(client):
    X, y = load_iris(return_X_y=True)
    kwargs = dict(
        scoring=["accuracy", "f1_macro"],
        refit="f1_macro",
        return_train_score=True,
        cv=KFold(3, shuffle=True, random_state=0),
    )
    grid = {"C": [0.01, 1.0]}
    ours = GridSearchCV(LogisticRegression(max_iter=500), grid, client=client, **kwargs)
    theirs = skms.GridSearchCV(LogisticRegression(max_iter=500), grid, **kwargs)
    ours.fit(X, y)
    theirs.fit(X, y)
    for key in ("mean_test_f1_macro", "mean_train_accuracy", "split2_test_accuracy"):
        np.testing.assert_array_equal(ours.cv_results_[key], theirs.cv_results_[key])
    assert ours.best_params_ == theirs.best_params_
    assert ours.scorer_.keys() == {"accuracy", "f1_macro"}


def test_pipeline_and_groups(client):
    X, y = load_iris(return_X_y=True)
    groups = np.arange(len(y)) % 5
    pipe = Pipeline([("scale", StandardScaler()), ("svc", SVC())])
    grid = {"svc__C": [0.1, 1.0, 10.0]}
    ours = GridSearchCV(pipe, grid, cv=GroupKFold(5), client=client)
    theirs = skms.GridSearchCV(pipe, grid, cv=GroupKFold(5))
    ours.fit(X, y, groups=groups)
    theirs.fit(X, y, groups=groups)
    np.testing.assert_array_equal(
        ours.cv_results_["mean_test_score"], theirs.cv_results_["mean_test_score"]
    )
    assert ours.n_splits_ == 5
    assert isinstance(ours.best_estimator_, Pipeline)


class FailsOnC(ClassifierMixin, BaseEstimator):
    """A classifier whose fit raises for C == 0 (the others fit)."""

    def __init__(self, C=1.0):
        self.C = C

    def fit(self, X, y):
        if self.C == 0:
            raise ValueError("FailsOnC failed as required")
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):
        return np.full(len(X), self.classes_[0])


def test_error_score_number_and_raise(client):
    X, y = load_iris(return_X_y=True)
    search = GridSearchCV(
        FailsOnC(), {"C": [0, 1]}, cv=3, error_score=-1.0, client=client
    )
    with pytest.warns(FitFailedWarning, match="3 fits failed"):
        search.fit(X, y)
    assert list(search.cv_results_["mean_test_score"][:1]) == [-1.0]
    assert search.best_params_ == {"C": 1}
    raising = GridSearchCV(
        FailsOnC(), {"C": [0, 1]}, cv=3, error_score="raise", client=client
    )
    with pytest.raises(ValueError, match="FailsOnC failed as required"):
        raising.fit(X, y)


def test_get_params_set_params_clone_and_pickle():
    search = GridSearchCV(SVC(), GRID, cv=3, store="sqlite:///x.db", name="svm")
    params = search.get_params()
    assert params["store"] == "sqlite:///x.db" and params["name"] == "svm"
    assert params["n_jobs"] is None and params["estimator__C"] == 1.0
    search.set_params(estimator__C=2.0, cv=4)
    copy = clone(search)
    assert copy.get_params()["estimator__C"] == 2.0 and copy.cv == 4
    assert pickle.loads(pickle.dumps(search)).name == "svm"


def test_n_jobs_is_accepted_and_the_fits_still_run_on_dask(client):
    X, y = load_iris(return_X_y=True)
    search = GridSearchCV(
        LogisticRegression(max_iter=300), {"C": [0.1, 1.0]}, cv=2, n_jobs=-1,
        client=client,
    )  # fmt: skip
    search.fit(X, y)
    assert search.n_fits_run_ == 4 and search.n_jobs == -1


def test_dask_arrays_are_computed_once_and_placed(client, digits, monkeypatch):
    X, y = digits
    placed = []
    original = base_module.place

    def counted(c, data):
        placed.append(data)
        return original(c, data)

    monkeypatch.setattr(base_module, "place", counted)
    dX, dy = da.from_array(X, chunks=100), da.from_array(y, chunks=100)
    ours = GridSearchCV(SVC(), GRID, cv=3, client=client).fit(dX, dy)
    theirs = skms.GridSearchCV(SVC(), GRID, cv=3).fit(X, y)
    np.testing.assert_array_equal(
        ours.cv_results_["mean_test_score"], theirs.cv_results_["mean_test_score"]
    )
    # the data went out once, as NumPy; the folds as indices with it
    assert len(placed) == 1 and isinstance(placed[0].X, np.ndarray)
    assert [len(test) for _, test in placed[0].splits] == [100, 100, 100]


class _FitDependencies(SchedulerPlugin):
    """The keys each fit task depended on when it started (in-process)."""

    def __init__(self, scheduler) -> None:
        self.scheduler = scheduler
        self.seen: dict[str, list[str]] = {}

    def transition(self, key, start, finish, *args, **kwargs) -> None:
        if finish == "processing" and str(key).startswith("fit-"):
            task = self.scheduler.tasks[key]
            self.seen[str(key)] = [str(d.key) for d in task.dependencies]


def test_each_fit_task_depends_on_the_placed_data(client, digits):
    X, y = digits
    scheduler = client.cluster.scheduler  # in-process: this very plugin sees
    plugin = _FitDependencies(scheduler)
    scheduler.add_plugin(plugin, name="fit-dependencies")
    try:
        GridSearchCV(SVC(), GRID, cv=3, client=client).fit(X, y)
    finally:
        scheduler.remove_plugin(name="fit-dependencies")
    # 6 candidates x 3 splits, each a task given the one scattered Resident
    assert len(plugin.seen) == 18
    data_keys = {key for deps in plugin.seen.values() for key in deps}
    assert len(data_keys) == 1 and next(iter(data_keys)).startswith("Resident-")
    assert all(len(deps) == 1 for deps in plugin.seen.values())
    # what a task carries besides: the estimator and scorers, not the data
    fit = FoldFit(SVC(), None, None, False, np.nan)
    assert len(cloudpickle.dumps(fit)) < X.nbytes / 50


def test_scikit_learn_is_left_as_it_was(client, digits):
    import sklearn.model_selection._search as sk_search
    import sklearn.model_selection._validation as sk_validation

    X, y = digits
    fit, function = sk_search.BaseSearchCV.fit, sk_search._fit_and_score
    assert function is sk_validation._fit_and_score
    ours = GridSearchCV(SVC(), GRID, cv=3, client=client).fit(X, y)
    # nothing of scikit-learn replaced, for any other code in the process
    assert sk_search._fit_and_score is function
    assert sk_validation._fit_and_score is function
    assert sk_search.BaseSearchCV.fit is fit
    theirs = skms.GridSearchCV(SVC(), GRID, cv=3).fit(X, y)
    np.testing.assert_array_equal(
        ours.cv_results_["mean_test_score"], theirs.cv_results_["mean_test_score"]
    )


def _fit_three_times(client, X, y) -> list[float]:
    scores = []
    for C in (1.0, 2.0, 4.0):  # three searches, each its own placed data
        search = GridSearchCV(SVC(C=C), GRID, cv=3, client=client).fit(X, y)
        scores.append(search.best_score_)
    return scores


@pytest.mark.timeout(400)
def test_fits_in_a_row_on_worker_processes_finish(digits):
    """Real worker processes, Dask's active memory manager running often: it
    drops the broadcast copies of the data between fits, and the fits still
    get it (as a task dependency, copied by the scheduler)."""
    X, y = digits
    amm = {"distributed.scheduler.active-memory-manager.interval": "20ms"}
    with (
        dask.config.set(amm),
        local_client(2, 1) as c,
        concurrent.futures.ThreadPoolExecutor(1) as pool,
    ):
        running = pool.submit(_fit_three_times, c, X, y)
        try:
            scores = running.result(timeout=240)
        except concurrent.futures.TimeoutError:
            c.cancel(list(c.futures))  # let the thread end, then say what hung
            pytest.fail(
                "three GridSearchCV fits on 2 worker processes: not done in 240 s"
            )
    theirs = skms.GridSearchCV(SVC(), GRID, cv=3).fit(X, y).best_score_
    assert scores[0] == theirs and len(scores) == 3


# -- the store: resume, and fingerprints -------------------------------------

SCRIPT = Path(__file__).with_name("sklearn_script.py")


def _done_fits(url: str) -> int:
    store = TrialStore(url)
    try:
        found = [s for s in store.list_searches() if s["name"].startswith("resume@")]
        if not found:
            return 0
        return sum(r["status"] == "done" for r in store.trials(found[0]["id"]))
    finally:
        store.close()


def _cv_fits(log: Path) -> collections.Counter[str]:
    """The fits logged on a fold (100 of iris's 150 rows; not the refit's)."""
    lines = log.read_text().splitlines()
    return collections.Counter(line for line in lines if line.split()[1] == "100")


def _launch(url: str, log: Path, sleep: float) -> subprocess.Popen:
    return launch(SCRIPT, url, env={"FIT_LOG": str(log), "FIT_SLEEP": str(sleep)})


@pytest.mark.timeout(600)  # two driver processes starting scikit-learn and Dask
def test_a_killed_fit_resumes_fitting_only_what_is_missing(tmp_path):
    from sklearn_script import GRID, Logged, data

    url, log = f"sqlite:///{tmp_path}/fits.db", tmp_path / "fits.log"
    proc = _launch(url, log, 0.2)
    deadline = time.monotonic() + 300
    while _done_fits(url) < 6:  # a fifth of the 30 fits recorded
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    done_before = _done_fits(url)
    fitted_before = _cv_fits(log)
    assert 6 <= done_before < 30
    again = _launch(url, log, 0.0)
    out, _ = again.communicate(timeout=300)
    assert again.returncode == 0, out
    result = json.loads(out.strip().splitlines()[-1])
    # the fits recorded before the kill were not run again; the rest were
    assert result["run"] == 30 - done_before
    fitted = _cv_fits(log)
    assert len(fitted) == 30
    assert sum(fitted.values()) - sum(fitted_before.values()) == 30 - done_before
    X, y = data()
    theirs = skms.GridSearchCV(Logged(), GRID, cv=3).fit(X, y)
    assert result["scores"] == theirs.cv_results_["mean_test_score"].tolist()


def test_scores_are_reused_for_the_same_data_only(client, tmp_path):
    X, y = load_iris(return_X_y=True)
    url = f"sqlite:///{tmp_path}/s.db"
    grid = {"C": [0.1, 1.0]}

    def fit(X, y, **kwargs):
        search = GridSearchCV(
            LogisticRegression(max_iter=500), grid, store=url, client=client, **kwargs
        )
        return search.fit(X, y)

    first = fit(X, y, cv=2)
    assert (first.n_fits_run_, first.n_fits_reused_) == (4, 0)
    again = fit(X, y, cv=2)
    assert (again.n_fits_run_, again.n_fits_reused_) == (0, 4)
    assert again.search_name_ == first.search_name_
    np.testing.assert_array_equal(
        again.cv_results_["mean_test_score"], first.cv_results_["mean_test_score"]
    )
    # other data, other splits, another scorer, another estimator: fitted anew
    changed = [
        fit(X + 1e-9, y, cv=2),
        fit(X, y, cv=KFold(2, shuffle=True, random_state=0)),
        fit(X, y, cv=2, scoring="f1_macro"),
    ]
    for search in changed:
        assert (search.n_fits_run_, search.n_fits_reused_) == (4, 0)
    names = {s.search_name_ for s in [first, *changed]}
    assert len(names) == 4
    # a bigger grid on the same data: only its new candidate is fitted
    bigger = GridSearchCV(
        LogisticRegression(max_iter=500),
        {"C": [0.1, 1.0, 10.0]},
        cv=2,
        store=url,
        client=client,
    ).fit(X, y)
    assert (bigger.n_fits_run_, bigger.n_fits_reused_) == (2, 4)


# -- bad input: refused before any fit ----------------------------------------


class Connection:
    """A handle to something open (a database connection): copied as itself,
    never pickled."""

    def __deepcopy__(self, memo):
        return self

    def __reduce__(self):
        raise TypeError("a Connection cannot be pickled")


class Holding(ClassifierMixin, BaseEstimator):
    """An estimator holding a connection: it cannot be pickled to the workers."""

    def __init__(self, connection=None):
        self.connection = connection

    def fit(self, X, y):
        return self


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        pytest.param(
            lambda: GridSearchCV(Holding(Connection()), {"connection": [None]}, cv=2),
            TypeError,
            "the estimator Holding cannot be pickled to be sent to the Dask workers",
            id="unpicklable-estimator",
        ),
        pytest.param(
            lambda: GridSearchCV(Holding(), {"connection": [Connection()]}, cv=2),
            TypeError,
            r"a candidate's parameters \(connection\) cannot be pickled to be sent",
            id="unpicklable-candidate",
        ),
        pytest.param(
            lambda: GridSearchCV(SVC(), GRID, scoring="acuracy", cv=2),
            ValueError,
            "The 'scoring' parameter of GridSearchCV must be a str among",
            id="unknown-scorer",
        ),
        pytest.param(
            lambda: GridSearchCV(SVC(), GRID, scoring=["accuracy", "acuracy"], cv=2),
            ValueError,
            "The 'scoring' parameter of check_scoring must be a str among .* "
            "Got 'acuracy' instead",
            id="unknown-scorer-in-a-list",
        ),
        pytest.param(
            lambda: GridSearchCV(SVC(), {"C": []}, cv=2),
            ValueError,
            r"Parameter grid for parameter 'C' need to be a non-empty sequence, "
            r"got: \[\]",
            id="empty-grid-list",
        ),
        pytest.param(
            lambda: GridSearchCV(SVC(), GRID, cv=KFold(200)),
            ValueError,
            "Cannot have number of splits n_splits=200 greater than the number of "
            "samples: n_samples=150",
            id="cv-larger-than-the-samples",
        ),
    ],
)
def test_bad_input_is_refused_before_any_fit(client, tmp_path, make, error, match):
    X, y = load_iris(return_X_y=True)
    url = f"sqlite:///{tmp_path}/s.db"
    search = make().set_params(store=url, client=client)
    with pytest.raises(error, match=match):
        search.fit(X, y)
    store = TrialStore(url)
    try:
        assert store.list_searches() == []  # no search made, no fit recorded
    finally:
        store.close()
