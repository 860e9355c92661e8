"""scipy's own function run whole in the caller's thread (dasktune.run.scipy_here):
no ask/tell thread, the objective and the callback called here, results
bit-identical to scipy's serial run; a run the policy moves mid-way is replayed
on the cluster with the same result and no callback made twice."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
from distributed.utils_test import gen_cluster
from scipy.optimize import differential_evolution, rosen, shgo

from dasktune import minimize

BOUNDS = [(-2.0, 2.0)] * 2

#: set: the objective turns expensive (a run in the caller's process moves)
SLOW = threading.Event()
SEEN: list[tuple[int, list[str]]] = []


def watched_rosen(x):
    """rosen, noting the thread it runs in and the dasktune threads alive."""
    names = [t.name for t in threading.enumerate() if t.name.startswith("dasktune")]
    SEEN.append((threading.get_ident(), names))
    return rosen(x)


def turns_slow(x):
    if SLOW.is_set():
        time.sleep(0.06)  # the objective's cost once set, not a synchronisation
    return rosen(x)


KW = {"differential_evolution": {"maxiter": 15, "popsize": 5, "rng": 1}, "shgo": {}}


@pytest.mark.parametrize("method", ["differential_evolution", "shgo"])
def test_a_cheap_run_calls_scipy_in_the_callers_thread(method):
    SEEN.clear()
    called_in: list[int] = []

    def callback(*args, **kwargs):
        called_in.append(threading.get_ident())

    res = minimize(watched_rosen, BOUNDS, method, callback=callback, **KW[method])
    if method == "shgo":
        ref = shgo(rosen, BOUNDS)
    else:
        ref = differential_evolution(rosen, BOUNDS, updating="deferred", **KW[method])
    assert res.execution == "local"
    here = threading.get_ident()
    assert SEEN and {ident for ident, _ in SEEN} == {here}
    # no ask/tell thread (dasktune-scipy-...) while the objective ran
    assert all(names == [] for _, names in SEEN), {n for _, ns in SEEN for n in ns}
    assert called_in and set(called_in) == {here}
    np.testing.assert_array_equal(res.x, ref.x)
    assert res.fun == ref.fun and res.nfev == ref.nfev


def test_shgo_here_is_scipy_serial():
    res = minimize(rosen, BOUNDS, "shgo", execution="local")
    ref = shgo(rosen, BOUNDS)
    np.testing.assert_array_equal(res.x, ref.x)
    assert res.fun == ref.fun and res.nfev == ref.nfev


def test_timeout_and_maxfev_stop_a_run_here():
    res = minimize(rosen, BOUNDS, seed=0, maxfev=25, maxiter=50, execution="local")
    assert not res.success and res.nfev_evaluated == 25 and res.nfev == 25
    assert "maxfev=25" in res.message and res.execution == "local"
    # 15 s of evaluations without the timeout
    res = minimize(turns_slow_always, BOUNDS, seed=0, timeout=1.0, maxiter=50,
                   execution="local")  # fmt: skip
    assert not res.success and "timeout" in res.message and res.x is not None


def test_a_timeout_before_any_evaluation_returned_says_so():
    """Stopped while its first evaluations were being timed (no decision
    taken yet): the timeout's own error, no internal one."""
    with pytest.raises(TimeoutError, match="reached its timeout with no evaluation"):
        minimize(rosen, BOUNDS, seed=0, timeout=1e-9)


def turns_slow_always(x):
    time.sleep(0.01)  # the objective's cost, not a synchronisation
    return rosen(x)


@pytest.mark.parametrize("seeding", ["global", "generator"])
@gen_cluster(client=True, timeout=120)
async def test_a_run_moved_mid_way_is_replayed_with_the_same_result(
    c, s, a, b, seeding
):
    """Cheap generations run here; once the objective turns expensive the run
    moves to the current client's cluster, replayed from its start with the
    points known answered from the cache: scipy's serial result, every
    generation's callback made once."""
    kw = {"maxiter": 6, "popsize": 3, "polish": False}
    SLOW.clear()
    if seeding == "global":
        np.random.seed(7)  # scipy's DE draws from numpy's global state
        ref = differential_evolution(rosen, BOUNDS, updating="deferred", **kw)
        after = np.random.random()  # what the next draw is after scipy's run
        np.random.seed(7)
    else:
        generator = np.random.default_rng(7)
        ref = differential_evolution(
            rosen, BOUNDS, updating="deferred", rng=generator, **kw
        )
        after = generator.random()
        kw["rng"] = np.random.default_rng(7)
    generations: list[int] = []

    def callback(intermediate_result):
        generations.append(intermediate_result.nit)
        if len(generations) == 2:
            SLOW.set()  # from the third generation on: 60 ms an evaluation

    try:
        res = await asyncio.to_thread(
            minimize, turns_slow, BOUNDS, callback=callback, **kw
        )
    finally:
        SLOW.clear()
    assert res.execution == "cluster", res.execution_reason
    assert "moved to the cluster" in res.execution_reason
    assert generations == list(range(1, len(generations) + 1)), generations
    np.testing.assert_array_equal(res.x, ref.x)
    assert res.fun == ref.fun and res.nfev == ref.nfev
    # the random state is left where scipy leaves it: a second call goes on
    # as it would after scipy's (the replay drew from a copy of the Generator)
    draw = np.random.random() if seeding == "global" else kw["rng"].random()
    assert draw == after


def test_a_raising_callback_raises_its_own_error_here():
    def callback(intermediate_result):
        raise LookupError("the callback's own")

    with pytest.raises(LookupError, match="the callback's own"):
        minimize(rosen, BOUNDS, seed=0, maxiter=5, callback=callback)
