"""Runs in the caller's process (dasktune.run.local): results identical to
the cluster's and scipy's, no distributed imported, failures as on a cluster,
and the move to the cluster when evaluations are expensive."""

from __future__ import annotations

import asyncio
import glob
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from distributed.utils_test import gen_cluster
from scipy.optimize import differential_evolution, rosen

from dasktune import SPSA, minimize
from dasktune.optim.scipy_bridge import ScipyAskTell
from dasktune.run.base import ALL_FAILED_STOP
from dasktune.run.local import run_here_first
from dasktune.run.policy import ExecutionPolicy
from tests.subprocesses import last_json
from tests.waiting import poll_until

BOUNDS = [(-5.0, 5.0)] * 3


def noisy_quadratic(x, seed=None):
    rng = np.random.default_rng(seed)
    return float(np.sum((np.asarray(x) - 1.0) ** 2) + 0.01 * rng.normal())


def always_fails(x):
    raise KeyError(f"no value at {x[0]:.3f}")


def fails_right_of_zero(x):
    if x[0] > 0:
        raise ArithmeticError("no value right of 0")
    return float(rosen(x))


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


def test_every_evaluation_failing_raises_the_first_failure():
    with pytest.raises(KeyError, match="no value at") as caught:
        minimize(always_fails, BOUNDS, seed=0, maxiter=3)
    notes = "\n".join(getattr(caught.value, "__notes__", []))
    assert "every evaluation failed" in notes and "caller's process" in notes


def test_a_run_where_everything_fails_stops_early():
    failed = []

    def counted(x):
        failed.append(x)
        raise KeyError("nothing")

    with pytest.raises(KeyError, match="nothing"):
        minimize(counted, BOUNDS, seed=0, maxiter=1000)
    assert len(failed) == ALL_FAILED_STOP  # not 1000 generations of them


def test_a_failing_evaluation_is_told_inf_and_the_run_goes_on():
    res = minimize(fails_right_of_zero, BOUNDS, seed=1, maxiter=5, polish=False)
    ref = differential_evolution(
        lambda x: np.inf if x[0] > 0 else float(rosen(x)), BOUNDS, rng=1,
        maxiter=5, polish=False, updating="deferred",
    )  # fmt: skip
    assert res.execution == "local"
    np.testing.assert_array_equal(res.x, ref.x)
    assert res.x[0] <= 0 and res.fun == ref.fun


def test_the_run_report_says_where_and_why():
    optimizer = ScipyAskTell(
        "differential_evolution", np.array(BOUNDS), maxiter=2, polish=False, rng=0
    )
    try:
        report = run_here_first(
            optimizer, rosen, (), policy=ExecutionPolicy(what="t"), name="t"
        )
    finally:
        optimizer.close()
    assert report.execution == "local" and report.stopped == "finished"
    assert "no cluster started" in report.execution_reason
    assert report.evaluated == optimizer.result.nfev


def test_maxfev_bounds_a_local_run():
    res = minimize(rosen, BOUNDS, seed=0, maxfev=40, maxiter=50)
    assert res.execution == "local" and not res.success
    assert res.nfev_evaluated == 40 and "maxfev=40" in res.message


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
def test_an_expensive_objective_moves_to_the_cluster_started_meanwhile():
    # a fresh interpreter: the cluster dasktune starts is its own
    code = textwrap.dedent(
        """
        import json, sys, time
        import numpy as np
        from scipy.optimize import differential_evolution
        from dasktune import minimize

        def slow_sphere(x):
            time.sleep(0.05)  # the objective's cost, not a synchronisation
            return float(np.sum(np.asarray(x) ** 2))

        if __name__ == "__main__":
            # 66 evaluations of 50 ms: more than a cluster's start-up to save
            kw = dict(seed=0, maxiter=10, popsize=3, polish=False)
            res = minimize(slow_sphere, [(-1, 1)] * 2, **kw)
            ref = differential_evolution(
                slow_sphere, [(-1, 1)] * 2, rng=0, maxiter=10, popsize=3,
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
    seen, pid = last_json(code)
    assert seen["same"] and seen["distributed"] and "took" in seen["reason"], seen
    # nothing of the cluster outlives the script, though its start was under
    # way when the run ended (exit waits for it, then closes it)
    poll_until(lambda: not _group_alive(pid), what="the script's processes to end")
    # the cluster started in the background while the run went on here: it
    # moved there once the cluster was up, or ended here first (a slow start)
    overlap = {
        "cluster": "evaluation(s) ran in the caller's process while the cluster started",
        "local": "the run ended in the caller's process",
    }
    assert overlap[seen["where"]] in seen["reason"], seen


@pytest.mark.timeout(300)  # a cluster of worker processes, on a busy machine
def test_a_cpu_bound_objective_does_not_starve_the_cluster_starting():
    """Pure Python evaluations hold the GIL: evaluated here while the cluster
    starts in a thread of this process, they starved the start (a 1.5 s start
    took over 30 s beside a busy loop), so a run worth moving ended here. The
    run now waits for the start once what it overlaps holds the CPU."""
    code = textwrap.dedent(
        """
        import json, time
        from dasktune import minimize

        def busy_sphere(x):
            end = time.perf_counter() + 0.02  # 20 ms of pure Python: its cost
            while time.perf_counter() < end:
                pass
            return float(x[0] ** 2 + x[1] ** 2)

        if __name__ == "__main__":
            # 186 evaluations of 20 ms: more than a cluster's start-up to save
            kw = dict(seed=0, maxiter=30, popsize=3, polish=False, tol=0.0)
            res = minimize(busy_sphere, [(-1, 1)] * 2, **kw)
            print(json.dumps({"where": res.execution, "reason": res.execution_reason}))
        """
    )
    seen, pid = last_json(code)
    assert seen["where"] == "cluster", seen
    poll_until(lambda: not _group_alive(pid), what="the script's processes to end")


def _group_alive(pgid: int) -> bool:
    """Whether a process of the group ``pgid`` leads still runs (zombies,
    which only wait to be reaped, do not count)."""
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False
