"""minimize(): exact DE, replicated serial methods, budgets, the store."""

from __future__ import annotations

import asyncio
import sys
import time

import numpy as np
import pytest
from distributed.utils_test import gen_cluster
from scipy import optimize
from scipy.optimize import Bounds, differential_evolution, rosen

from dasktune import DasktuneError, minimize
from dasktune.optim.spsa import SPSAOptimizer
from dasktune.store.sql import TrialStore


def sphere_shift(x, shift=0.0):
    return float(np.sum((np.asarray(x) - shift) ** 2))


def ackley(x):
    x = np.asarray(x)
    return float(
        -20 * np.exp(-0.2 * np.sqrt(0.5 * np.sum(x**2)))
        - np.exp(0.5 * np.sum(np.cos(2 * np.pi * x)))
        + np.e
        + 20
    )


def rastrigin(x):
    x = np.asarray(x)
    return float(10 * len(x) + np.sum(x**2 - 10 * np.cos(2 * np.pi * x)))


COLUMN_CALLS: list[tuple[int, ...]] = []  # shapes seen by rosen_columns (in-process)


def rosen_columns(x):
    """scipy's vectorized convention: (N, S) in, (S,) out."""
    COLUMN_CALLS.append(np.shape(x))
    return rosen(x)


def rosen_columns_picky(x):
    """Vectorized, but returns one number (a wrong shape) for any chunk with a
    point right of x0 = 1.5."""
    if np.any(x[0] > 1.5):
        return float(np.sum(rosen(x)))
    return rosen(x)


async def run(*args, **kwargs):
    return await asyncio.to_thread(minimize, *args, **kwargs)


@pytest.mark.parametrize("seed", [0, 7])
@pytest.mark.parametrize(
    ("fun", "bounds"), [(rosen, [(-2.0, 2.0)] * 3), (ackley, [(-4.0, 4.0)] * 2)]
)
def test_de_is_exactly_scipy(seed, fun, bounds):
    @gen_cluster(client=True, timeout=120)
    async def check(c, s, a, b):
        expected = differential_evolution(
            fun, bounds, rng=seed, updating="deferred", maxiter=25
        )
        result = await run(fun, bounds, seed=seed, maxiter=25, client=c)
        np.testing.assert_array_equal(result.x, expected.x)
        assert result.fun == expected.fun
        assert result.nfev == expected.nfev  # scipy's count, polish included
        assert result.nfev_evaluated <= result.nfev

    check()


@gen_cluster(client=True, timeout=120)
async def test_replicated_methods_count_every_evaluation(c, s, a, b):
    result = await run(
        ackley, [(-4, 4)] * 2, method="direct", n_workers=3, client=c, maxfun=60
    )
    assert len(result.results) == 3
    assert result.nfev == sum(r.nfev for r in result.results)
    assert result.fun == min(r.fun for r in result.results)
    result = await run(
        ackley,
        [(-4, 4)] * 2,
        method="dual_annealing",
        n_workers=2,
        seed=3,
        client=c,
        maxiter=2,
        no_local_search=True,
    )
    assert len(result.results) == 2
    assert result.nfev == sum(r.nfev for r in result.results)
    # the two seeded replicas explored different paths
    assert result.results[0].x.tolist() != result.results[1].x.tolist()


@gen_cluster(client=True, timeout=120)
async def test_shgo_spsa_and_args(c, s, a, b):
    result = await run(
        sphere_shift, [(-2, 2)] * 2, method="shgo", args=(0.5,), client=c
    )
    np.testing.assert_allclose(result.x, [0.5, 0.5], atol=1e-5)
    result = await run(
        sphere_shift,
        [(-2, 2)] * 2,
        method="spsa",
        args=(0.5,),
        seed=0,
        client=c,
        maxiter=200,
        c_par=0.05,
    )
    np.testing.assert_allclose(result.x, [0.5, 0.5], atol=0.05)


@gen_cluster(client=True, timeout=120)
async def test_maxfev_stops_early_with_the_best_point(c, s, a, b):
    result = await run(rosen, [(-2, 2)] * 3, seed=0, client=c, maxfev=60)
    assert not result.success
    assert result.nfev_evaluated == 60
    assert result.fun == pytest.approx(rosen(result.x))


@gen_cluster(client=True, timeout=120)
async def test_store_records_and_reuses_evaluations(c, s, a, b):
    store = TrialStore("sqlite://")
    first = await run(
        ackley,
        [(-4, 4)] * 2,
        seed=1,
        maxiter=5,
        polish=False,
        client=c,
        store=store,
        name="ack",
    )
    sid = store.find_search("ack")["id"]
    rows = store.trials(sid)
    assert len(rows) == first.nfev_evaluated
    assert all(r["status"] == "done" and len(r["params"]["x"]) == 2 for r in rows)
    again = await run(
        ackley,
        [(-4, 4)] * 2,
        seed=1,
        maxiter=5,
        polish=False,
        client=c,
        store=store,
        name="ack",
    )
    assert again.fun == first.fun
    assert again.nfev_evaluated == 0  # every point came from the store


@gen_cluster(client=True, timeout=120)
async def test_a_store_opened_from_a_path_is_closed(c, s, a, b):
    import pathlib
    import tempfile

    closed = []
    close = TrialStore.close

    def spy(self):
        closed.append(self.url)
        close(self)

    TrialStore.close = spy
    try:
        with tempfile.TemporaryDirectory() as folder:
            path = pathlib.Path(folder) / "m.db"
            await run(ackley, [(-4, 4)] * 2, seed=1, maxiter=2, polish=False,
                      client=c, store=path, name="ack")  # fmt: skip
            assert closed == [f"sqlite:///{path}"]
    finally:
        TrialStore.close = close


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((3, [(0, 1)]), {}, TypeError, "fun must be callable"),
        ((rosen, [(0, 1)]), {"method": "bfgs"}, ValueError, "method must be one of"),
        ((rosen, [(1, 0)]), {}, ValueError, "low <= high"),
        ((rosen, [0, 1]), {}, ValueError, r"list of \(low, high\) pairs"),
        (
            (rosen, Bounds([0, -np.inf], [1, 1])),
            {},
            ValueError,
            r"differential_evolution'\) needs finite bounds; parameter 1 has \(-inf, 1\)",
        ),
        (
            (rosen, [(0, 1)]),
            {"method": "dual_annealing", "vectorized": True},
            TypeError,
            "vectorized=True is for method='differential_evolution' only",
        ),
        (
            (rosen, [(0, 1)]),
            {"method": "shgo", "vectorized": True},
            TypeError,
            "scipy's shgo evaluates one point at a time",
        ),
        ((rosen, [(0, 1)]), {"vectorized": "yes"}, TypeError, "True or False"),
        (
            (rosen, [(0, 1)]),
            {"maxfev": 0},
            ValueError,
            "maxfev must be an integer >= 1",
        ),
        ((rosen, [(0, 1)]), {"args": [1]}, TypeError, "args must be a tuple"),
        (
            (rosen, [(0, 1)] * 2),
            {"popsiz": 3},
            TypeError,
            "unexpected keyword arguments",
        ),
    ],
)
def test_bad_input(args, kwargs, error, match):
    class NoClient:
        def nthreads(self):  # pragma: no cover - must never be reached
            raise AssertionError("used the cluster despite bad input")

    with pytest.raises(error, match=match):
        minimize(*args, client=NoClient(), **kwargs)


@gen_cluster(client=True, timeout=120)
async def test_direct_replicas_never_worse_than_scipy(c, s, a, b):
    # a minimum in the middle of the box, where replicas' slabs meet: the
    # first replica searches the whole box, exactly as scipy does
    serial = optimize.direct(rastrigin, [(-5, 5)] * 2)
    for n_workers in (2, 3, 4):
        result = await run(
            rastrigin, [(-5, 5)] * 2, method="direct", n_workers=n_workers, client=c
        )
        assert result.fun <= serial.fun
        np.testing.assert_array_equal(result.results[0].x, serial.x)
        assert result.nfev == sum(r.nfev for r in result.results)


@gen_cluster(client=True, timeout=120)
async def test_replicas_on_the_driver_loop_when_recording(c, s, a, b):
    store = TrialStore("sqlite://")
    result = await run(
        ackley,
        [(-4, 4)] * 2,
        method="direct",
        n_workers=2,
        client=c,
        maxfun=30,
        store=store,
    )
    rows = store.trials(store.find_search("minimize-ackley")["id"])
    assert len(rows) == result.nfev_evaluated == result.nfev
    assert len(result.results) == 2


@pytest.mark.parametrize("polish", [True, False])
def test_vectorized_is_exactly_scipy(polish):
    @gen_cluster(client=True, timeout=120)
    async def check(c, s, a, b):
        bounds = [(0.0, 10.0)] * 2
        expected = differential_evolution(
            rosen, bounds, vectorized=True, updating="deferred", rng=1,
            polish=polish, maxiter=60,
        )  # fmt: skip
        COLUMN_CALLS.clear()
        result = await run(
            rosen_columns, bounds, vectorized=True, seed=1, polish=polish,
            maxiter=60, client=c,
        )  # fmt: skip
        np.testing.assert_array_equal(result.x, expected.x)
        assert result.fun == expected.fun
        assert result.nfev == expected.nfev  # scipy's count: one per generation
        assert result.nit == expected.nit
        # every call got whole chunks as (N, S) arrays, far fewer calls than points
        assert all(len(shape) == 2 and shape[0] == 2 for shape in COLUMN_CALLS)
        assert sum(shape[1] for shape in COLUMN_CALLS) == result.nfev_evaluated
        assert len(COLUMN_CALLS) < result.nfev_evaluated / 2

    check()


# a generation goes as one vectorized call per thread: 8 threads, so that some
# chunks have no point right of 1.5
@gen_cluster(client=True, timeout=120, nthreads=[("127.0.0.1", 4)] * 2)
async def test_vectorized_wrong_shape_fails_each_point_of_its_chunk(c, s, a, b):
    store = TrialStore("sqlite://")
    await run(
        rosen_columns_picky,
        [(-2.0, 2.0)] * 2,
        vectorized=True,
        seed=0,
        maxiter=2,
        polish=False,
        client=c,
        store=store,
        name="picky",
    )
    rows = store.trials(store.find_search("picky")["id"])
    failed = [r for r in rows if r["status"] == "failed"]
    assert failed and len(failed) < len(rows)
    assert all("must return shape (" in r["error"] for r in failed)
    # whole chunks fail: some failed points are themselves left of 1.5
    assert any(r["params"]["x"][0] <= 1.5 for r in failed)


@gen_cluster(client=True, timeout=120)
async def test_bounds_objects_everywhere(c, s, a, b):
    box = Bounds([-2.0] * 3, [2.0] * 3)
    kwargs = {"seed": 0, "maxiter": 5, "polish": False, "client": c}
    from_bounds = await run(rosen, box, **kwargs)
    from_pairs = await run(rosen, [(-2.0, 2.0)] * 3, **kwargs)
    np.testing.assert_array_equal(from_bounds.x, from_pairs.x)
    spsa = await run(
        sphere_shift, Bounds([-1.0] * 2, [1.0] * 2), method="spsa", seed=0,
        maxiter=20, client=c,
    )  # fmt: skip
    assert np.all(np.abs(spsa.x) <= 1.0)
    opt = SPSAOptimizer([0.5, 0.5], bounds=Bounds([0, 0], [1, 1]), maxiter=1)
    np.testing.assert_array_equal(opt.bounds, ([0, 0], [1, 1]))
    with pytest.raises(ValueError, match="SPSA .* needs finite bounds"):
        SPSAOptimizer([0.5], bounds=Bounds([0], [np.inf]), maxiter=1)


def test_callback_runs_in_the_callers_process(client):
    # a real 2-process cluster: a callback run on a worker would append there
    for method, options in [
        ("differential_evolution", {"maxiter": 3, "polish": False}),
        ("dual_annealing", {"maxiter": 3, "no_local_search": True}),
        ("direct", {"maxfun": 40}),
        ("shgo", {}),
    ]:
        seen = []
        result = minimize(
            sphere_shift, [(-2.0, 2.0)] * 2, method=method, seed=0, n_workers=2,
            callback=lambda *args, seen=seen, **kwargs: seen.append(args or kwargs),
            client=client, **options,
        )  # fmt: skip
        assert seen, f"{method}: the callback's side effects were lost"
        assert np.isfinite(result.fun)

    # True from one replica's call stops every replica; the user's callback is
    # not called again
    calls = []

    def stop_once(x, f, context):
        calls.append(f)
        return len(calls) == 1

    result = minimize(
        sphere_shift, [(-2.0, 2.0)] * 2, method="dual_annealing", seed=0,
        n_workers=2, callback=stop_once, client=client, maxiter=200,
    )  # fmt: skip
    assert len(calls) == 1
    assert all("requested to stop" in str(r.message) for r in result.results)
    assert len(result.results) == 2


# -- values as scipy takes them; never a silent inf ---------------------------------


def sphere_1d(x):  # shape (1,): what norm.rvs(size=1) gives
    return np.array([sphere_shift(x)])


def sphere_0d(x):
    return np.array(sphere_shift(x))


def sphere_column(x):  # shape (1, 1): x @ A @ x with a column
    col = np.asarray(x).reshape(-1, 1)
    return col.T @ col


def two_values(x):
    return np.array([sphere_shift(x), 0.0])


def divide_by_zero(x):
    return 1 / int(x[0] - x[0])


def fails_beyond_one(x):
    if x[0] > 1.0:
        raise ZeroDivisionError(f"no value at {x[0]}")
    return sphere_shift(x)


@pytest.mark.parametrize("fun", [sphere_1d, sphere_0d, sphere_column])
def test_values_of_size_one_give_scipys_de(fun):
    @gen_cluster(client=True, timeout=120)
    async def check(c, s, a, b):
        bounds = [(-2.0, 2.0)] * 2
        expected = differential_evolution(
            sphere_shift, bounds, rng=3, updating="deferred", maxiter=5
        )
        result = await run(fun, bounds, seed=3, maxiter=5, client=c)
        np.testing.assert_array_equal(result.x, expected.x)
        assert result.fun == expected.fun and result.nfev_evaluated > 0

    check()


@gen_cluster(client=True, timeout=120)
async def test_values_of_size_one_in_replicas_run_as_tasks(c, s, a, b):
    for fun in (sphere_1d, sphere_0d):
        result = await run(
            fun, [(-2, 2)] * 2, method="dual_annealing", n_workers=2, seed=0,
            maxiter=20, client=c,
        )  # fmt: skip
        assert isinstance(result.fun, float) and result.fun < 0.1


def _notes(err: BaseException) -> str:
    return "\n".join(getattr(err, "__notes__", []))


@gen_cluster(client=True, timeout=120)
async def test_every_evaluation_failing_raises_the_objectives_error(c, s, a, b):
    bounds = [(-2.0, 2.0)] * 2
    with pytest.raises(ZeroDivisionError) as info:
        await run(divide_by_zero, bounds, seed=0, maxiter=2, popsize=4, client=c)
    notes = _notes(info.value)
    assert "raised by the objective on worker tcp://" in notes
    assert "every evaluation failed" in notes
    assert "in divide_by_zero" in notes and "1 / int(x[0] - x[0])" in notes
    # a value of the wrong kind is a failure that says what came
    with pytest.raises(TypeError, match=r"got ndarray of shape \(2,\)"):
        await run(two_values, bounds, seed=0, maxiter=2, popsize=4, client=c)
    # dual_annealing, its replicas as tasks on the workers...
    with pytest.raises(ZeroDivisionError) as info:
        await run(
            divide_by_zero, bounds, method="dual_annealing", n_workers=2, seed=0,
            client=c,
        )  # fmt: skip
    assert "raised in a dual_annealing replica" in _notes(info.value)
    assert "1 / int(x[0] - x[0])" in _notes(info.value)
    # ...or on the driver loop (maxfev): scipy gives up on the infs its own way
    with pytest.raises(ZeroDivisionError) as info:
        await run(
            divide_by_zero, bounds, method="dual_annealing", n_workers=2, seed=0,
            maxfev=40, client=c,
        )  # fmt: skip
    assert "every evaluation failed" in _notes(info.value)


@gen_cluster(client=True, timeout=120)
async def test_a_partly_failing_objective_still_works(c, s, a, b):
    result = await run(
        fails_beyond_one, [(-2.0, 2.0)] * 2, seed=0, maxiter=30, client=c
    )
    assert result.fun < 1e-3 and result.x[0] <= 1.0


def test_the_failure_crosses_processes(client):
    with pytest.raises(ZeroDivisionError) as info:
        minimize(divide_by_zero, [(-1.0, 1.0)], seed=0, maxiter=1, popsize=4,
                 client=client)  # fmt: skip
    notes = _notes(info.value)
    assert "raised by the objective on worker tcp://" in notes
    assert "1 / int(x[0] - x[0])" in notes


_CALLS: list[int] = []


def always_fails_counted(x):
    _CALLS.append(1)
    raise ZeroDivisionError("never a value")


@gen_cluster(client=True, timeout=120)
async def test_an_always_failing_objective_stops_early(c, s, a, b):
    # scipy's DE would run its 1000 generations of infs: stop after the first ones
    _CALLS.clear()
    with pytest.raises(ZeroDivisionError, match="never a value"):
        await run(always_fails_counted, [(-2.0, 2.0)] * 2, seed=0, client=c)
    assert 0 < len(_CALLS) <= 200


def exits_x(x):
    sys.exit(3)


def test_minimize_with_an_objective_that_exits_raises_saying_so(client):
    with pytest.raises(DasktuneError, match="SystemExit: 3"):
        minimize(exits_x, [(-1, 1)], client=client, seed=0, maxiter=2, popsize=4)
    assert len(client.scheduler_info()["workers"]) == 2


def slow_sphere(x):
    time.sleep(0.01)
    return float(np.sum(x**2))


@gen_cluster(client=True)
async def test_minimize_timeout_returns_the_best_so_far(c, s, a, b):
    # a first generation takes ~0.1 s; the timeout leaves room for a loaded
    # machine (CI once finished none within 1 s of a 50 ms objective)
    try:
        res = await asyncio.to_thread(
            minimize, slow_sphere, [(-1, 1)] * 2, client=c, seed=0,
            maxiter=10_000, tol=0, timeout=2.0,
        )  # fmt: skip
    except TimeoutError as error:
        # gen_cluster takes a TimeoutError for its own and then waits forever
        pytest.fail(f"minimize raised {error!r}")
    assert not res.success
    assert "stopped by the timeout after" in res.message
    assert res.nfev_evaluated > 0 and np.isfinite(res.fun)
    with pytest.raises(ValueError, match="timeout must be a positive"):
        minimize(slow_sphere, [(-1, 1)], client=c, timeout=-1)


# -- scipy's own tests, ported: what their suites expect of the same calls -------


def sphere_at(x, a):
    return float(np.sum((np.asarray(x) - a) ** 2))


def sphere_at_jac(x, a):
    return 2 * (np.asarray(x) - a)


def sphere_at_hess(x, a):
    return 2 * np.eye(len(x))


@gen_cluster(client=True, timeout=60)
async def test_args_reach_a_jac_and_hess_in_minimizer_kwargs(c, s, a, b):
    # scipy's test_args_gh23517 (shgo) and test_callable_jac_hess_with_args
    # (dual_annealing): args go to the local search's jac and hess too
    res = await run(
        sphere_at, [(-5, 5)] * 2, method="shgo", client=c, args=(1.5,),
        minimizer_kwargs={"method": "L-BFGS-B", "jac": sphere_at_jac},
    )  # fmt: skip
    np.testing.assert_allclose(res.x, [1.5, 1.5], atol=1e-6)
    res = await run(
        sphere_at, [(-5, 5)] * 2, method="dual_annealing", client=c,
        args=(1.5,), maxfev=300, n_workers=2, seed=0,
        minimizer_kwargs={"method": "Newton-CG", "jac": sphere_at_jac,
                          "hess": sphere_at_hess},
    )  # fmt: skip
    np.testing.assert_allclose(res.x, [1.5, 1.5], atol=1e-6)


@gen_cluster(client=True, timeout=60)
async def test_jac_true_is_refused_before_any_evaluation(c, s, a, b):
    # scipy's test_21_1_jac_true: an objective returning (f, grad); dasktune's
    # objectives return values, so it is refused rather than failing every trial
    for method, where in (("shgo", "options"), ("dual_annealing", "minimizer_kwargs")):
        with pytest.raises(TypeError, match=r"'jac': True.*give jac as a function"):
            await run(rosen, [(-1, 1)] * 2, method=method, client=c,
                      **{where: {"jac": True}})  # fmt: skip
    assert not s.tasks


@gen_cluster(client=True, timeout=60)
async def test_scipys_rng_seeds_the_replicas(c, s, a, b):
    # scipy's test_rand_gen: the same rng, the same result
    kw = {"method": "dual_annealing", "client": c, "maxiter": 20, "n_workers": 2}
    for rng in (1, np.random.default_rng(3), np.random.SeedSequence(4)):
        again = (
            np.random.default_rng(3)
            if isinstance(rng, np.random.Generator)
            else rng  # an int, a SeedSequence: the same seed again
        )
        first = await run(rastrigin, [(-5.12, 5.12)] * 2, rng=rng, **kw)
        second = await run(rastrigin, [(-5.12, 5.12)] * 2, rng=again, **kw)
        np.testing.assert_array_equal(first.x, second.x)
        assert first.nfev == second.nfev
    other = await run(rastrigin, [(-5.12, 5.12)] * 2, rng=2, **kw)
    assert not np.array_equal(other.x, first.x)
    with pytest.raises(TypeError, match="seed= or scipy's rng=, not both"):
        await run(rastrigin, [(-1, 1)], client=c, seed=0, rng=1)
    with pytest.raises(TypeError, match="rng must be an int or what numpy"):
        await run(rastrigin, [(-1, 1)], method="dual_annealing", client=c, rng="x")


@gen_cluster(client=True, timeout=60)
async def test_replicas_give_the_best_replicas_scipy_fields(c, s, a, b):
    # scipy's direct tests read status and message as scipy gives them
    for extra in ({}, {"maxfev": 400}):  # whole replicas as tasks; on the driver
        res = await run(
            rastrigin, [(-5.12, 5.12)] * 2, method="direct", client=c,
            n_workers=2, maxfun=60, **extra,
        )  # fmt: skip
        best = min(res.results, key=lambda r: r.fun)
        assert (res.status, res.message, res.success) == (
            best.status, best.message, best.success,
        )  # fmt: skip
        assert res.replicas == len(res.results) == 2
        assert res.nfev == sum(r.nfev for r in res.results)
    res = await run(
        rastrigin, [(-5.12, 5.12)] * 2, method="dual_annealing", client=c,
        n_workers=2, maxiter=5, seed=0,
    )  # fmt: skip
    assert isinstance(res.message, list)  # dual_annealing's message is a list
    assert "Maximum number of iteration" in res.message[0]


def first_squared_plus(x):
    return float(x[0] ** 2 + (x[1] - 1) ** 2)


@pytest.mark.parametrize("bounds", [[(2.0, 2.0), (3.0, 3.0)], [(1, 1), (0, 2)]])
def test_de_takes_equal_bounds_as_scipy_does(bounds):
    # scipy's test_equal_bounds: low == high holds a parameter fixed
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                     dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):  # fmt: skip
        res = minimize(first_squared_plus, bounds, client=client, seed=0)
    ref = differential_evolution(first_squared_plus, bounds, rng=0, updating="deferred")
    np.testing.assert_array_equal(res.x, ref.x)
    assert (res.fun, res.nfev) == (ref.fun, ref.nfev)
    with pytest.raises(ValueError, match=r"need low < high; parameter 0 has \(1, 1\)"):
        minimize(first_squared_plus, [(1, 1), (0, 2)], method="dual_annealing")
