"""``SuccessiveHalvingSearchCV`` and ``HyperbandSearchCV``, as dask-ml's.

Both search over estimators with ``partial_fit``; the budget is
``partial_fit`` calls. Their loop is
:class:`~dasktune.sklearn.incremental._IncrementalSearchCV`'s; each names its
candidates and its dasktune pruner.
"""

from __future__ import annotations

import math
import os
from typing import Any

import distributed
import numpy as np

from dasktune.optim.pruners import HyperbandPruner, Pruner, SuccessiveHalvingPruner
from dasktune.sklearn.incremental import _IncrementalSearchCV, _positive
from dasktune.store.sql import TrialStore

__all__ = ["HyperbandSearchCV", "SuccessiveHalvingSearchCV"]

_COMMON_DOC = """
    estimator : estimator with ``partial_fit``
        Cloned and given each candidate's parameters.
    parameters : dict or list of dicts
        Lists of values or scipy distributions, as scikit-learn's
        ``RandomizedSearchCV``'s ``param_distributions``.
    max_iter : int
        The ``partial_fit`` calls of a model trained to the end.
    aggressiveness : int, default 3
        ``eta``: one model in ``eta`` goes on from each rung.
    patience : int or bool, default False
        As dask-ml's: a model is scored at least every ``patience``
        ``partial_fit`` calls, and stops once no score in its last
        ``patience`` calls is more than ``tol`` above the first of them (a
        plateau; recorded as pruned, with that reason). ``True``:
        ``max_iter // aggressiveness`` (at least 2). Off by default.
    tol : float or None, default 0.001
        The gain that counts under ``patience`` (``None``: never a plateau,
        the models are only scored more often).
    test_size : float, default 0.15
        The share of ``X`` held out to score the models (one split, drawn
        with ``random_state``).
    random_state : int, optional
        Seeds the candidates, the split (and Hyperband's brackets).
    scoring : str, callable, list or dict, optional
        A scikit-learn scorer (default: the estimator's ``score``), or
        several (names, or a dict of names to scorers): then ``refit`` names
        the one that ranks the models and that the pruner decides by, and
        ``cv_results_`` has ``test_<name>``, ``mean_test_<name>`` and
        ``rank_test_<name>`` for each, as scikit-learn's.
    refit : bool or str, default True
        With several scorers, the name of the one that ranks (required, as
        in scikit-learn). ``False``: no ``best_estimator_`` (the best model
        is not fetched, nor trained again when it came from a store).
    client : distributed.Client, optional
        The cluster (see :func:`dasktune.get_client`).
    store : str, path-like or TrialStore, optional
        A dasktune store (``"sqlite:///search.db"``, a path, a PostgreSQL
        URL) recording each model's scores (its curve: step = its
        ``partial_fit`` calls) and its end: a ``fit`` run again after a crash
        or an interruption reuses the models that ended, and trains the
        others again from step 0 to the rung they had reached (models are not
        stored). The search's name carries a fingerprint of the data, the
        split, the scoring, the estimator, the candidates and the pruner, so
        other data never reuses these scores. Default: an in-memory store,
        for this fit only.
    name : str, optional
        The start of the search's name in the store (default: the
        estimator's class name); ``@`` and the fingerprint follow it.

    Attributes (after ``fit``): ``cv_results_`` (``params``, ``param_<name>``,
    ``test_score`` = ``mean_test_score`` (the model's last score),
    ``rank_test_score``, ``partial_fit_calls``, ``mean_partial_fit_time``,
    ``mean_score_time``, ``model_id``), ``best_index_``, ``best_score_``,
    ``best_params_``, ``best_estimator_`` (the best model as trained, not
    refitted), ``scorer_``, ``history_`` (one record per score),
    ``model_history_`` (by model), ``decisions_`` (the pruner's reason for
    each model's end), ``n_partial_fit_calls_`` (the models' calls, as
    decided), ``n_partial_fit_calls_run_`` (the calls this ``fit`` made:
    models reused from the store made none, models trained again made theirs
    again), ``n_models_reused_``, ``search_name_``.
"""


class SuccessiveHalvingSearchCV(_IncrementalSearchCV):
    __doc__ = (
        "Asynchronous successive halving (ASHA) over ``partial_fit`` calls.\n\n"
        "``n_initial_parameters`` candidates start; a model reaching a rung\n"
        "(``n_initial_iter * aggressiveness**k`` calls, below ``max_iter``) goes\n"
        "on only if its score is in the top ``1/aggressiveness`` of the models\n"
        "that reached the rung so far (dasktune's ``SuccessiveHalvingPruner``).\n\n"
        "Parameters\n----------\n"
        "    n_initial_parameters : int or 'grid', default 10\n"
        "        Candidates sampled from ``parameters`` ('grid': all of a grid).\n"
        "    n_initial_iter : int, default 1\n"
        "        The calls before a model's first check.\n" + _COMMON_DOC
    )

    def __init__(
        self,
        estimator: Any,
        parameters: Any,
        n_initial_parameters: int | str = 10,
        n_initial_iter: int = 1,
        max_iter: int = 81,
        aggressiveness: int = 3,
        test_size: float = 0.15,
        patience: int | bool = False,
        tol: float | None = 0.001,
        random_state: int | None = None,
        scoring: Any = None,
        refit: bool | str = True,
        client: distributed.Client | None = None,
        store: str | os.PathLike[str] | TrialStore | None = None,
        name: str | None = None,
    ) -> None:
        self.patience = patience
        self.tol = tol
        self.refit = refit
        self.estimator = estimator
        self.parameters = parameters
        self.n_initial_parameters = n_initial_parameters
        self.n_initial_iter = n_initial_iter
        self.max_iter = max_iter
        self.aggressiveness = aggressiveness
        self.test_size = test_size
        self.random_state = random_state
        self.scoring = scoring
        self.client = client
        self.store = store
        self.name = name

    def _n_candidates(self) -> int | str:
        return self.n_initial_parameters

    def _pruner(self) -> Pruner:
        first = _positive("n_initial_iter", self.n_initial_iter)
        if first > self.max_iter:
            msg = (
                f"n_initial_iter={first} is beyond max_iter={self.max_iter}; give "
                "n_initial_iter <= max_iter"
            )
            raise ValueError(msg)
        return SuccessiveHalvingPruner(
            min_resource=first,
            reduction_factor=self.aggressiveness,
            max_resource=self.max_iter,
            direction="maximize",
        )


class HyperbandSearchCV(_IncrementalSearchCV):
    __doc__ = (
        "Hyperband over ``partial_fit`` calls: brackets of asynchronous\n"
        "successive halving (dasktune's ``HyperbandPruner``).\n\n"
        "As dask-ml's, ``max_iter`` sets everything: ``s_max = floor(log_eta\n"
        "(max_iter))``, and ``sum(ceil((s_max + 1) / (s + 1) * eta**s))`` over\n"
        "``s`` in ``0..s_max`` candidates start, each drawn into a bracket with\n"
        "those weights (seeded by ``random_state``); bracket ``b``'s first rung\n"
        "is at ``eta**b`` calls.\n\n"
        "Parameters\n----------\n" + _COMMON_DOC
    )

    def __init__(
        self,
        estimator: Any,
        parameters: Any,
        max_iter: int = 81,
        aggressiveness: int = 3,
        patience: int | bool = False,
        tol: float | None = 0.001,
        test_size: float = 0.15,
        random_state: int | None = None,
        scoring: Any = None,
        refit: bool | str = True,
        client: distributed.Client | None = None,
        store: str | os.PathLike[str] | TrialStore | None = None,
        name: str | None = None,
    ) -> None:
        self.patience = patience
        self.tol = tol
        self.refit = refit
        self.estimator = estimator
        self.parameters = parameters
        self.max_iter = max_iter
        self.aggressiveness = aggressiveness
        self.test_size = test_size
        self.random_state = random_state
        self.scoring = scoring
        self.client = client
        self.store = store
        self.name = name

    def _n_candidates(self) -> int | str:
        return sum(self.bracket_sizes())

    def bracket_sizes(self) -> list[int]:
        """Hyperband's candidates per bracket, ``s_max`` halvings first.

        >>> HyperbandSearchCV(None, {}, max_iter=81).bracket_sizes()
        [81, 34, 15, 8, 5]
        """
        eta = _positive("aggressiveness", self.aggressiveness, 2)
        top = _positive("max_iter", self.max_iter)
        s_max = 0
        while eta ** (s_max + 1) <= top:
            s_max += 1
        return [math.ceil((s_max + 1) / (s + 1) * eta**s) for s in range(s_max, -1, -1)]

    def _pruner(self) -> Pruner:
        seed = self.random_state
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        return HyperbandPruner(
            min_resource=1,
            max_resource=self.max_iter,
            reduction_factor=self.aggressiveness,
            seed=seed,
            direction="maximize",
        )
