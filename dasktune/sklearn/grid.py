"""``GridSearchCV`` and ``RandomizedSearchCV``: scikit-learn's, fitted on Dask.

Each is scikit-learn's own class with :class:`~dasktune.sklearn.base.DaskSearchMixin`
in front: the same parameters (less ``pre_dispatch``, ``n_jobs`` ignored; plus
``client``, ``store`` and ``name``), the same candidates, ``cv_results_``,
``best_*``, refit and delegation; the fits run on the Dask cluster.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import distributed
import numpy as np
from sklearn import model_selection

from dasktune.sklearn.base import DaskSearchMixin
from dasktune.store.sql import TrialStore

__all__ = ["GridSearchCV", "RandomizedSearchCV"]

_COMMON_DOC = """
    n_jobs : int, optional
        Accepted for scikit-learn's callers and ignored: the cluster's
        worker threads set how many fits run at once.
    client : distributed.Client, optional
        The cluster to fit on (see :func:`dasktune.get_client`): default, the
        current client, else a ``LocalCluster`` dasktune starts.
    store : str, path-like or TrialStore, optional
        A dasktune store (``"sqlite:///search.db"``, a path, a PostgreSQL URL)
        recording the scores of every (candidate, split): a ``fit`` run again
        after a crash or an interruption fits only what is missing. The
        search's name in the store carries a fingerprint of the data, the
        splits, the scoring and the estimator, so other data never reuses
        these scores. Default: an in-memory store, for this fit only.
    name : str, optional
        The start of the search's name in the store (default: the estimator's
        class name); ``@`` and the fingerprint follow it.
"""


class GridSearchCV(DaskSearchMixin, model_selection.GridSearchCV):
    __doc__ = (
        "scikit-learn's ``GridSearchCV``, each (candidate, split) fitted on Dask.\n\n"
        "Parameters are scikit-learn's (see its documentation), less\n"
        "``pre_dispatch``, plus:\n"
        + _COMMON_DOC
        + """
    Examples
    --------
    >>> from sklearn.svm import SVC
    >>> search = GridSearchCV(SVC(), {"C": [1, 10]}, cv=3)  # doctest: +SKIP
    >>> search.fit(X, y).best_params_  # doctest: +SKIP
    """
    )

    def __init__(
        self,
        estimator: Any,
        param_grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
        *,
        scoring: Any = None,
        refit: bool | str | Any = True,
        cv: Any = None,
        verbose: int = 0,
        error_score: str | float = np.nan,
        return_train_score: bool = False,
        n_jobs: int | None = None,
        client: distributed.Client | None = None,
        store: str | os.PathLike[str] | TrialStore | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(
            estimator=estimator,
            param_grid=param_grid,
            scoring=scoring,
            refit=refit,
            cv=cv,
            verbose=verbose,
            error_score=error_score,
            return_train_score=return_train_score,
        )
        self.n_jobs = n_jobs
        self.client = client
        self.store = store
        self.name = name


class RandomizedSearchCV(DaskSearchMixin, model_selection.RandomizedSearchCV):
    __doc__ = (
        "scikit-learn's ``RandomizedSearchCV``, each (candidate, split) fitted on\n"
        "Dask: with a ``random_state``, the same candidates as scikit-learn's.\n\n"
        "Parameters are scikit-learn's (see its documentation), less\n"
        "``pre_dispatch``, plus:\n" + _COMMON_DOC
    )

    def __init__(
        self,
        estimator: Any,
        param_distributions: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        *,
        n_iter: int = 10,
        scoring: Any = None,
        refit: bool | str | Any = True,
        cv: Any = None,
        verbose: int = 0,
        random_state: Any = None,
        error_score: str | float = np.nan,
        return_train_score: bool = False,
        n_jobs: int | None = None,
        client: distributed.Client | None = None,
        store: str | os.PathLike[str] | TrialStore | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(
            estimator=estimator,
            param_distributions=param_distributions,
            n_iter=n_iter,
            scoring=scoring,
            refit=refit,
            cv=cv,
            verbose=verbose,
            random_state=random_state,
            error_score=error_score,
            return_train_score=return_train_score,
        )
        self.n_jobs = n_jobs
        self.client = client
        self.store = store
        self.name = name
