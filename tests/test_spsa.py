"""SPSA: gains, gradient at bounds, OptimTools' defects, batches, blocking, resume."""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import math
import re
import threading

import numpy as np
import pytest
from distributed.utils_test import gen_cluster
from scipy.optimize import rosen

from dasktune import SPSA
from dasktune.optim.spsa import SPSAOptimizer, SPSAPoint, SPSAState
from dasktune.run.driver import Driver

_lock = threading.Lock()
_seen: list[tuple[tuple[float, ...], int]] = []


def drive(opt: SPSAOptimizer, f) -> object:
    """A serial ask/tell loop, results told in reverse order."""
    while not opt.finished:
        trials = []
        while (t := opt.ask()) is not None:
            trials.append(t)
        for t in reversed(trials):
            x = t.params.x if isinstance(t.params, SPSAPoint) else t.params
            opt.tell(t, f(np.asarray(x)))
    return opt.result


def sphere(x):
    return float(np.sum(np.asarray(x) ** 2))


def noisy_quadratic(x, seed=None):
    rng = np.random.default_rng(seed)
    with _lock:
        _seen.append((tuple(np.round(x, 12)), seed))
    return float(np.sum((np.asarray(x) - 1.0) ** 2) + 0.1 * rng.normal())


def nan_beyond_half(x):
    return float("nan") if x[0] > 0.5 else float((x[0] - 2) ** 2)


@pytest.fixture(autouse=True)
def _reset():
    _seen.clear()


class _NoClient:
    def submit(self, *a, **k):  # pragma: no cover - must never be reached
        raise AssertionError("evaluated despite bad input")

    map = submit


# -- gains, perturbations, the gradient ---------------------------------------------


def test_gains_and_perturbations_by_hand():
    opt = SPSAOptimizer(
        [0.0, 0.0], a=2.0, c=0.5, A=10, alpha=0.602, gamma=0.101, seed=3
    )
    assert opt.gains(0) == pytest.approx((2.0 / 11**0.602, 0.5))
    assert opt.gains(4) == pytest.approx((2.0 / 15**0.602, 0.5 / 5**0.101))
    assert pytest.approx(20.0) == SPSAOptimizer([0], maxiter=200, adaptive=False).A
    assert pytest.approx(20.0) == SPSAOptimizer([0], a=1.0, maxiter=200).A
    assert SPSAOptimizer([0, 0, 0], maxiter=200).A == 6.0  # Kesten's rule: 2d
    deltas = np.array([opt.perturbation() for _ in range(2000)])
    assert set(np.unique(deltas)) == {-1.0, 1.0}
    assert abs(deltas.mean()) < 0.05
    again = SPSAOptimizer([0.0, 0.0], a=2.0, c=0.5, A=10, seed=3)
    np.testing.assert_array_equal(again.perturbation(), deltas[0])


@pytest.mark.parametrize("size", [1, 2, 3])
def test_perturbations_drawn_ahead_are_single_draws(size):
    # drawn a block at a time (one integers() call costs as much as a cheap
    # iteration's arithmetic), they are the vectors one rng.choice each gives,
    # and a checkpoint saves the stream where those single draws leave it
    opt = SPSAOptimizer([0.0] * size, seed=5)
    rng = np.random.default_rng(5)
    for i in range(150):  # into the third block
        expected = rng.choice([-1.0, 1.0], size=size)
        np.testing.assert_array_equal(opt.perturbation(), expected)
        if i in (0, 62, 63, 64, 149):
            assert SPSAState.of(opt).rng == rng.bit_generator.state


def test_a_generator_given_is_never_drawn_ahead():
    # the caller may draw from it too: it moves exactly as single draws move it
    given, reference = np.random.default_rng(4), np.random.default_rng(4)
    opt = SPSAOptimizer([0.0, 0.0], seed=given)
    for _ in range(3):
        expected = reference.choice([-1.0, 1.0], size=2)
        np.testing.assert_array_equal(opt.perturbation(), expected)
    assert given.bit_generator.state == reference.bit_generator.state


def _shifted_quadratic(x):
    return float(np.sum((np.asarray(x) - 1.0) ** 2))


def test_seeded_spsa_keeps_its_iterates():
    # the iterates of a seeded run, pinned before the per-iteration work was
    # cut (perturbations drawn ahead, one pair's gradient on fewer arrays)
    def digest(res):
        raw = res.history["x"].tobytes() + res.history["fun"].tobytes()
        return hashlib.sha256(raw).hexdigest()[:16]

    res = SPSA(
        _shifted_quadratic, [0.0, 0.0], maxiter=300, seed=1, ftol=0.0,
        print_iters=None, execution="local",
    )  # fmt: skip
    assert digest(res) == "b27725062c8b977f"
    res = SPSA(
        _shifted_quadratic, [0.0, 0.0, 0.5], maxiter=100, seed=2,
        n_perturbations=3, bounds=[(-1, 2)] * 3, print_iters=None,
        execution="local",
    )  # fmt: skip
    assert res.x.tolist() == [
        1.0000000008038503,
        0.9999999995355842,
        1.0000000003654275,
    ]
    assert digest(res) == "6fe7d22b4d9ca345"


def test_gradient_uses_the_distance_between_clipped_points():
    # at the lower bound one point is clipped: the distance is c, not 2c
    opt = SPSAOptimizer([0.0], bounds=[(0.0, 1.0)], a=0.01, c=0.1, A=0, maxiter=1)
    first, second = opt.ask(), opt.ask()
    assert sorted([first.params[0], second.params[0]]) == [0.0, 0.1]
    for t in (first, second):
        opt.tell(t, -3.0 * t.params[0])  # f = -3x: gradient -3 exactly
    np.testing.assert_allclose(opt.x, [0.01 * 3.0])


# -- OptimTools' defects -------------------------------------------------------------


def test_default_gain_makes_progress_on_unit_scale_problems():
    res = drive(SPSAOptimizer([3.0], maxiter=60, seed=0), sphere)
    assert abs(res.x[0]) < 0.3  # OptimTools' a=1e-6 did not move


def test_integer_and_zero_starts_work_and_one_zero_step_does_not_stop():
    # at (t, t) the perturbation (1, -1) gives an exactly zero gradient estimate
    res = drive(SPSAOptimizer([1, 1], maxiter=150, seed=2, c=0.1), sphere)
    assert res.nit > 5
    assert sphere(res.x) < 1e-2  # an optimum at 0 is reachable
    res = drive(SPSAOptimizer([0, 0], maxiter=30, seed=2), lambda x: sphere(x - 1))
    assert sphere(res.x - 1) < 0.1
    res = drive(
        SPSAOptimizer([0, 0], maxiter=30, seed=2, adaptive=False),
        lambda x: sphere(x - 1),
    )
    assert res.nit == 30 and sphere(res.x - 1) < 2.0


def test_param_tol_rejection_retries_instead_of_ending():
    rng = np.random.default_rng(0)

    def noisy(x):
        return sphere(x) + rng.normal()

    res = drive(
        SPSAOptimizer([1.0, 1.0], a=0.5, c=0.2, param_tol=0.5, maxiter=40, seed=1),
        noisy,
    )
    assert res.nit == 40  # the run went on
    assert res.nfev > 2 * res.nit + 1  # rejected iterations were retried
    steps = np.abs(np.diff(np.vstack([[1.0, 1.0], res.history["x"]]), axis=0))
    assert steps.max() <= 0.5


def test_convergence_in_a_fixed_number_of_evaluations():
    rng = np.random.default_rng(0)

    def noisy(x):
        return float(np.sum((x - 1) ** 2) + 0.1 * rng.normal())

    res = drive(SPSAOptimizer(np.zeros(10), c=0.3, maxiter=250, seed=0), noisy)
    assert res.nfev == 2 * 8 + len(SPSAOptimizer.probe_factors) + 2 * 250 + 1
    assert np.sum((res.x - 1) ** 2) < 0.3  # from 10 at the start
    res = drive(SPSAOptimizer([0, 0], max_step=0.2, A=10, maxiter=3000, seed=0), rosen)
    assert res.fun < 0.15


@pytest.mark.parametrize("stop", ["ftol", "maxiter", "callback"])
def test_the_callback_sees_every_iteration_whatever_ends_the_run(stop):
    # noisyopt's and scipy's callbacks run after every iteration, the last too
    seen = []

    def callback(r):
        seen.append(r.nit)
        return stop == "callback" and r.nit == 5

    res = drive(
        SPSAOptimizer(
            [0.5, 1.0], a=1.0, c=1.0, A=1.0, seed=1234, callback=callback,
            maxiter=100 if stop == "ftol" else 10,
        ),
        lambda x: float(np.sum(np.asarray(x) ** 2)),
    )  # fmt: skip
    expected = {
        "ftol": "below ftol",
        "maxiter": "reached maxiter",
        "callback": "by the callback",
    }
    assert expected[stop] in res.message
    assert seen == list(range(1, res.nit + 1))


def test_blocking_rejects_steps_that_increase_f():
    free = drive(
        SPSAOptimizer([1.0, -1.0], a=3.0, c=0.01, A=0, maxiter=30, seed=4), sphere
    )
    blocked = drive(
        SPSAOptimizer(
            [1.0, -1.0],
            a=3.0,
            c=0.01,
            A=0,
            maxiter=30,
            seed=4,
            blocking=True,
            allowed_increase=0.0,
        ),
        sphere,
    )
    assert blocked.fun <= 2.0  # never worse than the start
    assert blocked.fun < free.fun


def rough(x):
    """A sphere with deterministic ripples: Kesten's sign changes, replayable."""
    x = np.asarray(x)
    return float(np.sum(x**2) + 0.05 * np.sum(np.sin(300 * x)))


def run_batches(opt: SPSAOptimizer, f, n: int) -> None:
    for _ in range(n):
        trials = []
        while (t := opt.ask()) is not None:
            trials.append(t)
        for t in trials:
            opt.tell(t, f(t.params))


@pytest.mark.parametrize(
    ("batches", "phase"), [(1, "probe"), (2, "iterate"), (13, "iterate")]
)
def test_checkpoint_resume_continues_identically(tmp_path, batches, phase):
    # killed after the calibration (the line search pending), after the line
    # search, and after 11 iterations (Kesten's counter and mean under way)
    path = tmp_path / "spsa.json"
    whole = drive(SPSAOptimizer([2.0, -1.0], maxiter=30, seed=7), rough)
    first = SPSAOptimizer([2.0, -1.0], maxiter=30, seed=7, checkpoint=path)
    run_batches(first, rough, batches)
    assert path.exists() and first.phase == phase
    resumed = SPSAOptimizer([2.0, -1.0], maxiter=30, seed=7, checkpoint=path)
    assert SPSAState.of(resumed).to_json() == SPSAState.of(first).to_json()
    if batches == 13:
        assert first.k == 11 and first.sign_changes > 0
    res = drive(resumed, rough)
    np.testing.assert_array_equal(res.history["x"], whole.history["x"])
    assert res.fun == whole.fun
    with pytest.raises(ValueError, match="holds 2 parameters but initparams has 3"):
        SPSAOptimizer([0.0, 0.0, 0.0], checkpoint=path)


def test_checkpoint_without_the_adaptive_fields_still_loads(tmp_path):
    path = tmp_path / "old.json"
    opt = SPSAOptimizer([2.0, -1.0], maxiter=30, seed=7, adaptive=False)
    run_batches(opt, sphere, 4)
    state = json.loads(SPSAState.of(opt).to_json())
    for name in ("sign_changes", "momentum", "probe", "trust_radius"):
        del state[name]  # a checkpoint written before they existed
    path.write_text(json.dumps(state))
    resumed = SPSAOptimizer(
        [2.0, -1.0], maxiter=30, seed=7, adaptive=False, checkpoint=path
    )
    assert resumed.k == opt.k == 3
    np.testing.assert_array_equal(resumed.x, opt.x)


# -- the default gains (line search, Kesten's rule) -------------------------------


def _noisy_sphere(seed: int):
    rng = np.random.default_rng([seed, 99])
    return lambda x: sphere(x) + 0.01 * rng.normal()


def test_default_gains_converge_on_a_noisy_quadratic():
    # issue 10: 150 iterations from [2]*5, noise 0.01; Spall's calibration ended
    # at f ~ 0.045 (median of 6 seeds), noisyopt with a = 0.5 at ~ 0.0004
    def final(seed: int, **kwargs) -> float:
        opt = SPSAOptimizer([2.0] * 5, c=0.1, maxiter=150, seed=seed, **kwargs)
        return sphere(drive(opt, _noisy_sphere(seed)).x)

    assert np.median([final(seed) for seed in range(6)]) < 0.002
    assert np.median([final(seed, adaptive=False) for seed in range(6)]) > 0.01


def test_kesten_keeps_the_gain_while_the_gradient_keeps_its_sign():
    def slope(x):
        return -3.0 * float(x[0])  # the gradient never changes sign

    adaptive = drive(SPSAOptimizer([0.0], c=0.1, maxiter=10, seed=0), slope)
    steps = np.diff(adaptive.history["x"][:, 0])
    np.testing.assert_allclose(steps, steps[0])  # a constant gain
    assert steps[0] > 0
    spall = drive(
        SPSAOptimizer([0.0], c=0.1, maxiter=10, seed=0, adaptive=False), slope
    )
    assert np.all(np.diff(np.diff(spall.history["x"][:, 0])) < 0)  # decaying


def test_an_explicit_gain_is_used_as_given():
    opt = SPSAOptimizer([1.0, 2.0], a=0.3, c=0.1, A=4, maxiter=5, seed=0)
    assert not opt.kesten and opt.phase == "iterate"  # no calibration, no search
    res = drive(opt, sphere)
    assert res.a == 0.3 and res.nfev == 2 * 5 + 1
    assert opt.gains(4)[0] == pytest.approx(0.3 / 9**0.602)


def test_line_search_moves_to_its_best_point_in_one_batch():
    opt = SPSAOptimizer([3.0, 3.0], c=0.1, maxiter=1, seed=0)
    run_batches(opt, sphere, 1)  # the calibration
    points = []
    while (t := opt.ask()) is not None:
        points.append(t)
    assert len(points) == len(SPSAOptimizer.probe_factors)
    for t in points:
        opt.tell(t, sphere(t.params))
    best = min(points, key=lambda t: sphere(t.params))
    np.testing.assert_array_equal(opt.x, best.params)
    assert sphere(opt.x) < sphere([3.0, 3.0]) / 4


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"bounds": [(0, 1)]}, "bounds has 1 pairs but initparams has 2 values"),
        ({"bounds": [(0, 1), (1, 1)]}, "low < high; parameter 1"),
        ({"bounds": [(0, 1), (2, 3)]}, r"initparams\[1\] = 0.5 is outside its bounds"),
        ({"maxiter": 0}, "maxiter must be an integer >= 1"),
        ({"a_par": -1.0}, "a_par must be a positive number"),
        ({"n_perturbations": 0}, "n_perturbations must be an integer >= 1"),
    ],
)
def test_bad_input_before_any_evaluation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SPSA(sphere, [0.5, 0.5], client=_NoClient(), print_iters=None, **kwargs)


def test_bad_callables():
    with pytest.raises(TypeError, match="fnc must be callable"):
        SPSA(3, [0.0], client=_NoClient())
    with pytest.raises(TypeError, match="args must be a tuple"):
        SPSA(sphere, [0.0], args=[1], client=_NoClient())


# -- on a cluster ------------------------------------------------------------------------


@gen_cluster(client=True, timeout=60)
async def test_same_seed_same_iterates_whatever_the_workers(c, s, a, b):
    serial = drive(
        SPSAOptimizer(
            [0.5, -0.5, 2.0], maxiter=25, n_perturbations=3, seed=11, tagged=True
        ),
        lambda x: sphere(x),
    )
    parallel = await asyncio.to_thread(
        SPSA,
        sphere,
        [0.5, -0.5, 2.0],
        maxiter=25,
        n_perturbations=3,
        seed=11,
        client=c,
        print_iters=None,
    )
    np.testing.assert_array_equal(parallel.history["x"], serial.history["x"])
    assert parallel.fun == serial.fun and parallel.nfev == serial.nfev


@gen_cluster(client=True, timeout=60)
async def test_each_iteration_goes_out_as_one_batch(c, s, a, b):
    sizes: list[int] = []
    original = Driver._submit

    def spy(self, to_run):
        sizes.append(len(to_run))
        return original(self, to_run)

    Driver._submit = spy
    try:
        res = await asyncio.to_thread(
            SPSA,
            sphere,
            [1.0, 2.0],
            maxiter=5,
            n_perturbations=4,
            seed=0,
            client=c,
            print_iters=None,
        )
    finally:
        Driver._submit = original
    assert res.nit == 5
    # calibration, line search, iterations, final
    assert sizes == [2 * 8, len(SPSAOptimizer.probe_factors)] + [2 * 4] * 5 + [1]


@gen_cluster(client=True, timeout=60)
async def test_pairs_share_a_seed_and_noisy_fit_converges(c, s, a, b):
    res = await asyncio.to_thread(
        SPSA,
        noisy_quadratic,
        np.zeros(4),
        c_par=0.3,
        maxiter=60,
        seed=5,
        client=c,
        print_iters=None,
    )
    assert np.sum((res.x - 1) ** 2) < 0.5
    seeds = collections.Counter(seed for _, seed in _seen)
    assert all(seed is not None for seed in seeds)
    # each seed given to both points of a pair, one to all the line search's
    # points; the final evaluation has its own
    probe = len(SPSAOptimizer.probe_factors)
    assert sorted(seeds.values()) == [1] + [2] * (len(seeds) - 2) + [probe]


@gen_cluster(client=True)
async def test_nan_stops_with_the_point(c, s, a, b):
    with pytest.raises(ValueError, match=r"value at x = \[.*\] is inf") as info:
        await asyncio.to_thread(
            SPSA,
            nan_beyond_half,
            [0.0],
            a_par=1.0,
            c_par=0.1,
            maxiter=50,
            client=c,
            print_iters=None,
        )
    # the NaN failed its evaluation; that failure is the cause, naming the point
    assert isinstance(info.value.__cause__, ValueError)
    assert re.search(
        r"the objective returned NaN for x = \[\d\.\d+\]( \(seed \d+\))?: nan",
        str(info.value.__cause__),
    ), info.value.__cause__


def shifted(params):
    return (params["x"] - 0.7) ** 2 + 0.1 * (params["n"] - 3) ** 2


@gen_cluster(client=True, timeout=60)
async def test_spsa_in_a_search_over_a_named_space(c, s, a, b):
    from dasktune import Float, Int, Search
    from dasktune.space import Space

    space = Space({"x": Float(-2.0, 2.0), "n": Int(1, 5)})
    opt = SPSAOptimizer(
        space.encode({"x": -1.5, "n": 1}),
        bounds=space.bounds,
        c=0.1,
        maxiter=40,
        seed=0,
    )
    search = Search("spsa", shifted, "sqlite://", client=c, space=space)
    report = await asyncio.to_thread(search.run, opt, progress=False)
    assert opt.finished and report.stopped == "finished"
    frame = search.trials()
    assert set(frame.columns) >= {"x", "n"}
    assert frame["n"].isin([1, 2, 3, 4, 5]).all()  # decoded, stored by name
    assert search.best.value < shifted({"x": -1.5, "n": 1}) / 4


# -- values as scipy takes them; failures carry the objective's error -----------------


def sphere_1d(x):
    return np.array([sphere(x)])


def sphere_0d(x):
    return np.array(sphere(x))


def always_fails(x):
    return 1 / int(x[0] - x[0])


def fails_beyond_half(x):
    if x[0] > 0.5:
        raise ZeroDivisionError(f"no value at {x[0]}")
    return float((x[0] - 2) ** 2)


def inf_beyond_half(x):
    return math.inf if x[0] > 0.5 else float((x[0] - 2) ** 2)


async def spsa(fun, x0, c, **kwargs):
    kwargs = {"maxiter": 20, "seed": 0, "print_iters": None, **kwargs}
    return await asyncio.to_thread(SPSA, fun, x0, client=c, **kwargs)


@gen_cluster(client=True, timeout=60)
async def test_values_of_size_one_give_the_same_iterates(c, s, a, b):
    expected = await spsa(sphere, [0.5, -0.5], c)
    for fun in (sphere_1d, sphere_0d):
        result = await spsa(fun, [0.5, -0.5], c)
        np.testing.assert_array_equal(result.x, expected.x)
        assert result.fun == expected.fun


@gen_cluster(client=True, timeout=60)
async def test_every_evaluation_failing_raises_the_objectives_error(c, s, a, b):
    with pytest.raises(ZeroDivisionError) as info:
        await spsa(always_fails, [0.5, -0.5], c)
    notes = "\n".join(info.value.__notes__)
    assert "raised by the objective on worker tcp://" in notes
    assert "every evaluation failed" in notes and "1 / int(x[0] - x[0])" in notes


@gen_cluster(client=True, timeout=60)
async def test_a_later_failure_is_the_cause_of_the_stop(c, s, a, b):
    with pytest.raises(ValueError, match=r"value at x = \[.*\] is inf") as info:
        await spsa(fails_beyond_half, [0.0], c, a_par=1.0, c_par=0.1, maxiter=50)
    cause = info.value.__cause__
    assert isinstance(cause, ZeroDivisionError) and "no value at" in str(cause)
    assert "fails_beyond_half" in "\n".join(cause.__notes__)


@gen_cluster(client=True, timeout=60)
async def test_an_infinite_value_returned_is_named_with_its_point(c, s, a, b):
    with pytest.raises(ValueError, match=r"value at x = \[.*\] is inf") as info:
        await spsa(inf_beyond_half, [0.0], c, a_par=1.0, c_par=0.1, maxiter=50)
    assert info.value.__cause__ is None  # returned, not failed


def test_a_new_optimizer_starts_from_spsa_states_defaults():
    # SPSAState is the one list of what a run learns: a new optimizer's
    # progress is its defaults, whatever field it gains
    opt = SPSAOptimizer([0.5, -0.5], a=0.1, seed=3)
    start = json.loads(SPSAState.of(opt).to_json())
    fresh = json.loads(SPSAState(opt.x, a=0.1, phase=opt.phase).to_json())
    assert {k: v for k, v in start.items() if k != "rng"} == {
        k: v for k, v in fresh.items() if k != "rng"
    }
    assert start["rng"] == opt.rng.bit_generator.state  # untouched by the start
    assert start["phase"] == "iterate" and start["k"] == 0 == start["nfev"]
