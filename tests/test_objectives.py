"""Several objectives and constraints: stored, told, the Pareto front, never an
infeasible best."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import optuna
import pytest
from distributed.utils_test import gen_cluster

from dasktune import DasktuneError, Float, Search
from dasktune._pareto import best_order, hypervolume_2d, pareto_front
from dasktune._values import feasible
from dasktune.exceptions import SearchMismatchError
from dasktune.optim.optuna import OptunaSampler
from dasktune.optim.pruners import MedianPruner
from dasktune.optim.spsa import SPSAOptimizer
from dasktune.records import MemoryRecorder
from dasktune.store.sql import TrialStore

GRID = [{"x": float(x)} for x in range(5)]


def two(params):
    """Minimise x, maximise -(x - 2)²: the front is x in {0, 1, 2}."""
    x = params["x"]
    return x, -((x - 2) ** 2)


def two_in_a_dict(params):
    x = params["x"]
    return {"loss": np.array([x, -((x - 2) ** 2)]), "note": "kept"}


def one_value_only(params):
    if params["x"] == 3.0:
        return 1.0  # one value where the search has two objectives
    return two(params)


def at_least_one(params):
    """Minimise x under x >= 1 (1 - x <= 0): the best is x = 1, not 0."""
    x = params["x"]
    return {"loss": x, "constraints": [1.0 - x], "n": 1}


def two_at_least_one(params):
    return two(params), {"constraints": 1.0 - params["x"]}


def bad_constraints(params):
    return {"loss": params["x"], "constraints": "low"}


def zdt1(params):
    """ZDT1 in two dimensions, with a constraint that cuts off f1 < 0.2."""
    x = np.array([params["x0"], params["x1"]])
    f1 = x[0]
    g = 1 + 9 * x[1]
    f2 = g * (1 - math.sqrt(f1 / g))
    return (f1, f2), {"constraints": [0.2 - f1]}


async def call(fn, *args, **kwargs):
    return await asyncio.to_thread(fn, *args, **kwargs)


@pytest.mark.parametrize("objective", [two, two_in_a_dict])
@gen_cluster(client=True)
async def test_two_objectives_are_stored_and_best_is_the_front(c, s, a, b, objective):
    search = Search(
        "mo", objective, "sqlite://", client=c, directions=["minimize", "maximize"]
    )
    report = await call(search.run, GRID, progress=False)
    assert report.evaluated == 5
    assert report.front == [(0.0, -4.0), (1.0, -1.0), (2.0, 0.0)]
    frame = search.trials().sort_values("x")
    assert list(frame["values_0"]) == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert list(frame["values_1"]) == [-4.0, -1.0, -0.0, -1.0, -4.0]
    assert list(frame["value"]) == list(frame["values_0"])  # the first objective
    front = search.best
    assert [t.params["x"] for t in front] == [0.0, 1.0, 2.0]
    assert [t.values for t in front] == [(0.0, -4.0), (1.0, -1.0), (2.0, 0.0)]
    assert search.best_trials == front
    if objective is two_in_a_dict:
        assert front[0].aux == {"note": "kept"}
    # the stored values come back as they went in
    rows = search.store.trials(search.search_id)
    assert sorted(tuple(r["objectives"]) for r in rows)[0] == (0.0, -4.0)
    # each trial is on a run's front once, told however often (reused here)
    again = await call(search.run, GRID + GRID[::-1], progress=False)
    assert again.reused == 10
    assert again.front == report.front
    assert len(again.front) == len(search.best)
    # re-opened to read it, without its directions: its own
    reader = Search("mo", objective, search.store, client=c)
    assert reader.directions == ["minimize", "maximize"]
    assert [t.values for t in reader.best] == [t.values for t in search.best]


@gen_cluster(client=True)
async def test_the_wrong_number_of_values_fails_that_trial_only(c, s, a, b):
    search = Search(
        "mo", one_value_only, "sqlite://", client=c, directions=["minimize"] * 2
    )
    report = await call(search.run, GRID, progress=False)
    assert (report.evaluated, report.failed) == (4, 1)
    failed = search.trials(status="failed")
    assert failed["x"].tolist() == [3.0]
    assert "must be 2 real numbers" in failed["error"].iloc[0]
    assert "got float" in failed["error"].iloc[0]


@gen_cluster(client=True)
async def test_one_objective_search_refuses_two_values_as_a_failed_trial(c, s, a, b):
    search = Search("one", two, "sqlite://", client=c)
    report = await call(search.run, GRID[:2], progress=False)
    assert report.failed == 2
    error = search.trials()["error"].iloc[0]
    assert "must be a real number" in error and "tuple of length 2" in error


@gen_cluster(client=True)
async def test_constraints_are_stored_and_an_infeasible_trial_is_never_best(c, s, a, b):
    search = Search("c", at_least_one, "sqlite://", client=c)
    report = await call(search.run, GRID, progress=False)
    assert report.best_value == 1.0  # 0.0 is lower but infeasible
    assert report.best_params == {"x": 1.0}
    assert search.best.params == {"x": 1.0}
    assert search.best.constraints == (0.0,)
    assert search.best.aux == {"n": 1}  # constraints are not auxiliary data
    frame = search.trials().sort_values("x")
    assert frame["feasible"].tolist() == [False, True, True, True, True]
    assert frame["constraints"].iloc[0] == (1.0,)
    # a re-run reuses the stored values and constraints: still not best
    again = await call(search.run, GRID, progress=False)
    assert (again.reused, again.best_value) == (5, 1.0)


@gen_cluster(client=True)
async def test_only_infeasible_trials_means_no_best(c, s, a, b):
    search = Search("c", at_least_one, "sqlite://", client=c)
    await call(search.run, GRID[:1], progress=False)
    with pytest.raises(
        DasktuneError, match=r"its 1 done trial\(s\) all violate their constraints"
    ):
        search.best  # noqa: B018
    assert search.best_trials == []


@gen_cluster(client=True)
async def test_the_front_leaves_out_infeasible_trials(c, s, a, b):
    search = Search(
        "mo", two_at_least_one, "sqlite://", client=c, directions=["minimize"] * 2
    )
    search.directions  # noqa: B018
    await call(search.run, GRID, progress=False)
    # minimise x and -(x-2)²: x=0 would be on the front but is infeasible
    assert [t.params["x"] for t in search.best] == [1.0, 4.0]
    again = await call(search.run, GRID, progress=False)  # reused: the same front
    assert (again.reused, again.front) == (5, [(1.0, -1.0), (4.0, -4.0)])


@gen_cluster(client=True)
async def test_bad_constraints_fail_the_trial(c, s, a, b):
    search = Search("c", bad_constraints, "sqlite://", client=c)
    report = await call(search.run, GRID[:1], progress=False)
    assert report.failed == 1
    assert "constraint 0" in search.trials()["error"].iloc[0]


@gen_cluster(client=True)
async def test_nsga2_with_constraints_through_optuna(c, s, a, b):
    space = {"x0": Float(0.0, 1.0), "x1": Float(0.0, 1.0)}
    directions = ["minimize", "minimize"]
    store = TrialStore("sqlite://")
    search = Search("zdt1", zdt1, store, client=c, space=space, directions=directions)
    nsga = OptunaSampler(
        optuna.samplers.NSGAIISampler(population_size=8, seed=0),
        space,
        directions=directions,
    )
    report = await call(search.run, nsga, n_trials=40, max_in_flight=8, progress=False)
    assert report.evaluated == 40
    study = nsga.study
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    # NSGA-II may propose a child twice: evaluated once, told to both
    assert len(complete) >= 40
    # the study holds each trial's values and the constraints Optuna reads
    frame = search.trials()
    assert all(len(t.values) == 2 for t in complete)
    assert {tuple(t.values) for t in complete} == set(
        zip(frame["values_0"], frame["values_1"], strict=True)
    )
    assert all(list(t.constraints.values()) == [0.2 - t.values[0]] for t in complete)
    # dasktune's front is Optuna's feasible front
    # (as sets: a child NSGA-II proposed twice is one trial here, two there)
    ours = {t.values for t in search.best}
    theirs = {tuple(t.values) for t in study.best_trials}
    assert ours == theirs
    assert all(v[0] >= 0.2 for v in ours)

    # resumed: a new sampler is taught the values and the constraints
    again = OptunaSampler(
        optuna.samplers.NSGAIISampler(population_size=8, seed=1),
        space,
        directions=directions,
    )
    await call(search.run, again, n_trials=8, max_in_flight=8, progress=False)
    taught = again.study.trials[:40]
    assert {tuple(t.values) for t in taught} == {tuple(t.values) for t in complete}
    assert all(t.constraints for t in taught)


@gen_cluster(client=True)
async def test_bad_input_is_refused_before_anything_runs(c, s, a, b):
    space = {"x": Float(0.0, 4.0)}
    with pytest.raises(ValueError, match="non-empty list of 'minimize' or 'maximize'"):
        Search("mo", two, "sqlite://", client=c, directions=["minimize", "up"])
    with pytest.raises(TypeError, match="directions must be a list"):
        Search("mo", two, "sqlite://", client=c, directions="minimize")
    with pytest.raises(ValueError, match="not both"):
        Search(
            "mo", two, "sqlite://", client=c, direction="maximize",
            directions=["minimize", "minimize"],
        )  # fmt: skip
    search = Search(
        "mo", two, "sqlite://", client=c, space=space, directions=["minimize"] * 2
    )
    one = SPSAOptimizer([0.5], bounds=[(0.0, 1.0)])  # takes one value
    with pytest.raises(
        ValueError, match=r"has 2 objective\(s\).*takes 1.*NSGAIISampler"
    ):
        await call(search.run, one, n_trials=2)
    other = OptunaSampler(
        optuna.samplers.NSGAIISampler(seed=0),
        space,
        directions=["minimize", "maximize"],
    )
    with pytest.raises(ValueError, match="give both the same directions"):
        await call(search.run, other, n_trials=2)
    with pytest.raises(ValueError, match="pruners compare one objective"):
        await call(search.run, GRID, pruner=MedianPruner())
    assert search.trials().empty  # nothing was submitted
    with pytest.raises(DasktuneError, match="no done feasible trial"):
        search.best  # noqa: B018


def test_reopening_with_other_directions_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    Search("mo", two, url, directions=["minimize", "maximize"]).close()
    Search("mo", two, url, directions=["minimize", "maximize"]).close()
    with pytest.raises(SearchMismatchError, match=r"has the directions \['minimize'"):
        Search("mo", two, url, directions=["minimize", "minimize"])
    with pytest.raises(SearchMismatchError):
        Search("mo", two, url, direction="minimize")  # one, explicitly
    with Search("mo", two, url) as reader:  # none given: its own
        assert reader.directions == ["minimize", "maximize"]


def test_memory_recorder_gives_back_values_and_constraints():
    from dasktune.records import Claim, Outcome, TrialStatus

    recorder = MemoryRecorder()
    recorder.sync([], [Claim("h", {"x": 1})])
    done = Outcome(
        "h", TrialStatus.DONE, value=1.0, values=(1.0, 2.0), constraints=(-1.0,)
    )
    recorder.sync([done], [])
    (again,) = recorder.sync([], [Claim("h", {"x": 1})])
    assert (again.kind, again.values, again.constraints) == (
        "done",
        (1.0, 2.0),
        (-1.0,),
    )


def test_pareto_front_matches_a_brute_force_check():
    rng = np.random.default_rng(0)
    for k in (2, 3):
        for _ in range(30):
            points = rng.integers(0, 5, (40, k)).astype(float)
            brute = [
                i
                for i, p in enumerate(points)
                if not any(np.all(q <= p) and np.any(q < p) for q in points)
            ]
            assert pareto_front(points).tolist() == brute
    assert hypervolume_2d([[1, 3], [2, 2], [3, 1], [5, 0]], [4, 4]) == 6.0


@gen_cluster(client=True)
async def test_plot_draws_the_front(c, s, a, b):
    pytest.importorskip("matplotlib")
    search = Search(
        "mo", two, "sqlite://", client=c, directions=["minimize", "maximize"]
    )
    await call(search.run, GRID, progress=False)
    fig = search.plot()
    (line,) = [
        line for ax in fig.axes for line in ax.lines if line.get_gid() == "pareto-front"
    ]
    assert sorted(line.get_xdata().tolist()) == [0.0, 1.0, 2.0]


@gen_cluster(client=True)
async def test_plot_marks_infeasible_trials_on_the_parameter_panels(c, s, a, b):
    pytest.importorskip("matplotlib")
    search = Search("c", at_least_one, "sqlite://", client=c)
    await call(search.run, GRID, progress=False)
    fig = search.plot()
    (crosses,) = [
        line for ax in fig.axes for line in ax.lines if line.get_gid() == "infeasible"
    ]
    assert crosses.get_xdata().tolist() == [0.0]  # x = 0 violates x >= 1
    (points,) = crosses.axes.lines[:1]
    assert sorted(points.get_xdata().tolist()) == [1.0, 2.0, 3.0, 4.0]


def test_one_rule_ranks_the_best_trials():
    # infeasible or valueless rows never count; ties go to the earlier row
    points = [[2.0], [1.0], [np.nan], [0.5], [1.0]]
    feasible = [True, True, True, False, True]
    assert best_order(points, ["minimize"], feasible).tolist() == [1, 4, 0]
    assert best_order(points, ["maximize"], feasible).tolist() == [0, 1, 4]
    # several objectives: the feasible front only, by its first objective
    points2 = [[3, 1], [1, 3], [2, 2], [0, 0], [1, 3], [3, 3]]
    feasible2 = [True, True, True, False, True, True]
    assert best_order(points2, ["minimize", "minimize"], feasible2).tolist() == [
        1, 4, 2, 0,
    ]  # fmt: skip
    assert best_order(points2, ["maximize", "minimize"], feasible2).tolist() == [0]
    assert best_order(np.zeros((0, 2)), ["minimize", "maximize"]).tolist() == []


@gen_cluster(client=True)
async def test_the_store_and_show_rank_the_front_by_the_one_rule(c, s, a, b):
    from dasktune.cli import _best_trials

    directions = ["minimize", "maximize"]
    search = Search(
        "front", two_at_least_one, "sqlite://", client=c, directions=directions
    )
    await call(search.run, GRID, progress=False)
    trials = search.store.trials(search.search_id)
    points = [t["objectives"] for t in trials]
    allowed = [feasible(t["constraints"]) for t in trials]
    expected = [trials[i]["number"] for i in best_order(points, directions, allowed)]
    front = search.store.front(search.search_id, directions)
    assert [t["number"] for t in front] == expected
    assert [t["params"] for t in front] == [{"x": 1.0}, {"x": 2.0}]  # x=0 violates
    shown = _best_trials(trials, search.directions, 10, ["a", "b"])
    assert list(shown["number"]) == expected
