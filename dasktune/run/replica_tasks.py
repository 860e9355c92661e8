"""Replicas of a serial scipy method, each run whole as one task.

``minimize`` runs ``dual_annealing`` and ``direct`` (serial by design) as
``n_workers`` replicas at once. When no evaluation needs to be a trial of its
own (no store, ``maxfev``, callback, timeout or batch objective),
:func:`replicas_as_tasks` sends each replica as one task: its evaluations run
on its worker, free of per-evaluation round trips, and the tasks are
harvested by a :class:`~dasktune.run.submit.Window` (the Submitter
contract: an error stops the others before their next evaluation, and none
runs once it returns).
"""

from __future__ import annotations

import traceback
import uuid
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import distributed
import numpy as np
import scipy.optimize
from scipy.optimize import OptimizeResult

from dasktune._values import as_value
from dasktune.optim.replicas import replica_spec
from dasktune.run.cluster import check_resources
from dasktune.run.keys import key_part
from dasktune.run.lost import explain_killed
from dasktune.run.mapping import Shipped
from dasktune.run.stop import cancelled_here
from dasktune.run.submit import Submitter, Window, raise_failed

__all__ = ["replicas_as_tasks"]


def _run_replica(
    spec: tuple[Any, dict[str, Any]],
    method: str,
    fun: Callable[..., float],
    args: tuple[Any, ...],
) -> OptimizeResult:
    """On a worker: one whole scipy run."""
    box, kwargs = spec
    bounds = [tuple(pair) for pair in np.asarray(box).tolist()]
    scalar = partial(_scalar_value, fun)
    return getattr(scipy.optimize, method)(scalar, bounds, args=args, **kwargs)


class _ReplicaCancelled(Exception):
    """Raised on a worker inside a replica whose task was cancelled: the run
    that started it is over (interrupted, or another replica failed)."""


def _scalar_value(fun: Callable[..., Any], x: Any, *args: Any) -> float:
    """``fun(x, *args)`` read as the driver reads values (arrays of size 1 too);
    a replica whose task was cancelled stops here, before its next call."""
    if cancelled_here():
        msg = "the replica's task was cancelled: its run is over"
        raise _ReplicaCancelled(msg)
    return as_value(fun(x, *args))


def replicas_as_tasks(
    method: str,
    bounds: Any,
    n: int,
    seed: int | None,
    kwargs: dict[str, Any],
    fun: Callable[..., float],
    args: tuple[Any, ...],
    client: distributed.Client,
    label: str,
    resources: Mapping[str, float] | None = None,
) -> list[OptimizeResult]:
    """Run ``n`` replicas of scipy's ``method`` (``dual_annealing``,
    ``direct``), each whole as one task, its evaluations on its worker; their
    results, in replica order.

    Raises
    ------
    ValueError
        For ``resources`` no worker declared (before any task).
    Exception
        A replica's own error, its worker traceback in a note; the other
        replicas stop before their next evaluation.
    """
    if resources:
        check_resources(client, resources)
    rng = np.random.default_rng(seed)
    specs = [replica_spec(method, bounds, i, n, seed, kwargs, rng) for i in range(n)]
    runner = Shipped(partial(_run_replica, method=method, fun=fun, args=args), fun)
    token = uuid.uuid4().hex[:8]
    keys = [f"replica-{key_part(label)}-{i}-{token}" for i in range(n)]
    # harvested by a Window: bounded while the cluster has no worker; left by
    # an error (a replica's, or Ctrl-C), it stops the others before their next
    # evaluation, and none runs once this returns (the Submitter contract)
    flying: Submitter[int] = Window[int](
        client, what=f"minimize({method!r})'s {n} replicas"
    )
    results: list[OptimizeResult] = [None] * n
    with flying:
        flying.map(runner, specs, range(n), keys=keys, resources=resources)
        try:
            while len(flying):
                for future, result, i in flying.next_batch():
                    raise_failed(future, result, f"minimize({method!r})")
                    results[i] = result
        except Exception as err:
            explain_killed(client, err)  # memory, when it was that
            text = "".join(traceback.format_exception(err))
            err.add_note(f"dasktune: raised in a {method} replica on a worker:\n{text}")
            raise
    return results
