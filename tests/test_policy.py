"""The execution policy: where evaluations run, forced or measured, and why."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap

import distributed
import numpy as np
import pytest
from distributed.utils_test import gen_cluster
from scipy.optimize import differential_evolution, rosen

from dasktune import SPSA, minimize
from dasktune.run.policy import (
    CLUSTER_ABOVE,
    LOCAL_BELOW,
    PROBE_EVALUATIONS,
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


# -- cold calls: in the caller's process, identical results ------------------------


def test_cheap_de_runs_here_bit_identical_to_scipy_serial():
    res = minimize(rosen, BOUNDS, seed=3, maxiter=30)
    ref = differential_evolution(rosen, BOUNDS, rng=3, maxiter=30, updating="deferred")
    assert res.execution == "local"
    assert "no cluster started" in res.execution_reason
    np.testing.assert_array_equal(res.x, ref.x)
    assert res.fun == ref.fun and res.nfev == ref.nfev


def test_execution_local_gives_the_same_result_as_auto():
    auto = minimize(rosen, BOUNDS, seed=5, maxiter=10, polish=False)
    local = minimize(rosen, BOUNDS, seed=5, maxiter=10, polish=False, execution="local")
    assert local.execution == "local" and "execution='local'" in local.execution_reason
    np.testing.assert_array_equal(auto.x, local.x)
    assert auto.nfev == local.nfev


def test_cold_cheap_calls_import_no_distributed():
    code = textwrap.dedent(
        """
        import json, sys
        import numpy as np
        from scipy.optimize import rosen
        from dasktune import SPSA, minimize

        def quadratic(x):
            return float(np.sum((x - 1.0) ** 2))

        de = minimize(rosen, [(-5, 5)] * 3, seed=1, maxiter=5)
        spsa = SPSA(quadratic, [0.0, 0.0], maxiter=20, seed=1, print_iters=None)
        print(json.dumps({
            "distributed": "distributed" in sys.modules,
            "cluster": "dasktune.run.cluster" in sys.modules,
            "where": [de.execution, spsa.execution],
        }))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {"distributed": False, "cluster": False, "where": ["local"] * 2}


def test_the_decision_is_logged(caplog):
    with caplog.at_level("DEBUG", logger="dasktune"):
        minimize(rosen, BOUNDS, seed=0, maxiter=2, polish=False)
    assert any(
        "execution local" in r.getMessage() and "no cluster started" in r.getMessage()
        for r in caplog.records
    )


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


@gen_cluster(client=True)
async def test_seeded_spsa_is_the_same_here_and_on_the_cluster(c, s, a, b):
    kwargs = {"maxiter": 40, "seed": 4, "print_iters": None}
    here = await asyncio.to_thread(
        SPSA, noisy_quadratic, [0.0, 2.0], execution="local", **kwargs
    )
    there = await asyncio.to_thread(
        SPSA, noisy_quadratic, [0.0, 2.0], client=c, **kwargs
    )
    assert (here.execution, there.execution) == ("local", "cluster")
    np.testing.assert_array_equal(here.x, there.x)
    assert here.fun == there.fun and here.nfev == there.nfev
    np.testing.assert_array_equal(here.history["x"], there.history["x"])


@pytest.mark.timeout(300)  # a cluster of worker processes, on a busy machine
def test_an_expensive_objective_moves_to_the_cluster_with_the_same_result():
    # a fresh interpreter: the cluster dasktune starts is its own
    code = textwrap.dedent(
        """
        import json, sys, time
        import numpy as np
        from scipy.optimize import differential_evolution
        from dasktune import minimize

        def slow_sphere(x):
            time.sleep(0.03)  # the objective's cost, not a synchronisation
            return float(np.sum(np.asarray(x) ** 2))

        if __name__ == "__main__":
            kw = dict(seed=0, maxiter=2, popsize=3, polish=False)
            res = minimize(slow_sphere, [(-1, 1)] * 2, **kw)
            ref = differential_evolution(
                slow_sphere, [(-1, 1)] * 2, rng=0, maxiter=2, popsize=3,
                polish=False, updating="deferred",
            )
            print(json.dumps({
                "where": res.execution, "reason": res.execution_reason,
                "same": bool(np.array_equal(res.x, ref.x)) and res.fun == ref.fun
                and res.nfev == ref.nfev,
                "distributed": "distributed" in sys.modules,
            }))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=280
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["where"] == "cluster" and "took" in seen["reason"], seen
    assert seen["same"] and seen["distributed"], seen
