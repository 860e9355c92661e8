"""What dasktune's search estimators add to scikit-learn's ``BaseSearchCV``.

scikit-learn's ``BaseSearchCV.fit`` does everything a search estimator does
around the fits — checks, splits, ``cv_results_``, ``best_*``, refit, several
metrics, ``error_score`` — and hands its subclass an ``evaluate_candidates``
that fits each (candidate, split) with ``_fit_and_score`` through joblib.
:class:`DaskSearchMixin` keeps all of it and moves only the fits: its
``evaluate_candidates`` runs them as the trials of a dasktune
:class:`~dasktune.Search` (on the Dask cluster, recorded in a store), then
lets scikit-learn's own run over the results.

For that run, the mixin's ``fit`` is a copy of ``BaseSearchCV.fit`` (the same
code) whose ``_fit_and_score`` is :func:`_answer`: it gives back the dict the
worker's fit returned, so the dicts scikit-learn reads are exactly those of
its own function. Nothing of scikit-learn is changed: its module, its class
and every other caller keep the original function.
"""

from __future__ import annotations

import copy
import types
from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Any

import cloudpickle
import distributed
import sklearn.model_selection._search as _sk_search
from sklearn.base import _fit_context, clone
from sklearn.utils.validation import indexable

from dasktune.records import TrialStatus
from dasktune.run.cluster import capacity, get_client
from dasktune.run.evaluate import failure_exception
from dasktune.search import Search
from dasktune.sklearn.folds import SPLIT, FoldFit, FoldFits, candidate_key, trial_params
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


def _answer(*args: Any, caller: Any, **kwargs: Any) -> Any:
    """``_fit_and_score`` in the mixin's copy of ``BaseSearchCV.fit``: the
    dict the worker's fit of this (candidate, split) returned."""
    key = (kwargs["candidate_progress"][0], kwargs["split_progress"][0])
    return copy.deepcopy(caller._dasktune_answers[key])  # sklearn fills in errors


def _answered_fit() -> Callable[..., Any]:
    """``BaseSearchCV.fit``, the same code and decorator, its globals a copy of
    its module's with ``_fit_and_score`` answered by :func:`_answer`."""
    original = _sk_search.BaseSearchCV.fit
    inner = getattr(original, "__wrapped__", None)
    if inner is None or "_fit_and_score" not in _names(inner.__code__):
        msg = (  # pragma: no cover - a scikit-learn whose fit is made otherwise
            f"dasktune.sklearn does not know this scikit-learn's search fit "
            f"({_SKLEARN}): BaseSearchCV.fit no longer calls _fit_and_score "
            "itself; use the scikit-learn version dasktune[sklearn] names"
        )
        raise ImportError(msg)
    namespace = dict(inner.__globals__, _fit_and_score=_answer)
    fit = types.FunctionType(
        inner.__code__, namespace, inner.__name__, inner.__defaults__, inner.__closure__
    )
    fit.__kwdefaults__ = inner.__kwdefaults__
    fit.__doc__ = inner.__doc__
    return _fit_context(prefer_skip_nested_validation=False)(fit)  # as sklearn's


def _names(code: types.CodeType) -> set[str]:
    """The global names ``code`` and the functions defined in it use."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


_FIT = _answered_fit()


def _check_picklable(candidates: list[dict[str, Any]]) -> None:
    """Raise ``TypeError`` naming the first candidate that cannot be pickled
    to the workers (before any of them is sent)."""
    for candidate in candidates:
        try:
            cloudpickle.dumps(candidate)
        except Exception as err:
            names = ", ".join(sorted(candidate))
            msg = (
                f"a candidate's parameters ({names}) cannot be pickled to be sent "
                f"to the Dask workers: {err}; give values that can (numbers, "
                "strings, estimators), and make unpicklable ones on the workers"
            )
            raise TypeError(msg) from err


def _window(n_fits: int, threads: int, durable: bool) -> int:
    """How many fits are claimed and sent together. Without a store of the
    user's (nothing to resume), all of them: Dask schedules them with no
    pause. With one, a quarter of them, at least four per worker thread:
    each group is recorded once all its fits are back (a fit interrupted then
    fits again only the group in flight), and the cluster's threads idle only
    at a group's end.

    >>> _window(60, 2, True), _window(1000, 16, True), _window(6, 2, True)
    (15, 250, 8)
    >>> _window(60, 2, False)
    60
    """
    if not durable:
        return max(1, n_fits)
    return max(4 * threads, -(-n_fits // 4))


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
        _check_picklable(candidates)
        fit = FoldFit(
            self.estimator,
            scorers,
            refit_metric if isinstance(refit_metric, str) else None,
            owner.return_train_score,
            owner.error_score,
        )
        objective = FoldFits(
            self.client,
            self.data,
            fit,
            dict(zip(keys, candidates, strict=True)),
            self.name,
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
            max_in_flight=_window(
                len(trials), capacity(self.client), owner.store is not None
            ),
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
            _FIT(self, X, y, **params)
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
            self._dasktune_answers = table  # read by _answer
            try:
                return evaluate_candidates(
                    candidates,
                    cv=_Fixed(state.splits),  # the splits fitted (a one-shot cv too)
                    more_results=more_results,
                    callback_ctx=callback_ctx,
                )
            finally:
                del self._dasktune_answers

        return evaluate

    def _run_search(
        self, evaluate_candidates: Callable[..., Any], *, callback_ctx: Any = None
    ) -> None:
        super()._run_search(  # type: ignore[misc]
            self._on_dask(evaluate_candidates), callback_ctx=callback_ctx
        )
