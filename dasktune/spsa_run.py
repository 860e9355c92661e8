"""``SPSA``: OptimTools' function, each iteration one batch of futures.

The algorithm is :class:`dasktune.optim.spsa.SPSAOptimizer` (pure ask/tell);
this front door runs it (in this process or on the cluster, through the
driver) and returns scipy's ``OptimizeResult``. Named ``spsa_run`` so that
it is not mistaken for the optimizer's module, :mod:`dasktune.optim.spsa`.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from scipy.optimize import OptimizeResult

from dasktune._checks import check_bool, check_callable, func_name
from dasktune.optim.spsa import SPSAOptimizer
from dasktune.run.base import BatchObjective, check_trial_timeout
from dasktune.run.local import run_here_first
from dasktune.run.policy import ExecutionPolicy, with_trials
from dasktune.run.summary import RunReport

if TYPE_CHECKING:
    from distributed.security import Security

__all__ = ["SPSA"]

logger = logging.getLogger("dasktune")


def SPSA(
    fnc: Callable[..., float] | BatchObjective,
    initparams: Any,
    a_par: float | None = None,
    c_par: float = 0.01,
    args: tuple[Any, ...] = (),
    bounds: Any = None,
    param_tol: float | None = None,
    ftol: float = 1e-8,
    maxiter: int = 10000,
    alpha: float = 0.602,
    gamma: float = 0.101,
    print_iters: int | None = 100,
    *,
    A: float | None = None,
    n_perturbations: int = 1,
    maxgrad: float | None = None,
    max_step: float | None = None,
    seed: int | np.random.Generator | None = None,
    client: Any = None,
    security: Security | None = None,
    callback: Callable[[OptimizeResult], Any] | None = None,
    blocking: bool = False,
    allowed_increase: float | None = None,
    paired: bool | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    target_step: float | None = None,
    n_small: int = 5,
    adaptive: bool = True,
    progress: bool = False,
    resources: Mapping[str, float] | None = None,
    trial_timeout: float | None = None,
    execution: str = "auto",
) -> OptimizeResult:
    """Minimise ``fnc(x, *args)`` by SPSA, each iteration one batch of futures.

    OptimTools' signature on Dask; see :mod:`dasktune.optim.spsa` for the algorithm and
    :class:`SPSAOptimizer` for every option.

    Parameters
    ----------
    fnc : callable or BatchObjective
        ``fnc(x, *args) -> float``; if it takes a ``seed`` keyword, both points
        of a pair get the same seed (common random numbers; ``paired=False``
        turns it off). A ``ProducerConsumer`` with a reduction evaluates each
        batch where its data lives.
    initparams : array_like
    a_par : float, optional
        Step gain; ``None`` (default) calibrates it (Spall's rule).
    c_par : float, default 0.01
    args : tuple
    bounds : sequence of (low, high), optional
    param_tol : float, optional
        Reject steps moving a parameter by more than this; retry the iteration.
    ftol : float, default 1e-8
        The relative change of the parameters under which, for ``n_small``
        consecutive iterations, the run has converged.
    maxiter : int, default 10000
    alpha, gamma : float
    print_iters : int or None, default 100
        Print progress every so many iterations; ``None`` is silent.
    A, n_perturbations, maxgrad, max_step, blocking, allowed_increase, target_step, n_small, adaptive
        See :class:`SPSAOptimizer`.
    seed : int or numpy.random.Generator, optional
        With a seed, the iterates do not depend on the number of workers.
    client : distributed.Client, optional
    security : distributed.security.Security, optional
        TLS certificates for a ``tls://`` address; see :func:`dasktune.get_client`.
    callback : callable, optional
        ``callback(intermediate_result)`` each iteration; ``True`` stops.
    paired : bool, optional
        Default: whether ``fnc`` takes a ``seed`` keyword.
    checkpoint : str or path, optional
        Save the state there after every iteration, and resume from it.
    progress : bool, default False
        A progress bar of evaluations.
    resources : mapping, optional
        Dask worker resources each evaluation holds while it runs.
    trial_timeout : float, optional
        Seconds one evaluation may run; past it the evaluation fails with
        ``dasktune.exceptions.TrialTimeoutError`` ("timed out after N s"), as
        any failing evaluation does (see Raises), and its worker thread is
        freed (see ``Search.run``). Not for a ``ProducerConsumer``.
    execution : {"auto", "local", "tasks", "feed"}, default "auto"
        Where the evaluations run: ``"auto"`` times the first ones in this
        process and keeps the run here, starting no cluster, when they are
        cheaper than a task's dispatch cost; ``"local"`` always here;
        ``"tasks"`` (or ``"feed"``) on the cluster. A client, ``resources``,
        ``trial_timeout``, ``progress`` and a ``ProducerConsumer`` run on the
        cluster. See :class:`dasktune.run.policy.ExecutionPolicy`. With a
        seed the iterates are the same wherever they ran.

    Returns
    -------
    scipy.optimize.OptimizeResult
        ``x``, ``fun`` (an evaluation at ``x`` in the last batch), ``nit``,
        ``nfev``, ``success``, ``message``, ``history`` (``x`` and ``fun`` per
        iteration, ``fun`` the mean of that iteration's evaluations), and the
        gains ``a``, ``c``, ``A``; ``execution`` (``"local"`` or
        ``"cluster"``) and ``execution_reason``.

    Raises
    ------
    ValueError
        For bad input (before any evaluation; a bad ``execution`` too), or when the objective returns
        NaN or inf (the message names the point).
    Exception
        When an evaluation fails, the objective's own exception (its worker
        traceback in a note) if no evaluation had succeeded, else SPSA's
        ``ValueError`` caused by it.

    Examples
    --------
    >>> res = SPSA(loglike, [0.0, 1.0], bounds=[(-5, 5), (0.1, 10)], seed=1)  # doctest: +SKIP
    >>> res.x, res.fun  # doctest: +SKIP
    """
    _check_arguments(fnc, args, callback, progress, trial_timeout)
    if paired is None:
        paired = not isinstance(fnc, BatchObjective) and _takes_seed(fnc)
    policy = ExecutionPolicy(
        execution,
        what="SPSA",
        client=client,
        resources=resources,
        batch=isinstance(fnc, BatchObjective),
        trial_timeout=trial_timeout,
        progress=progress,
        expected=2 * n_perturbations * maxiter,  # the gain's calibration aside
    )
    optimizer = SPSAOptimizer(
        initparams,
        bounds=bounds,
        a=a_par,
        c=c_par,
        A=A,
        alpha=alpha,
        gamma=gamma,
        maxiter=maxiter,
        n_perturbations=n_perturbations,
        maxgrad=maxgrad,
        param_tol=param_tol,
        max_step=max_step,
        ftol=ftol,
        n_small=n_small,
        blocking=blocking,
        allowed_increase=allowed_increase,
        target_step=target_step,
        adaptive=adaptive,
        paired=paired,
        seed=seed,
        callback=callback,
        print_iters=print_iters,
        checkpoint=checkpoint,
        tagged=True,
    )
    name = f"SPSA-{func_name(fnc) if callable(fnc) else type(fnc).__name__}"
    if policy.forced is None or policy.forced.where == "local":
        report = run_here_first(
            optimizer, cast(Callable[..., Any], fnc), args, policy=policy,
            name=name, paired=paired, security=security,
        )  # fmt: skip
        where, reason = report.execution, report.execution_reason
    else:
        ran = _on_cluster(
            optimizer, fnc, args, name=name, policy=policy, paired=paired,
            client=client, security=security, progress=progress,
            resources=resources, trial_timeout=trial_timeout,
        )  # fmt: skip
        where = "cluster"
        reason = with_trials(policy.forced.reason, ran.execution, ran.execution_reason)
    result = optimizer.result
    result.execution, result.execution_reason = where, reason
    return result


def _check_arguments(
    fnc: Any,
    args: Any,
    callback: Any,
    progress: Any,
    trial_timeout: Any,
) -> None:
    """Check ``SPSA``'s arguments that are not the optimizer's, before any work
    (:class:`SPSAOptimizer` checks its own when made)."""
    if not isinstance(fnc, BatchObjective):
        check_callable("fnc", fnc)
    if not isinstance(args, tuple):
        msg = f"args must be a tuple of extra arguments, got {type(args).__name__}"
        raise TypeError(msg)
    if callback is not None:
        check_callable("callback", callback)
    check_bool("progress", progress)
    check_trial_timeout(trial_timeout, batch=isinstance(fnc, BatchObjective))


def _on_cluster(
    optimizer: SPSAOptimizer,
    fnc: Callable[..., float] | BatchObjective,
    args: tuple[Any, ...],
    *,
    name: str,
    policy: ExecutionPolicy,
    paired: bool,
    client: Any,
    security: Security | None,
    progress: bool,
    resources: Mapping[str, float] | None,
    trial_timeout: float | None,
) -> RunReport:
    """Run ``optimizer`` on the cluster, through the driver; its report."""
    from dasktune.run.cluster import get_client
    from dasktune.run.options import RunOptions
    from dasktune.run.vector import run_vector

    assert policy.forced is not None  # decided: the cluster
    logger.debug("%s: execution cluster: %s", name, policy.forced.reason)
    options = RunOptions(
        name=name, progress=progress, resources=resources,
        trial_timeout=trial_timeout, execution=policy.driver_execution,
        expected=policy.expected,
    )  # fmt: skip
    ran, _ = run_vector(
        optimizer, fnc, args, options, paired=paired,
        client=get_client(client, security=security),
    )  # fmt: skip
    return ran


def _takes_seed(fnc: Callable[..., Any]) -> bool:
    try:
        return "seed" in inspect.signature(fnc).parameters
    except (TypeError, ValueError):
        return False
