"""What dasktune's search estimators add to scikit-learn's ``BaseSearchCV``.

scikit-learn's ``BaseSearchCV.fit`` does everything a search estimator does
around the fits — checks, splits, ``cv_results_``, ``best_*``, refit, several
metrics, ``error_score`` — and hands its subclass an ``evaluate_candidates``
that fits each (candidate, split) with ``_fit_and_score`` through joblib.
:class:`DaskSearchMixin` keeps all of it and moves only the fits: its
``evaluate_candidates`` runs them as the trials of a dasktune
:class:`~dasktune.Search` (on the Dask cluster, recorded in a store), then
lets scikit-learn's own run over the results. For that run, scikit-learn's
``_fit_and_score`` answers the calls made on behalf of this search from the
results (an answer table per search object; any other caller gets the
original function), so the dicts scikit-learn reads are the ones
``_fit_and_score`` returned on the workers.
"""

from __future__ import annotations

import contextlib
import copy
import threading
from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Any

import cloudpickle
import distributed
import sklearn.model_selection._search as _sk_search
from sklearn.base import clone
from sklearn.utils.validation import indexable

from dasktune.records import TrialStatus
from dasktune.run.cluster import get_client
from dasktune.run.evaluate import failure_exception
from dasktune.search import Search
from dasktune.sklearn.folds import SPLIT, FoldFit, candidate_key, trial_params
from dasktune.sklearn.placement import Resident, computed, fingerprint, place
from dasktune.store.sql import TrialStore

__all__ = ["DaskSearchMixin"]

_SKLEARN = metadata.version("scikit-learn")
if tuple(int(p) for p in _SKLEARN.split(".")[:2]) < (1, 9):  # pragma: no cover
    _msg = (
        f"dasktune.sklearn needs scikit-learn 1.9 or newer (the hooks of its "
        f"search classes), found {_SKLEARN}; pip install 'dasktune[sklearn]'"
    )
    raise ImportError(_msg)

#: results of the fits of a search being evaluated, by ``id`` of the search:
#: ``{(candidate index, split index): _fit_and_score's dict}``
_ANSWERS: dict[int, dict[tuple[int, int], dict[str, Any]]] = {}
_LOCK = threading.Lock()
_ORIGINAL: Callable[..., Any] = _sk_search._fit_and_score


def _answer(*args: Any, caller: Any = None, **kwargs: Any) -> Any:
    """scikit-learn's ``_fit_and_score`` for the searches evaluated here: the
    result of the worker's fit; for any other caller, the original."""
    table = _ANSWERS.get(id(caller)) if caller is not None else None
    if table is None:
        return _ORIGINAL(*args, caller=caller, **kwargs)
    key = (kwargs["candidate_progress"][0], kwargs["split_progress"][0])
    return copy.deepcopy(table[key])  # scikit-learn may fill in error scores


@contextlib.contextmanager
def _answered(
    search: object, table: dict[tuple[int, int], dict[str, Any]]
) -> Iterator[None]:
    with _LOCK:
        if _sk_search._fit_and_score is not _answer:
            _sk_search._fit_and_score = _answer
        _ANSWERS[id(search)] = table
    try:
        yield
    finally:
        with _LOCK:
            _ANSWERS.pop(id(search), None)


class _Fixed:
    """The splits of a fit, as a cv object giving them again."""

    def __init__(self, splits: list[tuple[Any, Any]]) -> None:
        self.splits = splits

    def get_n_splits(self, *args: Any, **kwargs: Any) -> int:
        return len(self.splits)

    def split(self, *args: Any, **kwargs: Any) -> Iterator[tuple[Any, Any]]:
        return iter(self.splits)


class _Fit:
    """The state of one ``fit``: its client, data, splits, store and search."""

    def __init__(
        self, owner: Any, client: distributed.Client, X: Any, y: Any, params: Any
    ) -> None:
        self.owner, self.client = owner, client
        self.X, self.y, self.params = X, y, params
        self.data: distributed.Future | None = None
        self.store: TrialStore | None = None
        self.owns_store = False
        self.name = ""
        self.n_splits = 0
        self.splits: list[tuple[Any, Any]] = []
        self.evaluated = self.reused = 0

    def prepare(self, cv: Any) -> None:
        """Check what the fits need, then place the data (once per fit)."""
        owner = self.owner
        if self.data is not None:
            if cv is not None and cv is not owner._checked_cv_orig:
                msg = "dasktune's search estimators evaluate one cv per fit"
                raise NotImplementedError(msg)
            return
        estimator = clone(owner.estimator)
        try:
            cloudpickle.dumps(estimator)
        except Exception as err:
            msg = (
                f"the estimator {type(owner.estimator).__name__} cannot be pickled "
                f"to be sent to the Dask workers: {err}; keep what it holds (locks, "
                "open files, clients, lambdas in a closure over those) out of its "
                "parameters, or make it picklable"
            )
            raise TypeError(msg) from err
        routed = owner._get_routed_params_for_fit(
            _sk_search._check_method_params(self.X, params=self.params)
        )
        # cv larger than the samples and the like: raised here, before any fit
        splits = [
            (train, test)
            for train, test in owner._checked_cv_orig.split(
                self.X, self.y, **routed.splitter.split
            )
        ]
        self.n_splits, self.splits = len(splits), splits
        resident = Resident(
            self.X, self.y, routed.estimator.fit, routed.scorer.score, splits
        )
        key = fingerprint(
            self.X,
            self.y,
            resident.fit_params,
            resident.score_params,
            splits,
            estimator,
            owner.scoring,
            owner.error_score,
            owner.return_train_score,
        )
        self.name = f"{owner.name or type(owner.estimator).__name__}@{key}"
        store = owner.store
        self.owns_store = not isinstance(store, TrialStore)
        self.store = TrialStore("sqlite://" if store is None else store)
        self.estimator = estimator
        self.data = place(self.client, resident)

    def fits(self, candidates: list[dict[str, Any]]) -> dict[tuple[int, int], Any]:
        """Every split of ``candidates`` fitted (or found in the store):
        ``_fit_and_score``'s dicts by (candidate index, split index)."""
        owner = self.owner
        assert self.data is not None and self.store is not None
        scorers, refit_metric = owner._get_scorers()
        keys = [candidate_key(c) for c in candidates]
        objective = FoldFit(
            self.data.key,  # what the tasks carry: the data stay put
            self.estimator,
            dict(zip(keys, candidates, strict=True)),
            scorers,
            refit_metric if isinstance(refit_metric, str) else None,
            owner.return_train_score,
            owner.error_score,
        )
        trials = [
            trial_params(k, s)
            for k in dict.fromkeys(keys)
            for s in range(self.n_splits)
        ]
        search = Search(
            self.name,
            objective,
            self.store,
            client=self.client,
            direction="maximize",
        )
        report = search.run(
            trials,
            progress=False,
            execution="tasks",
            max_failures=None,
            retry_failed=True,
        )
        if report.first_failure is not None:  # error_score="raise"
            raise failure_exception(report.first_failure)
        done = search.trials(status=TrialStatus.DONE.value)
        found = {
            (c, int(s)): aux["out"]
            for c, s, aux in zip(
                done["candidate"], done[SPLIT], done["aux"], strict=True
            )
        }
        self.evaluated += report.evaluated
        self.reused += report.reused + report.joined
        return {
            (i, s): found[(k, s)]
            for i, k in enumerate(keys)
            for s in range(self.n_splits)
        }

    def close(self) -> None:
        if self.data is not None:
            self.data.release()
            self.data = None
        if self.store is not None and self.owns_store:
            self.store.close()
        self.store = None


class DaskSearchMixin:
    """Runs a ``BaseSearchCV``'s fits on Dask, recorded in a dasktune store.

    Mixed in before a scikit-learn search class; its subclasses declare
    ``client``, ``store`` and ``name`` in their ``__init__``. Besides
    scikit-learn's attributes, ``fit`` sets ``search_name_`` (the search's
    name in the store), ``n_fits_run_`` (fits run by this ``fit``) and
    ``n_fits_reused_`` (fits answered from the store).
    """

    # read by BaseSearchCV.fit: the fits go to Dask, not to joblib (an
    # ``n_jobs`` given for compatibility with scikit-learn's is ignored)
    n_jobs: int | None = None
    pre_dispatch = "2*n_jobs"
    client: Any
    store: Any
    name: str | None

    def fit(self, X: Any, y: Any = None, **params: Any) -> Any:
        """Run the fits of every candidate on every split on the Dask cluster.

        As scikit-learn's ``fit``; Dask arrays and dataframes are computed
        once on the cluster, then placed on every worker with the rest of the
        data (see ``dasktune.sklearn.placement``).
        """
        self._validate_params()  # type: ignore[attr-defined]  # before any cluster
        self._get_scorers()  # type: ignore[attr-defined]  # a scorer name unknown
        client = get_client(self.client)
        X, y = indexable(*computed(X, y, client))  # as scikit-learn's fit makes them
        self._dasktune_fit = state = _Fit(self, client, X, y, params)
        # scikit-learn's own loop over the results stays in this thread
        n_jobs, self.n_jobs = self.n_jobs, None
        try:
            super().fit(X, y, **params)  # type: ignore[misc]
        finally:
            self.n_jobs = n_jobs
            state.close()
            del self._dasktune_fit
        self.search_name_ = state.name
        self.n_fits_run_, self.n_fits_reused_ = state.evaluated, state.reused
        return self

    def _on_dask(self, evaluate_candidates: Callable[..., Any]) -> Callable[..., Any]:
        """``evaluate_candidates`` with its fits run on Dask."""

        def evaluate(
            candidate_params: Any,
            cv: Any = None,
            more_results: Any = None,
            callback_ctx: Any = None,
        ) -> Any:
            candidates = [dict(c) for c in candidate_params]
            state = self._dasktune_fit
            state.prepare(cv)
            table = state.fits(candidates) if candidates and state.n_splits else {}
            with _answered(self, table):
                return evaluate_candidates(
                    candidates,
                    cv=_Fixed(state.splits),  # the splits fitted (a one-shot cv too)
                    more_results=more_results,
                    callback_ctx=callback_ctx,
                )

        return evaluate

    def _run_search(
        self, evaluate_candidates: Callable[..., Any], *, callback_ctx: Any = None
    ) -> None:
        super()._run_search(  # type: ignore[misc]
            self._on_dask(evaluate_candidates), callback_ctx=callback_ctx
        )
