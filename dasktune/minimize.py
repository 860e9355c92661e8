"""``minimize``: scipy's global optimizers (and SPSA) in parallel, scipy's way.

:func:`minimize` runs ``differential_evolution``, ``dual_annealing``,
``direct``, ``shgo`` or ``"spsa"`` on the driver loop: DE's generations, shgo's
sampling points and the finite differences of the L-BFGS-B local searches go
out as batches of futures; ``dual_annealing`` and ``direct``, serial by design,
run as ``n_workers`` replicas at once.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

import distributed
import numpy as np
import scipy.optimize
from scipy.optimize import OptimizeResult

from dasktune._checks import check_callable, check_int
from dasktune._vector import run_vector
from dasktune.cluster import capacity, get_client
from dasktune.driver import BatchObjective, MemoryRecorder
from dasktune.mapping import Shipped, func_name
from dasktune.scipy_asktell import (
    METHODS,
    ReplicaPool,
    ScipyAskTell,
    check_kwargs,
    replica_spec,
)
from dasktune.spsa import SPSA, check_bounds
from dasktune.store import TrialStore

__all__ = ["minimize"]


def _recorder(store: str | TrialStore | None, name: str, fun: Any) -> Any:
    if store is None:
        return MemoryRecorder()
    from dasktune.search import StoreRecorder, provenance

    opened = TrialStore(store) if isinstance(store, str) else store
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
    seed: int | None = None,
    n_workers: int | None = None,
    maxfev: int | None = None,
    callback: Callable[..., Any] | None = None,
    store: str | TrialStore | None = None,
    name: str | None = None,
    progress: bool = False,
    **options: Any,
) -> OptimizeResult:
    """Minimise ``fun(x, *args)`` within ``bounds``, in parallel on Dask.

    Parameters
    ----------
    fun : callable or BatchObjective
        ``fun(x, *args) -> float``; or a ``ProducerConsumer`` with a reduction.
    bounds : sequence of (low, high)
    method : str, default "differential_evolution"
        ``"differential_evolution"``, ``"dual_annealing"``, ``"direct"``,
        ``"shgo"`` or ``"spsa"``.
    args : tuple
    client : distributed.Client, optional
    seed : int, optional
        scipy's ``rng`` (DE, dual_annealing), the replicas' seeds, or SPSA's.
    n_workers : int, optional
        Replicas of ``dual_annealing``/``direct`` (default: the cluster's thread
        count); ignored by DE and shgo, whose own batches fill the cluster.
    maxfev : int, optional
        Stop after this many evaluations (the best so far is returned).
    callback : callable, optional
        Passed to scipy (``callback(intermediate_result)``) or SPSA.
    store, name : optional
        Record every evaluation in a trial store as a ``Search`` named ``name``
        would (default name ``minimize-<function>``); a later call with the same
        store and name reuses the evaluations recorded there.
    progress : bool, default False
    **options
        Passed to the scipy function (``maxiter``, ``popsize``, ``polish``,
        ``maxfun``, ...) or to ``SPSA`` (``maxiter``, ``c_par``, ``x0``...).

    Returns
    -------
    scipy.optimize.OptimizeResult
        scipy's result. For DE with a seed it is exactly
        ``differential_evolution(fun, bounds, rng=seed, updating="deferred",
        **options)`` — the same ``x``, ``fun`` and ``nfev`` (scipy's count, points
        it proposes again included); ``nfev_evaluated`` is the number of
        evaluations actually run. For the replicated methods: the best
        replica's ``x`` and ``fun``, ``nfev`` summed over all replicas, and
        ``results``, every replica's own result.

    Examples
    --------
    >>> res = minimize(loss, [(-5, 5)] * 4, seed=0, maxiter=200)  # doctest: +SKIP
    >>> res.x, res.fun, res.nfev  # doctest: +SKIP
    """
    if not isinstance(fun, BatchObjective):
        check_callable("fun", fun)
    if method not in (*METHODS, "spsa"):
        msg = f"method must be one of {[*METHODS, 'spsa']}, got {method!r}"
        raise ValueError(msg)
    if not isinstance(args, tuple):
        msg = f"args must be a tuple of extra arguments, got {type(args).__name__}"
        raise TypeError(msg)
    pairs = np.asarray(bounds, dtype=float) if _pairs_ok(bounds) else None
    if pairs is None or not np.all(pairs[:, 0] < pairs[:, 1]):
        msg = f"bounds must be a list of (low, high) pairs with low < high, got {bounds!r}"
        raise ValueError(msg)
    check_int("maxfev", maxfev, 1, optional=True)
    check_int("n_workers", n_workers, 1, optional=True)
    if callback is not None:
        check_callable("callback", callback)
    label = (
        name or f"minimize-{func_name(fun) if callable(fun) else type(fun).__name__}"
    )

    if method == "spsa":
        x0 = options.pop("x0", pairs.mean(axis=1))
        check_bounds(pairs, np.asarray(x0, dtype=float))
        if maxfev is not None:
            options.setdefault("maxiter", max(1, (maxfev - 17) // 2))
        options.setdefault("print_iters", None)
        return SPSA(fun, x0, args=args, bounds=pairs, seed=seed, client=client,
                    callback=callback, progress=progress, **options)  # fmt: skip

    kwargs = dict(options)
    if callback is not None:
        kwargs["callback"] = callback
    check_kwargs(method, kwargs, len(pairs))
    client = get_client(client)
    if method in ("differential_evolution", "dual_annealing") and seed is not None:
        kwargs["rng"] = seed
    optimizer: ScipyAskTell | ReplicaPool
    if method in ("differential_evolution", "shgo"):
        optimizer = ScipyAskTell(method, pairs, **kwargs)
    else:
        kwargs.pop("rng", None)
        replicas = n_workers if n_workers is not None else capacity(client)
        if store is None and maxfev is None and not isinstance(fun, BatchObjective):
            # serial by design: each replica runs whole as one task, its
            # evaluations on the worker, free of per-evaluation round trips
            return _replicas_as_tasks(
                method, pairs, replicas, seed, kwargs, fun, args, client, label
            )
        optimizer = ReplicaPool(
            method, pairs, replicas, seed=seed, restart=False, **kwargs
        )
    recorder = _recorder(store, label, fun)
    try:
        report, _ = run_vector(
            optimizer, fun, args, client=client, name=label, recorder=recorder,
            n_trials=maxfev, progress=progress,
        )  # fmt: skip
    finally:
        optimizer.close()
        if store is not None and isinstance(store, str):
            recorder.store.close()
    return _result(optimizer, report)


def _run_replica(
    spec: tuple[Any, dict[str, Any]],
    method: str,
    fun: Callable[..., float],
    args: tuple[Any, ...],
) -> OptimizeResult:
    """On a worker: one whole scipy run."""
    box, kwargs = spec
    bounds = [tuple(pair) for pair in np.asarray(box).tolist()]
    return getattr(scipy.optimize, method)(fun, bounds, args=args, **kwargs)


def _replicas_as_tasks(
    method: str,
    bounds: Any,
    n: int,
    seed: int | None,
    kwargs: dict[str, Any],
    fun: Callable[..., float],
    args: tuple[Any, ...],
    client: distributed.Client,
    label: str,
) -> OptimizeResult:
    rng = np.random.default_rng(seed)
    specs = [replica_spec(method, bounds, i, n, seed, kwargs, rng) for i in range(n)]
    runner = Shipped(partial(_run_replica, method=method, fun=fun, args=args))
    token = uuid.uuid4().hex[:8]
    keys = [f"{label}-replica-{i}-{token}" for i in range(n)]
    futures = client.map(runner, specs, key=keys, pure=False)
    try:
        results = client.gather(futures)
    finally:
        client.cancel(futures)
    best = min(results, key=lambda r: r.fun)
    total = sum(r.nfev for r in results)
    return OptimizeResult(
        x=best.x,
        fun=best.fun,
        nfev=total,
        nfev_evaluated=total,
        nit=sum(getattr(r, "nit", 0) for r in results),
        success=any(r.success for r in results),
        message=f"best of {n} {method} replicas: {best.message}",
        results=results,
    )


def _pairs_ok(bounds: Any) -> bool:
    try:
        pairs = np.asarray(bounds, dtype=float)
    except (TypeError, ValueError):
        return False
    return pairs.ndim == 2 and pairs.shape[1] == 2 and len(pairs) > 0


def _result(optimizer: ScipyAskTell | ReplicaPool, report: Any) -> OptimizeResult:
    if isinstance(optimizer, ScipyAskTell):
        result = optimizer.result
        if result is not None:
            result.nfev_evaluated = report.evaluated
            return result
        evaluated = optimizer.evaluations
    else:
        results = [r for r in optimizer.results if r is not None]
        if results and optimizer.finished:
            best = min(results, key=lambda r: r.fun)
            return OptimizeResult(
                x=best.x,
                fun=best.fun,
                nfev=sum(r.nfev for r in results),
                nfev_evaluated=report.evaluated,
                nit=sum(getattr(r, "nit", 0) for r in results),
                success=any(r.success for r in results),
                message=f"best of {len(results)} {optimizer.method} replicas: {best.message}",
                results=results,
            )
        evaluated = report.evaluated
    # stopped early (maxfev): the best point evaluated
    x = None if report.best_params is None else np.asarray(report.best_params["x"])
    return OptimizeResult(
        x=x,
        fun=report.best_value if x is not None else math.inf,
        nfev=evaluated,
        nfev_evaluated=report.evaluated,
        success=False,
        message=f"stopped after maxfev={report.evaluated} evaluations",
    )
