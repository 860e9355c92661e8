"""ScipyAskTell and its pools: exactness, no deadlock, errors, threads, restarts."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
from distributed.utils_test import poll_for
from scipy import optimize
from scipy.optimize import rosen

from dasktune import (
    Bool,
    Categorical,
    Float,
    HyperScipySampler,
    Int,
    LCBSelector,
    ScipyAskTell,
    minimize,
)
from dasktune.optim.replicas import ReplicaPool
from dasktune.optim.scipy_bridge import PointCache
from dasktune.records import canonical
from dasktune.run.cluster import owned_cluster


def branin(x):
    x1, x2 = x
    a, b, c = 1.0, 5.1 / (4 * np.pi**2), 5 / np.pi
    r, s, t = 6.0, 10.0, 1 / (8 * np.pi)
    return float(a * (x2 - b * x1**2 + c * x1 - r) ** 2 + s * (1 - t) * np.cos(x1) + s)


def rastrigin(x):
    x = np.asarray(x)
    return float(10 * len(x) + np.sum(x**2 - 10 * np.cos(2 * np.pi * x)))


BRANIN_BOUNDS = [(-5.0, 10.0), (0.0, 15.0)]
BRANIN_MIN = 0.397887


def drive(opt, f, order=reversed):
    """Ask everything that can be asked, tell in the given order, until finished."""
    while not opt.finished:
        trials = []
        while (t := opt.ask()) is not None:
            trials.append(t)
        if not trials:  # ask() waited for scipy, which then finished
            assert opt.finished
            break
        for t in order(trials):
            opt.tell(t, f(t.params))
    return opt.result


def scipy_threads():
    return [t for t in threading.enumerate() if t.name.startswith("dasktune-scipy")]


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        ("differential_evolution", {"rng": 1, "maxiter": 20}),
        ("differential_evolution", {"rng": 2, "maxiter": 10, "polish": False}),
        ("dual_annealing", {"rng": 1, "maxiter": 30}),
        ("direct", {"maxfun": 200}),
        ("shgo", {}),
    ],
)
def test_same_result_as_the_serial_scipy_call(method, kwargs):
    bounds = [(-2.0, 2.0)] * 3
    serial_kwargs = dict(kwargs)
    if method == "differential_evolution":
        serial_kwargs["updating"] = "deferred"
    expected = getattr(optimize, method)(rosen, bounds, **serial_kwargs)
    with ScipyAskTell(method, bounds, **kwargs) as opt:
        result = drive(opt, rosen)
    np.testing.assert_array_equal(result.x, expected.x)
    assert result.fun == expected.fun
    assert result.nfev == expected.nfev
    assert result.nfev_evaluated <= result.nfev


def test_batches_are_asked_at_once_and_told_in_any_order():
    with ScipyAskTell(
        "differential_evolution", [(-1, 1)] * 2, rng=0, popsize=5, maxiter=3
    ) as opt:
        first = []
        while (t := opt.ask()) is not None:
            first.append(t)
        assert len(first) == 10  # the whole initial population
        rng = np.random.default_rng(0)
        for i in rng.permutation(len(first)):
            opt.tell(first[i], rosen(first[i].params))
        assert opt.ask() is not None


def test_errors_in_scipy_surface_with_their_type():
    with (
        ScipyAskTell("differential_evolution", [(-1, 1)] * 2, strategy="nope") as opt,
        pytest.raises(ValueError, match="strategy"),
    ):
        opt.ask()

    def fails(intermediate_result):
        raise RuntimeError("callback broke")

    with (
        ScipyAskTell(
            "differential_evolution", [(-1, 1)] * 2, rng=0, maxiter=5, callback=fails
        ) as opt,
        pytest.raises(RuntimeError, match="callback broke"),
    ):
        drive(opt, rosen)
    assert not scipy_threads()


def test_bad_construction():
    with pytest.raises(ValueError, match="method must be one of"):
        ScipyAskTell("nelder-mead", [(0, 1)])
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['popsiz'\]"):
        ScipyAskTell("differential_evolution", [(0, 1)], popsiz=3)
    with pytest.raises(TypeError, match="workers is managed by dasktune"):
        ScipyAskTell("shgo", [(0, 1)], workers=2)
    with pytest.raises(ValueError, match="low < high"):
        ScipyAskTell("direct", [(1, 0)])
    with pytest.raises(ValueError, match="n_workers must be an integer >= 1"):
        HyperScipySampler({"x": Float(0, 1)}, n_workers=0)
    with pytest.raises(TypeError, match="each replica derives its own rng"):
        HyperScipySampler({"x": Float(0, 1)}, rng=3)
    assert not scipy_threads()


@pytest.mark.parametrize("make", [ScipyAskTell, ReplicaPool])
def test_one_check_of_method_bounds_and_keywords_for_every_scipy_optimizer(make):
    # check_problem: the same refusals, with the same words, before any thread
    for args, kwargs, kind, match in [
        (("bfgs", [(0, 1)]), {}, ValueError, "method must be one of"),
        (("direct", [(1, 0)]), {}, ValueError, "low < high"),
        (("direct", [(0, math.inf)]), {}, ValueError, "finite"),
        (("shgo", [(0, 1)]), {"workers": 2}, TypeError, "managed by dasktune"),
        (("dual_annealing", [(0, 1)]), {"maxfunn": 3}, TypeError, "'maxfunn'"),
    ]:
        with pytest.raises(kind, match=match):
            make(*args, **kwargs)
    assert not scipy_threads()


def test_close_mid_run_joins_the_thread():
    opt = ScipyAskTell("differential_evolution", [(-1, 1)] * 2, rng=0)
    trials = [opt.ask(), opt.ask()]
    opt.tell(trials[0], 1.0)  # the thread is mid-generation, waiting
    assert scipy_threads()
    opt.close()
    assert not scipy_threads()
    with pytest.raises(RuntimeError, match="closed"):
        opt.ask()


def test_pool_never_deadlocks_on_out_of_order_tells():
    # cotengra's round-robin handed asks to replicas waiting for their tells
    space = {"x": Float(-5, 10), "y": Float(0, 15)}
    with HyperScipySampler(
        space, "dual_annealing", n_workers=3, seed=0, maxiter=20
    ) as pool:
        pending, told = [], 0
        rng = np.random.default_rng(1)
        while told < 300:
            while len(pending) < 5 and (t := pool.ask()) is not None:
                pending.append(t)
            assert pending
            t = pending.pop(int(rng.integers(len(pending))))
            pool.tell(t, branin([t.params["x"], t.params["y"]]))
            told += 1
    assert not scipy_threads()


def test_seeded_replicas_start_on_distinct_points():
    for method in ("dual_annealing", "differential_evolution", "direct", "shgo"):
        with HyperScipySampler(
            {"x": Float(0, 1), "y": Float(0, 1)}, method, n_workers=4, seed=0
        ) as pool:
            firsts = []
            for replica in pool.replicas:
                t = replica.ask()
                firsts.append(tuple(t.params))
        assert len(set(firsts)) == 4, method


@pytest.mark.parametrize(
    ("method", "kwargs"), [("direct", {"maxfun": 300}), ("shgo", {"n": 32})]
)
@pytest.mark.parametrize("n_workers", [2, 3, 4])
def test_deterministic_pool_never_worse_than_scipy(method, kwargs, n_workers):
    # the minimum is in the middle of the box, between two slabs: the
    # first replica searches the whole box, so the pool finds what scipy does
    serial = getattr(optimize, method)(rastrigin, [(-5, 5)] * 2, **kwargs)
    with ReplicaPool(
        method, [(-5, 5)] * 2, n_workers=n_workers, restart=False, **kwargs
    ) as pool:
        asked = drive_pool(pool, rastrigin, 100_000)
        assert pool.finished
        best = min(rastrigin(t.params) for t in asked)
        # shgo's local minimiser ends within 1e-10 of scipy's own run
        slack = 0.0 if method == "direct" else 1e-12
        assert best <= serial.fun + slack
    # one replica (the whole box's) ended where scipy's own run does (the
    # results of replicas that ended since the last ask are kept by close())
    assert any(
        np.allclose(r.x, serial.x, rtol=0, atol=slack * 100) for r in pool.results
    )


def test_direct_never_evaluates_a_point_twice_across_restarts():
    with ReplicaPool("direct", BRANIN_BOUNDS, n_workers=2, seed=0, maxfun=40) as pool:
        seen = []
        for _ in range(600):
            t = pool.ask()
            assert t is not None
            seen.append(PointCache.key(t.params))
            pool.tell(t, branin(t.params))
        assert pool._started > 4  # replicas were restarted
    assert len(set(seen)) == len(seen)


@pytest.mark.parametrize(
    ("method", "f", "bounds", "minimum", "kwargs", "budget"),
    [
        ("differential_evolution", branin, BRANIN_BOUNDS, BRANIN_MIN, {"rng": 0}, 2000),
        (
            "dual_annealing",
            branin,
            BRANIN_BOUNDS,
            BRANIN_MIN,
            {"rng": 0, "maxiter": 100},
            2500,
        ),
        ("direct", branin, BRANIN_BOUNDS, BRANIN_MIN, {"maxfun": 1000}, 1100),
        ("shgo", branin, BRANIN_BOUNDS, BRANIN_MIN, {}, 500),
        (
            "differential_evolution",
            rastrigin,
            [(-5.12, 5.12)] * 5,
            0.0,
            {"rng": 0, "maxiter": 300},
            16000,
        ),
        ("dual_annealing", rastrigin, [(-5.12, 5.12)] * 5, 0.0, {"rng": 0}, 11000),
    ],
)
def test_known_minima_within_a_budget(method, f, bounds, minimum, kwargs, budget):
    with ScipyAskTell(method, bounds, **kwargs) as opt:
        result = drive(opt, f)
    assert result.fun == pytest.approx(minimum, abs=1e-4)
    assert opt.evaluations <= budget


def test_vectorized_de_asks_a_generation_and_counts_scipys_way():
    bounds = [(0.0, 10.0)] * 2
    expected = optimize.differential_evolution(
        rosen, bounds, vectorized=True, updating="deferred", rng=1, maxiter=30
    )
    with ScipyAskTell(
        "differential_evolution", bounds, vectorized=True, rng=1, maxiter=30
    ) as opt:
        first = []
        while (t := opt.ask()) is not None:
            first.append(t)
        assert len(first) == 30  # the initial population, popsize 15 x 2
        for t in first:
            opt.tell(t, rosen(t.params))
        result = drive(opt, rosen)
    np.testing.assert_array_equal(result.x, expected.x)
    assert result.fun == expected.fun
    assert result.nfev == expected.nfev  # one per generation, plus the polish
    assert result.nfev_evaluated > result.nfev


def test_bounds_objects_are_taken_and_infinite_ones_refused():
    box = optimize.Bounds([-2.0, -2.0], [2.0, 2.0])
    with ScipyAskTell("direct", box, maxfun=50) as opt:
        from_bounds = drive(opt, rosen)
    with ScipyAskTell("direct", [(-2.0, 2.0)] * 2, maxfun=50) as opt:
        from_pairs = drive(opt, rosen)
    np.testing.assert_array_equal(from_bounds.x, from_pairs.x)
    with ReplicaPool("direct", box, n_workers=2, restart=False, maxfun=20) as pool:
        np.testing.assert_array_equal(pool.bounds, [(-2.0, 2.0)] * 2)
    with pytest.raises(ValueError, match=r"needs finite bounds; parameter 1 has"):
        ScipyAskTell("differential_evolution", optimize.Bounds([0, 0], [1, np.inf]))
    with pytest.raises(ValueError, match="needs finite bounds"):
        ReplicaPool("dual_annealing", [(0, 1), (-np.inf, 1)])


# -- no repeated parameter dicts (cotengra's hyper-optimizer test, without a store)

DISCRETE = {
    "i": Int(-20, 20),
    "j": Int(0, 10),
    "kind": Categorical(["a", "b", "c", "d"]),
    "flag": Bool(),
}  # 3,608 distinct dicts
KIND_COST = {"a": 2, "b": 0, "c": 1, "d": 3}


def discrete_loss(p):
    return (
        (p["i"] - 3) ** 2 + (p["j"] - 7) ** 2 + KIND_COST[p["kind"]] + (not p["flag"])
    )


def drive_pool(pool, f, n_asks, window=6):
    """Up to ``window`` trials in flight, told in random order; every asked trial."""
    rng = np.random.default_rng(1)
    asked, pending = [], []
    while len(asked) < n_asks:
        while (
            len(pending) < window
            and len(asked) < n_asks
            and (t := pool.ask()) is not None
        ):
            asked.append(t)
            pending.append(t)
        if not pending:
            assert pool.finished
            break
        t = pending.pop(int(rng.integers(len(pending))))
        pool.tell(t, f(t.params))
    for t in pending:
        pool.tell(t, f(t.params))
    return asked


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        ("differential_evolution", {"popsize": 5, "maxiter": 3}),
        ("dual_annealing", {"maxiter": 5}),
    ],
)
def test_pool_never_proposes_a_parameter_dict_twice(method, kwargs):
    with HyperScipySampler(DISCRETE, method, n_workers=3, seed=0, **kwargs) as pool:
        asked = drive_pool(pool, discrete_loss, 400)
        assert len(asked) == 400
        keys = [canonical(t.params)[1] for t in asked]
        assert len(set(keys)) == len(keys)
        # box points decoding to known or in-flight dicts were answered, not asked
        assert pool.repeats > 0
        assert pool.results or pool._started > 3  # replicas ran to their end
    losses = [discrete_loss(t.params) for t in asked]
    assert min(losses) <= 3  # the minimum is 0
    assert np.mean(losses[-100:]) < np.mean(losses[:100])  # it still optimizes
    assert not scipy_threads()


def test_pool_over_a_small_discrete_space_finishes_when_exhausted():
    space = {"kind": Categorical(["a", "b", "c"]), "flag": Bool()}
    with HyperScipySampler(space, "dual_annealing", n_workers=2, seed=0) as pool:
        asked = drive_pool(pool, lambda p: KIND_COST[p["kind"]] + p["flag"], 100)
        assert pool.finished
        assert pool.ask() is None
    assert sorted((t.params["kind"], t.params["flag"]) for t in asked) == [
        (k, f) for k in "abc" for f in (False, True)
    ]


# -- shgo in many dimensions


@pytest.mark.timeout(30)
def test_shgo_in_14_dimensions_fails_early_and_clearly():
    message = r"shgo .* in 14 dimensions .* method='differential_evolution'"
    with pytest.raises(ValueError, match=message):
        ScipyAskTell("shgo", [(-1.0, 1.0)] * 14)
    with pytest.raises(ValueError, match=r"sampling_method='sobol' in 8 dimensions"):
        ScipyAskTell("shgo", [(-1.0, 1.0)] * 8, sampling_method="sobol")
    space = {f"x{i}": Float(0, 1) for i in range(10)} | {"c": Categorical(list("abcd"))}
    with pytest.raises(ValueError, match="in 14 dimensions"):
        HyperScipySampler(space, "shgo", n_workers=2)
    before = owned_cluster()
    with pytest.raises(ValueError, match="in 14 dimensions"):
        minimize(rosen, [(-1.0, 1.0)] * 14, method="shgo")
    assert owned_cluster() is before  # refused before any cluster or thread started
    assert not scipy_threads()


@pytest.mark.timeout(30)
def test_shgo_just_under_the_limit_asks_within_seconds():
    with ScipyAskTell("shgo", [(-1.0, 1.0)] * 10) as opt:
        assert opt.ask() is not None


def test_cotengra_searches_again_after_its_cleanup_pauses_the_pool():
    # cotengra's HyperOptimizer sets its optlib up once and calls cleanup() at
    # the end of every search(); a search may follow, and trials in flight at
    # the end of one (futures cancelled) are never reported
    before = set(threading.enumerate())
    selector = LCBSelector(
        {
            "anneal": HyperScipySampler(
                DISCRETE, "dual_annealing", n_workers=2, seed=0
            ),
            "direct": HyperScipySampler(DISCRETE, "direct", n_workers=2),
        },
        seed=0,
    )
    try:
        first = drive_pool(selector, discrete_loss, 20)
        given_up = [selector.ask() for _ in range(4)]  # cancelled, never told
        assert all(t is not None for t in given_up)
        selector.pause()  # cleanup()
        assert [t for t in threading.enumerate() if t not in before] == []
        second = drive_pool(selector, discrete_loss, 40)
        assert len(second) == 40  # the second search is served in full
        told = [canonical(t.params)[1] for t in first + second]
        assert len(set(told)) == len(told)  # still no dict told twice
        assert sum(selector.pending.values()) == 0
    finally:
        selector.close()
    assert [t for t in threading.enumerate() if t not in before] == []


def test_close_bounds_its_wait_for_a_thread_stuck_in_a_callback(monkeypatch):
    import dasktune.optim.scipy_bridge as bridge

    monkeypatch.setattr(bridge, "_JOIN_SECONDS", 0.2)
    release, called = threading.Event(), threading.Event()

    def stuck(*args, **kwargs):
        called.set()
        release.wait(30)

    opt = ScipyAskTell(
        "differential_evolution", [(-1, 1)] * 2, rng=0, popsize=3, callback=stuck
    )
    # ask() waits while scipy is busy: here in the stuck callback, which holds
    # it until release (30 s); a short wait lets the loop see the call
    opt.ask_wait = 0.05
    try:
        while not called.is_set():
            trials = []
            while (t := opt.ask()) is not None:
                trials.append(t)
            for t in trials:
                opt.tell(t, float(np.sum(t.params**2)))
        with pytest.raises(TimeoutError, match="did not stop within 0.2 s of close"):
            opt.close()
    finally:
        release.set()
    poll_for(lambda: not scipy_threads(), timeout=30)
