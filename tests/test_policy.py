"""The execution policy: where evaluations run, forced or measured, and why."""

from __future__ import annotations

import asyncio
import os
import time

import distributed
import numpy as np
import pytest
from distributed.utils_test import gen_cluster
from scipy.optimize import rosen

from dasktune import SPSA, minimize
from dasktune.run.policy import (
    CLUSTER_ABOVE,
    LOCAL_BELOW,
    PROBE_EVALUATIONS,
    STARTUP_SECONDS,
    ExecutionPolicy,
)

BOUNDS = [(-5.0, 5.0)] * 3


def quadratic(x):
    return float(np.sum((np.asarray(x) - 1.0) ** 2))


def noisy_quadratic(x, seed=None):
    rng = np.random.default_rng(seed)
    return float(np.sum((np.asarray(x) - 1.0) ** 2) + 0.01 * rng.normal())


def on_worker_rosen(x):
    """Fails anywhere but on a Dask worker: a run it finishes ran there."""
    distributed.get_worker()  # ValueError outside a worker
    return float(rosen(x))


def never_called(x):
    raise AssertionError("the objective was called before the arguments were checked")


# -- the decision itself (no cluster) -------------------------------------------


def test_a_cheap_evaluation_stays_local_and_an_expensive_one_goes():
    policy = ExecutionPolicy(what="f")
    assert policy.forced is None
    cheap = policy.after_probe([5e-6])
    assert cheap is not None and cheap.where == "local"
    assert "5.0 µs" in cheap.reason and "no cluster started" in cheap.reason
    # above the threshold: timed up to PROBE_EVALUATIONS times, then the cluster
    slow = [2 * LOCAL_BELOW] * (PROBE_EVALUATIONS - 1)
    assert policy.after_probe(slow) is None
    costly = policy.after_probe([*slow, 2 * LOCAL_BELOW])
    assert costly is not None and costly.where == "cluster"
    # one evaluation long enough decides at once
    assert policy.after_probe([1.0]).where == "cluster"


def test_a_run_too_short_to_pay_for_a_cluster_stays_local():
    # 100 evaluations of 20 ms: at most 2 s / cores saved, against a start-up
    # of STARTUP_SECONDS
    cores = os.cpu_count() or 1
    short = int(STARTUP_SECONDS / (0.02 * (1 - 1 / cores))) if cores > 1 else 10**9
    stays = ExecutionPolicy(what="f", expected=short // 2).after_probe([0.02] * 3)
    assert stays is not None and stays.where == "local"
    assert "less than a cluster takes to start" in stays.reason
    if cores > 1:
        goes = ExecutionPolicy(what="f", expected=10 * short).after_probe([0.02] * 3)
        assert goes is not None and goes.where == "cluster"
        assert ExecutionPolicy(what="f", expected=6).revisit(5, 5.0, done=5) is None


def test_a_local_run_moves_when_its_evaluations_grow():
    auto = ExecutionPolicy(what="f")
    assert auto.revisit(10, 10 * LOCAL_BELOW) is None  # under CLUSTER_ABOVE each
    moved = auto.revisit(10, 20 * CLUSTER_ABOVE)
    assert moved is not None and moved.where == "cluster"
    # asked for by name: it stays
    assert ExecutionPolicy("local", what="f").revisit(10, 100.0) is None


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"execution": "tasks"}, "execution='tasks' was asked for"),
        ({"execution": "feed"}, "execution='feed' was asked for"),
        ({"client": "tcp://127.0.0.1:8786"}, "a client given"),
        ({"resources": {"GPU": 1}}, "only a worker has them"),
        ({"batch": True}, "ProducerConsumer"),
        ({"trial_timeout": 1.0}, "trial_timeout="),
        ({"store": True}, "a trial store"),
        ({"progress": True}, "progress=True"),
        ({"cluster_only": "method='direct'"}, "method='direct'"),
    ],
)
def test_what_needs_a_cluster_forces_it(kwargs, says):
    forced = ExecutionPolicy(what="f", **kwargs).forced
    assert forced is not None and forced.where == "cluster"
    assert says in forced.reason


def test_local_is_forced_when_asked_for():
    forced = ExecutionPolicy("local", what="f").forced
    assert forced is not None and forced.where == "local"


# -- bad execution= values, refused before any work --------------------------------


@pytest.mark.parametrize("bad", ["fast", "LOCAL", None, 1])
def test_a_bad_execution_is_refused_before_any_work(bad):
    with pytest.raises(ValueError, match=r"execution must be one of 'auto', 'local'"):
        minimize(never_called, BOUNDS, seed=0, execution=bad)
    with pytest.raises(ValueError, match=r"SPSA: execution must be one of"):
        SPSA(never_called, [0.0, 0.0], seed=0, execution=bad)


@pytest.mark.parametrize(
    ("kwargs", "needs"),
    [
        ({"resources": {"GPU": 1}}, "resources="),
        ({"trial_timeout": 5.0}, "trial_timeout="),
        ({"method": "dual_annealing"}, "method='dual_annealing'"),
        ({"vectorized": True}, "vectorized=True"),
        ({"client": "tcp://127.0.0.1:1"}, "a client given"),
    ],
)
def test_local_refuses_what_only_a_cluster_can_do(kwargs, needs):
    with pytest.raises(ValueError, match=rf"execution='local' cannot run with {needs}"):
        minimize(never_called, BOUNDS, seed=0, execution="local", **kwargs)


# -- forced choices on a cluster ------------------------------------------------


@gen_cluster(client=True)
async def test_execution_tasks_runs_a_cheap_objective_on_the_workers(c, s, a, b):
    res = await asyncio.to_thread(
        minimize, on_worker_rosen, BOUNDS, seed=2, maxiter=3, polish=False,
        execution="tasks",
    )  # fmt: skip
    assert res.execution == "cluster"
    assert "execution='tasks'" in res.execution_reason


@gen_cluster(client=True)
async def test_a_given_client_is_used_for_a_cheap_objective(c, s, a, b):
    res = await asyncio.to_thread(
        minimize, on_worker_rosen, BOUNDS, seed=2, maxiter=3, polish=False, client=c
    )
    assert res.execution == "cluster" and "a client given" in res.execution_reason
    spsa = await asyncio.to_thread(
        SPSA, on_worker_rosen, [0.0, 0.0], maxiter=5, seed=1, print_iters=None,
        client=c,
    )  # fmt: skip
    assert spsa.execution == "cluster"


def slow_sphere(x):
    end = time.perf_counter() + 5e-3
    while time.perf_counter() < end:  # the objective's cost, not a wait
        pass
    return float(np.sum(np.asarray(x) ** 2))


def test_a_current_client_is_used_only_when_the_work_pays(client):
    # a client current but not given: a cheap objective stays here all the same
    res = minimize(rosen, BOUNDS, seed=2, maxiter=3, polish=False)
    assert res.execution == "local", res.execution_reason
    # an expensive one goes to its workers, however short the run: no start-up
    # to pay for (the first evaluations, timed here, are not on a worker)
    res = minimize(slow_sphere, [(-1, 1)] * 2, seed=0, maxiter=2, popsize=3)
    assert res.execution == "cluster", res.execution_reason
    # timed here at 5 ms, far below a quarter second: fed from the first
    # generation on, no batch paying a round trip through the scheduler
    fed = "trials fed: fed to long-lived tasks: an evaluation took"
    assert fed in res.execution_reason, res.execution_reason
    policy = ExecutionPolicy(what="f", expected=10)
    assert policy._too_short(5e-3, 0) is None
    assert policy.after_probe([5e-3]).where == "cluster"  # one decides
