"""NevergradOptimizer: Nevergrad's optimizers through dasktune's ask/tell contract."""

from __future__ import annotations

import asyncio
import math
import sys
import warnings

import nevergrad as ng
import pytest
from distributed.utils_test import gen_cluster

from dasktune import Bool, Categorical, Float, Int, Search
from dasktune.optim.nevergrad import NevergradOptimizer, parametrization
from tests.interrupted import interrupt_two

SPACE = {
    "x": Float(-5.0, 5.0),
    "lr": Float(1e-4, 1e-1, log=True),
    "depth": Int(1, 8),
    "kind": Categorical(["a", "b", "c"]),
    "flag": Bool(),
}


def loss(params):
    """Module level, so that it pickles to the workers."""
    penalty = {"a": 0.0, "b": 1.0, "c": 2.0}[params["kind"]]
    return (params["x"] - 1.0) ** 2 + penalty + 0.1 * params["depth"]


def drive(opt, f=None):
    """Serial driving to the end: every free slot asked, told in reverse."""
    f = f or loss
    asked = []
    while not opt.finished:
        batch = []
        while (trial := opt.ask()) is not None:
            batch.append(trial)
        for trial in reversed(batch):
            opt.tell(trial, f(trial.params))
        asked += batch
    return asked


def test_space_becomes_an_ng_dict():
    param = parametrization(SPACE)
    assert isinstance(param, ng.p.Dict)
    value = param.spawn_child().value
    assert set(value) == set(SPACE)
    assert isinstance(param["kind"], ng.p.Choice)
    assert isinstance(param["lr"], ng.p.Log)


@pytest.mark.parametrize("name", ["NGOpt", "TwoPointsDE", "CMA"])
def test_at_most_num_workers_in_flight_told_in_any_order(name):
    opt = NevergradOptimizer(name, SPACE, budget=40, num_workers=4, seed=0)
    first = [opt.ask() for _ in range(4)]
    assert opt.ask() is None  # the parallelism it was built for is used up
    for t in first:
        assert set(t.params) == set(SPACE)
        assert isinstance(t.params["depth"], int) and 1 <= t.params["depth"] <= 8
        assert isinstance(t.params["flag"], bool)
        assert -5.0 <= t.params["x"] <= 5.0
    opt.tell(first[2], loss(first[2].params))
    opt.tell(first[0], math.inf)  # a failed trial
    assert opt.ask().number == 4
    for t in (first[3], first[1]):
        opt.tell(t, loss(t.params))
    drive(opt)
    assert opt.finished and opt.ask() is None
    assert opt._next_number == 40


def test_the_same_seed_proposes_the_same_trials():
    def run(seed):
        return drive(NevergradOptimizer("TwoPointsDE", SPACE, budget=30,
                                        num_workers=3, seed=seed))  # fmt: skip

    first, again, other = run(5), run(5), run(6)
    assert [t.params for t in first] == [t.params for t in again]
    assert [t.params for t in first] != [t.params for t in other]


def test_it_learns():
    space = {"x": Float(-5, 5), "y": Float(-5, 5)}
    opt = NevergradOptimizer(ng.optimizers.CMA, space, budget=80, num_workers=2,
                             seed=0)  # fmt: skip
    drive(opt, lambda p: (p["x"] - 1.0) ** 2 + p["y"] ** 2)
    best = opt.optimizer.provide_recommendation().value
    assert abs(best["x"] - 1.0) < 0.3 and abs(best["y"]) < 0.3
    assert "CMA" in opt.describe()


def test_warm_start_tells_points_it_did_not_ask():
    opt = NevergradOptimizer("OnePlusOne", {"x": Float(-5, 5)}, budget=10, seed=0)
    told = opt.warm_start([({"x": 1.0}, 0.0), ({"x": 3.0}, 4.0), ({"x": 9.0}, 0.0),
                           ({"y": 1.0}, 0.0), ({"x": 2.0}, math.inf)])  # fmt: skip
    assert told == 3  # x=9 is outside the space, {"y"} another space
    assert opt.optimizer.num_tell_not_asked == 3
    assert opt.optimizer.provide_recommendation().value == {"x": 1.0}


def test_bad_input():
    with pytest.raises(ValueError, match="not in ng.optimizers.registry.*CMA"):
        NevergradOptimizer("cma-es", SPACE, budget=10)
    with pytest.raises(ValueError, match="budget must be an integer >= 1"):
        NevergradOptimizer("CMA", SPACE, budget=0)
    with pytest.raises(ValueError, match="num_workers must be"):
        NevergradOptimizer("CMA", SPACE, budget=5, num_workers=0)
    built = ng.optimizers.CMA(parametrization=2, budget=5)
    with pytest.raises(TypeError, match="not a built optimizer"):
        NevergradOptimizer(built, SPACE, budget=5)


def test_missing_nevergrad_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "nevergrad", None)  # as if not installed
    with pytest.raises(
        ImportError, match=r"pip install nevergrad \(or dasktune's extra"
    ):
        NevergradOptimizer("CMA", SPACE, budget=5)


@gen_cluster(client=True, timeout=60)
async def test_a_search_runs_a_nevergrad_optimizer_to_its_budget(c, s, a, b):
    search = Search("ng", loss, "sqlite://", client=c, space=SPACE)
    opt = NevergradOptimizer("NGOpt", SPACE, budget=24, num_workers=4, seed=0)
    report = await asyncio.to_thread(search.run, opt, progress=False)
    assert report.stopped == "finished"
    assert report.evaluated + report.reused == 24
    assert opt.finished and opt.n_pending == 0
    frame = search.trials()
    assert (frame["status"] == "done").sum() == report.evaluated
    assert opt.optimizer.num_tell == 24


def _x(params):
    return params["x"]


def test_an_optimizer_over_another_space_is_refused_before_any_work():
    space = {"x": Float(0, 1), "c": Categorical(["a", "b"])}
    with Search("s", _x, "sqlite://", space=space) as search:
        optimizer = NevergradOptimizer("CMA", {"x": Float(0, 1)}, budget=5)
        with pytest.raises(ValueError, match="it has no 'c'"):
            search.run(optimizer, progress=False)
        assert search.trials().empty


def test_a_bare_nevergrad_optimizer_says_to_wrap_it():
    with Search("bare", _x, "sqlite://", space={"x": Float(0, 1)}) as search:
        bare = ng.optimizers.registry["CMA"](ng.p.Scalar(), budget=5)
        with pytest.raises(TypeError, match=r"wrap nevergrad's in dasktune\.Nevergrad"):
            search.run(bare, progress=False)
        assert search.trials().empty


@gen_cluster(client=True, timeout=60)
async def test_an_error_inside_nevergrads_ask_says_whose_it_is(c, s, a, b):
    # NGOpt's MetaModel fails this way on one continuous dimension (nevergrad
    # 1.0.12, numpy 2.4); any error of the library's own ask is reported so
    search = Search("ng-fails", loss, "sqlite://", client=c, space=SPACE)
    opt = NevergradOptimizer("CMA", SPACE, budget=40, num_workers=2, seed=0)
    real_ask, asks = opt.optimizer.ask, []

    def ask_then_fail():
        asks.append(1)
        if len(asks) > 6:
            raise TypeError("only 0-dimensional arrays can be converted")
        return real_ask()

    opt.optimizer.ask = ask_then_fail
    with pytest.raises(TypeError, match="only 0-dimensional") as info:
        await asyncio.to_thread(search.run, opt, progress=False)
    assert "raised inside nevergrad's CMA.ask(), not by dasktune" in "\n".join(
        info.value.__notes__
    )
    # what ran before is kept
    assert len(search.trials(status="done")) >= 4


@gen_cluster(client=True, timeout=60)
async def test_interrupted_trials_are_proposed_again_by_the_next_run(c, s, a, b):
    # as for Optuna's samplers: the next run proposes them first
    search = Search("ng", loss, "sqlite://", client=c, space=SPACE, stale_after=0.2)
    points = await interrupt_two(search)
    opt = NevergradOptimizer("CMA", SPACE, budget=3, num_workers=1, seed=0)
    report = await asyncio.to_thread(search.run, opt, progress=False)
    assert report.evaluated == 3
    frame = search.trials()
    assert list(frame["status"]) == ["done"] * 3  # the two, then a new one
    assert [dict(frame.loc[i, list(SPACE)]) for i in (0, 1)] == points
    assert opt.optimizer.num_tell == 3  # and it learned them


def test_a_requeued_point_is_proposed_exactly_and_told_if_it_can_be():
    point = {"x": 0.5, "lr": 0.01, "depth": 2, "kind": "b", "flag": True}
    cma = NevergradOptimizer("CMA", SPACE, budget=4, num_workers=1, seed=0)
    assert cma.requeue([point, {"x": 99.0}]) == 1  # outside the space: left out
    # handed back again (a later run of the same optimizer): not twice
    assert cma.requeue([point, dict(point)]) == 1
    trial = cma.ask()
    assert trial.params == point  # 0.01 exactly, not 0.010000000000000004
    cma.tell(trial, loss(point))
    assert cma.optimizer.num_tell == 1
    # no more than its budget has asks left for (4 - 1 asked)
    many = [dict(point, x=x / 10) for x in range(6)]
    assert cma.requeue(many) == 3
    assert [cma.ask().params["x"] for _ in range(1)] == [0.0]
    # an optimizer that cannot be told points it did not ask (Nevergrad's
    # EDA): the result stays the store's, with one warning
    eda = NevergradOptimizer("EDA", SPACE, budget=4, num_workers=1, seed=0)
    eda.requeue([point, dict(point, x=0.25)])
    trial = eda.ask()
    with pytest.warns(UserWarning, match="cannot learn the results"):
        eda.tell(trial, loss(trial.params))
    trial = eda.ask()
    assert trial.params["x"] == 0.25
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # said once
        eda.tell(trial, loss(trial.params))
    drive(eda)  # and it goes on to its budget, learning its own asks
    assert eda.finished and eda.optimizer.num_tell == 2
