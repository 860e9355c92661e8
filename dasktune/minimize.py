"""``minimize``: scipy's global optimizers (and SPSA) in parallel, scipy's way.

:func:`minimize` runs ``differential_evolution``, ``dual_annealing``,
``direct``, ``shgo`` or ``"spsa"`` on the driver loop: DE's generations, shgo's
sampling points and the finite differences of the L-BFGS-B local searches go
out as batches of futures; ``dual_annealing`` and ``direct``, serial by design,
run as ``n_workers`` replicas at once.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from scipy.optimize import OptimizeResult

from dasktune._checks import (
    check_bool,
    check_callable,
    check_int,
    check_timeout,
    func_name,
)
from dasktune.optim.bounds import as_pairs
from dasktune.optim.replicas import ReplicaPool
from dasktune.optim.scipy_bridge import METHODS, ScipyAskTell, check_kwargs
from dasktune.optim.spsa import check_bounds
from dasktune.records import MemoryRecorder
from dasktune.run.base import BatchObjective, check_trial_timeout
from dasktune.run.local import run_here_first
from dasktune.run.policy import ExecutionPolicy, with_trials
from dasktune.run.scipy_here import (
    HereCalls,
    Moved,
    hand_back_random_state,
    moved_policy,
    replay_kwargs,
    run_scipy_here,
    skip_callbacks,
)
from dasktune.run.summary import RunReport
from dasktune.spsa_run import SPSA

if TYPE_CHECKING:
    # imported when a run needs them: a run kept in this process never
    # imports distributed (dasktune.run.policy)
    import distributed
    from distributed.security import Security

    from dasktune.store.sql import TrialStore

__all__ = ["minimize"]

logger = logging.getLogger("dasktune")


def _recorder(
    store: str | os.PathLike[str] | TrialStore | None, name: str, fun: Any
) -> Any:
    if store is None:
        return MemoryRecorder()
    from dasktune.provenance import provenance
    from dasktune.store.recorder import StoreRecorder
    from dasktune.store.sql import TrialStore, check_store

    check_store(store)
    opened = store if isinstance(store, TrialStore) else TrialStore(store)
    search_id = opened.open_search(
        name, space=None, direction="minimize", metadata=provenance(fun)
    )
    driver_id = opened.register_driver(search_id, {"optimizer": "minimize"})
    return StoreRecorder(opened, search_id, driver_id, False, 30.0)


def minimize(
    fun: Callable[..., float] | BatchObjective,
    bounds: Any,
    method: str = "differential_evolution",
    *,
    args: tuple[Any, ...] = (),
    client: distributed.Client | None = None,
    security: Security | None = None,
    seed: int | None = None,
    n_workers: int | None = None,
    maxfev: int | None = None,
    callback: Callable[..., Any] | None = None,
    store: str | os.PathLike[str] | TrialStore | None = None,
    name: str | None = None,
    progress: bool = False,
    resources: Mapping[str, float] | None = None,
    timeout: float | None = None,
    trial_timeout: float | None = None,
    execution: str = "auto",
    **options: Any,
) -> OptimizeResult:
    """Minimise ``fun(x, *args)`` within ``bounds``, in parallel on Dask.

    Parameters
    ----------
    fun : callable or BatchObjective
        ``fun(x, *args) -> float``; or a ``ProducerConsumer`` with a reduction.
        With ``vectorized=True`` (DE only), ``fun(X, *args)`` takes an ``(N, S)``
        array and returns ``S`` values.
    bounds : sequence of (low, high) or scipy.optimize.Bounds
        Finite.
    method : str, default "differential_evolution"
        ``"differential_evolution"``, ``"dual_annealing"``, ``"direct"``,
        ``"shgo"`` or ``"spsa"``.
    args : tuple
    client : distributed.Client, optional
    security : distributed.security.Security, optional
        TLS certificates for a ``tls://`` address; see :func:`dasktune.get_client`.
    seed : int, optional
        scipy's ``rng`` (DE, dual_annealing), the replicas' seeds, or SPSA's.
        scipy's own ``rng=`` (an int or a ``numpy.random.Generator``) is
        taken instead, for the replicas too; not both.
    n_workers : int, optional
        Replicas of ``dual_annealing``/``direct`` (default: the cluster's thread
        count); ignored by DE and shgo, whose own batches fill the cluster.
    maxfev : int, optional
        Stop after this many evaluations (the best so far is returned).
    callback : callable, optional
        Passed to scipy or SPSA, and always run in this process (replicas of
        ``dual_annealing``/``direct`` then run on the driver loop, calling it one
        at a time). ``True`` stops DE, ``dual_annealing`` (every replica) and
        SPSA; scipy's ``direct`` and ``shgo`` ignore the value.
    store, name : optional
        Record every evaluation in a trial store as a ``Search`` named ``name``
        would (default name ``minimize-<function>``); a later call with the same
        store and name reuses the evaluations recorded there. Without a store,
        ``name`` only labels the run's tasks on the Dask dashboard.
    progress : bool, default False
    resources : mapping, optional
        Dask worker resources each evaluation holds while it runs
        (``{"GPU": 1}``): it runs only on a worker that declared them, one
        evaluation per task (a whole serial replica per task for
        ``dual_annealing`` and ``direct``).
    timeout : float, optional
        Seconds; then the evaluations in flight are cancelled and the best
        point evaluated so far is returned with ``success=False`` and a
        message saying how far it got (as scipy does for ``maxiter``).
        ``TimeoutError`` if no evaluation finished by then.
    trial_timeout : float, optional
        Seconds one evaluation may run. Past it the evaluation fails with
        ``dasktune.exceptions.TrialTimeoutError`` ("timed out after N s") and
        is treated as any failed evaluation: told ``+inf``, the run goes on,
        and when every evaluation failed that error is raised. Its worker
        thread is freed (the worker restarted if the call does not stop; see
        ``Search.run``). ``dual_annealing`` and ``direct`` then run their
        replicas on the driver loop, each evaluation a trial. Not for a
        ``ProducerConsumer``.
    execution : {"auto", "local", "tasks", "feed"}, default "auto"
        Where the evaluations run. ``"auto"`` times the first ones in this
        process and keeps the run here, starting no cluster, when they are
        cheaper than a task's dispatch cost (see
        :class:`dasktune.run.policy.ExecutionPolicy`); ``"local"`` always runs
        here; ``"tasks"`` (or ``"feed"``) always on the cluster. A client,
        ``resources``, a store, ``trial_timeout``, ``progress``,
        ``vectorized=True``, a ``ProducerConsumer`` and the replicated methods
        (``dual_annealing``, ``direct``) run on the cluster. The result is the
        same wherever it ran.
    **options
        Passed to the scipy function (``maxiter``, ``popsize``, ``polish``,
        ``maxfun``, ``vectorized``, ...) or to ``SPSA`` (``maxiter``, ``c_par``,
        ``x0``...). With DE's ``vectorized=True`` each task's chunk of a
        generation is one call, and ``nfev`` counts generations as scipy does.

    Returns
    -------
    scipy.optimize.OptimizeResult
        scipy's result. For DE with a seed it is exactly
        ``differential_evolution(fun, bounds, rng=seed, updating="deferred",
        **options)`` — the same ``x``, ``fun`` and ``nfev`` (scipy's count, points
        it proposes again included); ``nfev_evaluated`` is the number of
        evaluations actually run. For the replicated methods: the best
        replica's ``x`` and ``fun``, ``nfev`` summed over all replicas, and
        ``results``, every replica's own result. ``execution`` says where
        the evaluations ran (``"local"`` or ``"cluster"``) and
        ``execution_reason`` why.

    Raises
    ------
    ValueError
        For bad or infinite bounds, a bad ``maxfev``/``n_workers``/``timeout``,
        or an ``execution`` that is not one of its choices or cannot run with
        the other arguments.
    TimeoutError
        When ``timeout`` passed before any evaluation finished.
    TypeError
        For a keyword the method does not take, ``vectorized=True`` outside DE
        or with a ``ProducerConsumer``, or a non-callable ``fun``/``callback``.
    Exception
        When every evaluation failed: the first failure's own exception, its
        traceback on the worker in a note (never ``fun=inf``). A replica run
        whole as a task (``dual_annealing``, ``direct``) raises any failure so.

    Examples
    --------
    >>> res = minimize(loss, [(-5, 5)] * 4, seed=0, maxiter=200)  # doctest: +SKIP
    >>> res.x, res.fun, res.nfev  # doctest: +SKIP
    """
    pairs = _check_arguments(
        fun, bounds, method, args, maxfev=maxfev, n_workers=n_workers,
        timeout=timeout, progress=progress, trial_timeout=trial_timeout,
        seed=seed, rng=options.get("rng"), callback=callback,
    )  # fmt: skip
    vectorized = _check_vectorized(method, fun, options.pop("vectorized", False))
    label = (
        name or f"minimize-{func_name(fun) if callable(fun) else type(fun).__name__}"
    )
    if method == "spsa":
        return _spsa(
            fun, pairs, args, options, maxfev=maxfev, timeout=timeout, seed=seed,
            client=client, security=security, callback=callback,
            progress=progress, resources=resources, trial_timeout=trial_timeout,
            execution=execution,
        )  # fmt: skip
    kwargs = dict(options)
    if vectorized:
        kwargs["vectorized"] = True
    if callback is not None:
        kwargs["callback"] = callback
    check_kwargs(method, kwargs, len(pairs))
    policy = ExecutionPolicy(
        execution,
        what=f"minimize({method!r})",
        client=client,
        resources=resources,
        batch=isinstance(fun, BatchObjective),
        trial_timeout=trial_timeout,
        store=store is not None,
        progress=progress,
        cluster_only=_cluster_only(method, vectorized),
        expected=_expected(method, kwargs, len(pairs), maxfev),
    )
    if method in ("differential_evolution", "dual_annealing") and seed is not None:
        kwargs["rng"] = seed
    if policy.forced is None or policy.forced.where == "local":
        return _here_first(
            method, pairs, kwargs, fun, args, policy=policy, label=label,
            maxfev=maxfev, timeout=timeout, security=security,
        )  # fmt: skip
    return _on_cluster(
        method, pairs, kwargs, fun, args, policy=policy, label=label,
        client=client, security=security, seed=seed, n_workers=n_workers,
        maxfev=maxfev, callback=callback, store=store, progress=progress,
        resources=resources, timeout=timeout, trial_timeout=trial_timeout,
        vectorized=vectorized,
    )  # fmt: skip


def _check_arguments(
    fun: Any,
    bounds: Any,
    method: str,
    args: Any,
    *,
    maxfev: int | None,
    n_workers: int | None,
    timeout: float | None,
    progress: bool,
    trial_timeout: float | None,
    seed: int | None,
    rng: Any,
    callback: Callable[..., Any] | None,
) -> np.ndarray:
    """Check ``minimize``'s arguments before any work; the bounds as
    ``(low, high)`` pairs."""
    if not isinstance(fun, BatchObjective):
        check_callable("fun", fun)
    if method not in (*METHODS, "spsa"):
        msg = f"method must be one of {[*METHODS, 'spsa']}, got {method!r}"
        raise ValueError(msg)
    if not isinstance(args, tuple):
        msg = f"args must be a tuple of extra arguments, got {type(args).__name__}"
        raise TypeError(msg)
    pairs = as_pairs(
        bounds,
        finite=f"minimize(method={method!r})",
        fixed=method == "differential_evolution",  # scipy's DE takes low == high
    )
    check_int("maxfev", maxfev, 1, optional=True)
    check_int("n_workers", n_workers, 1, optional=True)
    check_timeout(timeout)
    check_bool("progress", progress)
    check_trial_timeout(trial_timeout, batch=isinstance(fun, BatchObjective))
    if seed is not None and rng is not None:
        msg = f"minimize({method!r}) takes seed= or scipy's rng=, not both"
        raise TypeError(msg)
    if callback is not None:
        check_callable("callback", callback)
    return pairs


def _spsa(
    fun: Any,
    pairs: np.ndarray,
    args: tuple[Any, ...],
    options: dict[str, Any],
    *,
    maxfev: int | None,
    timeout: float | None,
    seed: int | None,
    client: distributed.Client | None,
    security: Security | None,
    callback: Callable[..., Any] | None,
    progress: bool,
    resources: Mapping[str, float] | None,
    trial_timeout: float | None,
    execution: str,
) -> OptimizeResult:
    """``method="spsa"``: :func:`dasktune.SPSA`, started from the bounds'
    middle unless ``x0`` is given, its ``maxiter`` from ``maxfev``."""
    x0 = options.pop("x0", pairs.mean(axis=1))
    check_bounds(pairs, np.asarray(x0, dtype=float))
    if maxfev is not None:
        options.setdefault("maxiter", max(1, (maxfev - 17) // 2))
    options.setdefault("print_iters", None)
    if timeout is not None:
        msg = (
            "minimize(method='spsa') takes no timeout; bound it with maxiter "
            "or maxfev, or use another method"
        )
        raise TypeError(msg)
    return SPSA(fun, x0, args=args, bounds=pairs, seed=seed, client=client,
                security=security, callback=callback, progress=progress,
                resources=resources, trial_timeout=trial_timeout,
                execution=execution, **options)  # fmt: skip


def _here_first(
    method: str,
    pairs: np.ndarray,
    kwargs: dict[str, Any],
    fun: Any,
    args: tuple[Any, ...],
    *,
    policy: ExecutionPolicy,
    label: str,
    maxfev: int | None,
    timeout: float | None,
    security: Security | None,
) -> OptimizeResult:
    """One scipy method run in this process first, handed over to the
    cluster when its evaluations are worth a task: scipy's own function in
    this thread first (:mod:`dasktune.run.scipy_here`); once the policy moves
    the run, the same run replayed on the ask/tell path
    (:mod:`dasktune.run.local`), its evaluations answered from the cache."""
    calls = HereCalls(
        cast(Callable[..., Any], fun), args, policy=policy, name=label,
        maxfev=maxfev, timeout=timeout,
    )  # fmt: skip
    replay = replay_kwargs(method, kwargs)
    try:
        result = run_scipy_here(method, pairs, kwargs, calls)
    except Moved as moved:
        try:
            return _replayed(
                method, pairs, replay, fun, args, calls, moved, policy=policy,
                label=label, maxfev=maxfev, timeout=timeout, security=security,
            )  # fmt: skip
        finally:
            hand_back_random_state(kwargs, replay)
    report = calls.report
    assert calls.decision is not None
    if result is None:  # maxfev or the timeout
        result = _stopped(method, report, report.evaluated + report.failed)
    return _reported(result, "local", calls.decision.reason)


def _replayed(
    method: str,
    pairs: np.ndarray,
    kwargs: dict[str, Any],
    fun: Any,
    args: tuple[Any, ...],
    calls: HereCalls,
    moved: Moved,
    *,
    policy: ExecutionPolicy,
    label: str,
    maxfev: int | None,
    timeout: float | None,
    security: Security | None,
) -> OptimizeResult:
    """The run the policy moved to the cluster, replayed from its start on
    the ask/tell path: the points evaluated here answered from ``calls``'
    cache, the callback's calls made here not made again."""
    here = calls.report
    done = here.evaluated + here.failed
    replay = skip_callbacks(kwargs, moved.callbacks)
    local = ScipyAskTell(method, pairs, cache=calls.cache, **_with_args(replay, args))
    try:
        report = run_here_first(
            local, cast(Callable[..., Any], fun), args,
            policy=moved_policy(policy, moved.decision), name=label,
            n_trials=None if maxfev is None else maxfev - done,
            timeout=None if timeout is None else max(timeout - here.elapsed, 1e-3),
            security=security, timed=calls.timed,
        )  # fmt: skip
    finally:
        local.close()
    report.evaluated += here.evaluated
    report.failed += here.failed
    if here.best_value < report.best_value:
        report.best_value, report.best_params = here.best_value, here.best_params
    if local.result is None:
        result = _stopped(method, report, local.evaluations + done)
    else:
        result = local.result
        result.nfev_evaluated = report.evaluated
    return _reported(result, report.execution, report.execution_reason)


def _on_cluster(
    method: str,
    pairs: np.ndarray,
    kwargs: dict[str, Any],
    fun: Any,
    args: tuple[Any, ...],
    *,
    policy: ExecutionPolicy,
    label: str,
    client: distributed.Client | None,
    security: Security | None,
    seed: int | None,
    n_workers: int | None,
    maxfev: int | None,
    callback: Callable[..., Any] | None,
    store: str | os.PathLike[str] | TrialStore | None,
    progress: bool,
    resources: Mapping[str, float] | None,
    timeout: float | None,
    trial_timeout: float | None,
    vectorized: bool,
) -> OptimizeResult:
    """A run on the cluster: DE and shgo through the driver; the replicas of
    ``dual_annealing`` and ``direct`` as whole tasks, or through the driver
    when each evaluation must be a trial (a store, ``maxfev``, a callback, a
    timeout, a batch objective)."""
    assert policy.forced is not None  # decided: the cluster
    logger.debug(
        "%s: execution cluster: %s", label, policy.forced.reason
    )  # fmt: skip
    from dasktune.run.cluster import capacity, get_client
    from dasktune.run.options import RunOptions
    from dasktune.run.vector import run_vector
    from dasktune.store.sql import TrialStore, check_store

    run_options = RunOptions(
        name=label, n_trials=maxfev, progress=progress, vectorized=vectorized,
        resources=resources, execution=policy.driver_execution, timeout=timeout,
        trial_timeout=trial_timeout, expected=policy.expected,
    )  # fmt: skip
    # a store given as a URL or path is opened before the cluster starts: a
    # store that cannot be used (foreign, read-only, newer) fails first
    owned = None
    if store is not None and not isinstance(store, TrialStore):
        check_store(store)
        owned = store = TrialStore(store)
    try:
        client = get_client(client, security=security)
    except BaseException:
        if owned is not None:
            owned.close()
        raise
    optimizer: ScipyAskTell | ReplicaPool
    if method in ("differential_evolution", "shgo"):
        optimizer = ScipyAskTell(method, pairs, **_with_args(kwargs, args))
    else:
        given = kwargs.pop("rng", None)
        if given is not None and seed is None:
            seed = _replica_seed(given, method)
        replicas = n_workers if n_workers is not None else capacity(client)
        if (
            store is None
            and maxfev is None
            and callback is None
            and timeout is None
            and trial_timeout is None
            and not isinstance(fun, BatchObjective)
        ):
            # serial by design: each replica runs whole as one task, its
            # evaluations on the worker, free of per-evaluation round trips
            from dasktune.run.replica_tasks import replicas_as_tasks

            results = replicas_as_tasks(
                method, pairs, replicas, seed, kwargs, fun, args, client, label,
                resources,
            )  # fmt: skip
            whole = _best_of(results, sum(r.nfev for r in results))
            return _reported(whole, "cluster", policy.forced.reason)
        if callback is not None:
            # the replicas run on this process, so the callback's side effects
            # stay here; one replica calls it at a time
            kwargs["callback"] = _ReplicaCallback(callback)
        optimizer = ReplicaPool(
            method,
            pairs,
            replicas,
            seed=seed,
            restart=False,
            **_with_args(kwargs, args),
        )
    try:
        recorder = _recorder(store, label, fun)
        report, _ = run_vector(
            optimizer, fun, args, run_options, client=client, recorder=recorder
        )
    finally:
        optimizer.close()
        if owned is not None:
            owned.close()  # opened here, from a URL or a path
    reason = with_trials(
        policy.forced.reason, report.execution, report.execution_reason
    )
    return _reported(_result(optimizer, report), "cluster", reason)


def _cluster_only(method: str, vectorized: bool) -> str | None:
    """Why a run of ``method`` can only run on the cluster, if it can."""
    if vectorized:
        return "vectorized=True (its columns are evaluated by the cluster's driver)"
    if method not in ("differential_evolution", "shgo"):
        return f"method={method!r} (its replicas run on the cluster)"
    return None


def _expected(
    method: str, kwargs: dict[str, Any], n: int, maxfev: int | None
) -> int | None:
    """How many evaluations a run makes at most, when known: DE's population
    times its generations (scipy's defaults: popsize 15, maxiter 1000; the
    polish not counted), or ``maxfev``."""
    known = None
    if method == "differential_evolution":
        init = kwargs.get("init", "latinhypercube")
        size = len(init) if not isinstance(init, str) else kwargs.get("popsize", 15) * n
        known = int(size) * (int(kwargs.get("maxiter", 1000)) + 1)
    if maxfev is not None:
        known = maxfev if known is None else min(known, maxfev)
    return known


def _reported(result: OptimizeResult, where: str, reason: str) -> OptimizeResult:
    """``result`` saying where its evaluations ran, and why."""
    result.execution = where
    result.execution_reason = reason
    return result


def _with_args(kwargs: dict[str, Any], args: tuple[Any, ...]) -> dict[str, Any]:
    """The scipy keywords with ``args``, which scipy passes on to a ``jac`` or
    ``hess`` in ``minimizer_kwargs`` (the objective gets them on the workers)."""
    return {**kwargs, "args": args} if args else kwargs


def _replica_seed(rng: Any, method: str) -> int:
    """The replicas' seed from scipy's ``rng=``: an int as it is; anything
    else ``numpy.random.default_rng`` takes (a Generator, a SeedSequence, a
    BitGenerator) draws it. Each replica gets its own stream from it."""
    if isinstance(rng, int | np.integer) and not isinstance(rng, bool):
        return int(rng)
    try:
        return int(np.random.default_rng(rng).integers(2**63))
    except (TypeError, ValueError) as err:
        msg = (
            f"minimize({method!r}): rng must be an int or what "
            "numpy.random.default_rng takes (a Generator, a SeedSequence; it seeds "
            f"every replica), got {type(rng).__name__}: {rng!r}"
        )
        raise TypeError(msg) from err


def _best_of(results: list[OptimizeResult], evaluated: int) -> OptimizeResult:
    """The replicas' result: the best replica's, as scipy gave it (``x``,
    ``fun``, ``status``, ``success``, ``message``), with the evaluations,
    iterations, gradients and Hessians of all, and every replica's own result
    in ``results``."""
    best = min(results, key=lambda r: r.fun)
    merged = OptimizeResult(best)
    merged.update(
        nfev=sum(r.nfev for r in results),
        nfev_evaluated=evaluated,
        nit=sum(getattr(r, "nit", 0) for r in results),
        replicas=len(results),
        results=results,
    )
    for count in ("njev", "nhev"):  # the local searches' gradients, Hessians
        if all(count in r for r in results):
            merged[count] = sum(r[count] for r in results)
    return merged


def _check_vectorized(method: str, fun: Any, vectorized: Any) -> bool:
    """``vectorized`` as a bool, refused where it cannot be honoured."""
    if not isinstance(vectorized, bool | np.bool_):
        msg = f"vectorized must be True or False, got {vectorized!r}"
        raise TypeError(msg)
    if not vectorized:
        return False
    if method != "differential_evolution":
        msg = (
            f"vectorized=True is for method='differential_evolution' only: scipy's "
            f"{method} evaluates one point at a time and takes no vectorized option; "
            "drop vectorized=True or use differential_evolution"
        )
        raise TypeError(msg)
    if isinstance(fun, BatchObjective):
        msg = (
            "vectorized=True needs a plain function taking an (N, S) array; a "
            f"{type(fun).__name__} already evaluates each batch in one round trip "
            "per shard: drop vectorized=True"
        )
        raise TypeError(msg)
    return True


class _ReplicaCallback:
    """The user's callback shared by replicas: called by one replica at a time.

    Once it returns ``True``, every replica is told to stop at its next call
    (``dual_annealing`` stops; scipy's ``direct`` ignores the value).
    """

    def __init__(self, callback: Callable[..., Any]) -> None:
        self.callback = callback
        self.stopped = False
        self._lock = threading.Lock()
        functools.update_wrapper(self, callback)  # scipy reads its signature

    def __call__(self, *args: Any, **kwargs: Any) -> bool:
        with self._lock:
            if not self.stopped:
                self.stopped = bool(self.callback(*args, **kwargs))
            return self.stopped


def _result(optimizer: ScipyAskTell | ReplicaPool, report: RunReport) -> OptimizeResult:
    if isinstance(optimizer, ScipyAskTell):
        result = optimizer.result
        if result is not None:
            result.nfev_evaluated = report.evaluated
            return result
        evaluated = optimizer.evaluations
    else:
        results = [r for r in optimizer.results if r is not None]
        if results and optimizer.finished:
            return _best_of(results, report.evaluated)
        evaluated = report.evaluated
    return _stopped(optimizer.method, report, evaluated)


def _stopped(method: str, report: RunReport, evaluated: int) -> OptimizeResult:
    """The result of a run stopped early (maxfev, timeout): the best point
    evaluated, ``evaluated`` points asked."""
    x = None if report.best_params is None else np.asarray(report.best_params["x"])
    if report.stopped == "timeout":
        how_far = (
            f"{report.evaluated} evaluations done ({report.failed} failed) in "
            f"{report.elapsed:.1f} s"
        )
        if x is None:
            msg = (
                f"minimize({method!r}) reached its timeout with no "
                f"evaluation done: {how_far}; the evaluations in flight were "
                "cancelled. Give a larger timeout, or check that the workers run"
            )
            raise TimeoutError(msg)
        message = f"stopped by the timeout after {how_far}"
    else:
        message = f"stopped after maxfev={report.evaluated} evaluations"
    return OptimizeResult(
        x=x,
        fun=report.best_value if x is not None else math.inf,
        nfev=evaluated,
        nfev_evaluated=report.evaluated,
        success=False,
        message=message,
    )
