"""OptunaSampler: Optuna's samplers driven through dasktune's ask/tell contract."""

from __future__ import annotations

import asyncio
import math
import sys
import warnings

import optuna
import pytest
from distributed.utils_test import gen_cluster

from dasktune import Bool, Categorical, Float, Int, Search
from dasktune.optim.optuna import OptunaSampler, distributions
from dasktune.store.sql import TrialStore
from tests.interrupted import interrupt_two

SPACE = {
    "x": Float(-5.0, 5.0),
    "lr": Float(1e-4, 1e-1, log=True),
    "depth": Int(1, 8),
    "kind": Categorical(["a", "b", "c"]),
    "flag": Bool(),
}
RUNNING = optuna.trial.TrialState.RUNNING


def loss(params):
    """Module level, so that it pickles to the workers."""
    penalty = {"a": 0.0, "b": 1.0, "c": 2.0}[params["kind"]]
    return (params["x"] - 1.0) ** 2 + penalty + 0.1 * params["depth"]


def tpe(seed=0, **kwargs):
    return optuna.samplers.TPESampler(
        constant_liar=True, seed=seed, n_startup_trials=5, **kwargs
    )


def drive(sampler, n, width):
    """Serial driving: ``width`` asks, then their tells in reverse order."""
    asked = []
    while len(asked) < n:
        batch = [sampler.ask() for _ in range(min(width, n - len(asked)))]
        for trial in reversed(batch):
            sampler.tell(trial, loss(trial.params))
        asked += batch
    return asked


def test_space_becomes_optuna_distributions():
    d = distributions(SPACE)
    assert d["x"] == optuna.distributions.FloatDistribution(-5.0, 5.0)
    assert d["lr"] == optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)
    assert d["depth"] == optuna.distributions.IntDistribution(1, 8)
    assert d["kind"] == optuna.distributions.CategoricalDistribution(["a", "b", "c"])
    assert d["flag"] == optuna.distributions.CategoricalDistribution([False, True])


def test_ask_tell_out_of_order_keeps_pending_trials_running():
    sampler = OptunaSampler(tpe(), SPACE)
    trials = [sampler.ask() for _ in range(4)]
    assert [t.number for t in trials] == [0, 1, 2, 3]
    for t in trials:
        assert set(t.params) == set(SPACE)
        assert isinstance(t.params["depth"], int)
        assert isinstance(t.params["flag"], bool)
        assert t.params["kind"] in ("a", "b", "c")
    # trials in flight are RUNNING in the study, which constant_liar uses
    assert len(sampler.study.get_trials(states=(RUNNING,))) == 4
    sampler.tell(trials[2], 2.0)
    sampler.tell(3, 3.0)
    sampler.tell(trials[0], math.inf)  # failed
    assert len(sampler.study.get_trials(states=(RUNNING,))) == 1
    states = [t.state for t in sampler.study.trials]
    assert states[0] == optuna.trial.TrialState.FAIL
    assert sampler.study.trials[2].value == 2.0
    assert sampler.n_pending == 1
    with pytest.raises(ValueError, match="already told"):
        sampler.tell(3, 1.0)


def test_the_same_seed_proposes_the_same_trials():
    first = drive(OptunaSampler(tpe(seed=3), SPACE), 20, 4)
    again = drive(OptunaSampler(tpe(seed=3), SPACE), 20, 4)
    other = drive(OptunaSampler(tpe(seed=4), SPACE), 20, 4)
    assert [t.params for t in first] == [t.params for t in again]
    assert [t.params for t in first] != [t.params for t in other]


def test_default_sampler_is_seeded_constant_liar_tpe():
    sampler = OptunaSampler(space=SPACE, seed=1)
    assert isinstance(sampler.sampler, optuna.samplers.TPESampler)
    assert sampler.sampler._constant_liar
    assert [t.params for t in drive(sampler, 6, 2)] == [
        t.params for t in drive(OptunaSampler(space=SPACE, seed=1), 6, 2)
    ]
    assert "seed=1" in sampler.describe()


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_tpe_learns_and_a_relative_sampler_works_too():
    sampler = OptunaSampler(tpe(seed=0), SPACE)
    drive(sampler, 60, 4)
    assert sampler.study.best_value < 1.0  # random draws average about 10
    qmc = OptunaSampler(optuna.samplers.QMCSampler(seed=0), SPACE)
    drive(qmc, 16, 4)
    xs = [t.params["x"] for t in qmc.study.trials]
    assert len(set(xs)) == 16


def test_maximize_keeps_the_objectives_own_values_in_the_study():
    sampler = OptunaSampler(tpe(), {"x": Float(0, 1)}, directions=["maximize"])
    t = sampler.ask()
    sampler.tell(t, -0.75)  # dasktune tells minimised values
    assert sampler.study.direction == optuna.study.StudyDirection.MAXIMIZE
    assert sampler.study.best_value == 0.75


def test_warm_start_teaches_the_study_what_the_store_holds():
    sampler = OptunaSampler(tpe(), SPACE)
    good = {"x": 1.0, "lr": 0.01, "depth": 1, "kind": "a", "flag": True}
    results = [
        (good, 0.1),
        ({**good, "x": 2.0}, 1.1),
        ({**good, "kind": "b"}, math.inf),  # failed
        ({**good, "x": 50.0}, 0.0),  # outside the space: left out
        ({"x": 1.0}, 0.0),  # another space: left out
    ]
    assert sampler.warm_start(results) == 3
    trials = sampler.study.trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "FAIL"]
    assert sampler.study.best_trial.params == good
    # asking goes on after them, numbered from 0 in dasktune
    assert sampler.ask().number == 0
    assert OptunaSampler(tpe(), SPACE).warm_start([]) == 0


def test_a_tpe_sampler_without_constant_liar_warns():
    with pytest.warns(UserWarning, match="constant_liar=True"):
        OptunaSampler(optuna.samplers.TPESampler(constant_liar=False, seed=0), SPACE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        OptunaSampler(optuna.samplers.RandomSampler(seed=0), SPACE)


def test_bad_input():
    with pytest.raises(TypeError, match="must be an Optuna sampler"):
        OptunaSampler("tpe", SPACE)
    with pytest.raises(TypeError, match="needs a space: give it one"):
        OptunaSampler(tpe()).ask()  # on its own, nothing gives it one
    with pytest.raises(ValueError, match="directions must be a non-empty list"):
        OptunaSampler(tpe(), SPACE, directions=["up"])
    with pytest.raises(ValueError, match="directions must be a non-empty list"):
        OptunaSampler(tpe(), SPACE, directions=[])
    two = OptunaSampler(tpe(), SPACE, directions=["minimize", "maximize"])
    trial = two.ask()
    with pytest.raises(TypeError, match="must be 2 real numbers"):
        two.tell(trial, 1.0)  # one value for two objectives
    with pytest.raises(TypeError, match="constraint 0"):
        two.tell(trial, (1.0, 2.0), constraints=["x"])
    assert two.n_pending == 1  # refused tells leave the trial pending
    two.tell(trial, (1.0, 2.0))


def test_unbounded_it_proposes_with_batch_size_0_and_n_trials_finishes_it():
    # the contract for an unbounded sampler (dasktune.optim.base): asked without
    # values told it keeps proposing, each trial RUNNING in the study, and says
    # so with batch_size 0 for the asker's window to bound; n_trials ends it
    free = OptunaSampler(tpe(), SPACE)
    asked = [free.ask() for _ in range(50)]
    assert None not in asked and not free.finished and free.batch_size == 0
    assert len(free.study.get_trials(states=[optuna.trial.TrialState.RUNNING])) == 50
    budget = OptunaSampler(tpe(), SPACE, n_trials=3)
    trials = [budget.ask() for _ in range(3)]
    assert budget.finished and budget.ask() is None and None not in trials
    for trial in trials:  # told after the end: accepted
        budget.tell(trial, 1.0)
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match=r"n_trials must be an integer >= 1, got"):
            OptunaSampler(tpe(), SPACE, n_trials=bad)


def test_missing_optuna_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install optuna \(or dasktune's extra"):
        OptunaSampler(space=SPACE)


@gen_cluster(client=True, timeout=60)
async def test_interrupted_trials_are_proposed_again_by_the_next_run(c, s, a, b):
    # one trial put back by a run stopped early (queued), one left running by
    # a driver that died (silent past stale_after): TPE never asks them
    # again by itself, so the next run enqueues them in its study
    search = Search("tpe", loss, "sqlite://", client=c, space=SPACE, stale_after=0.2)
    points = await interrupt_two(search)
    sampler = OptunaSampler(tpe(seed=0), SPACE)
    report = await asyncio.to_thread(
        search.run, sampler, n_trials=3, max_in_flight=1, progress=False
    )
    assert report.evaluated == 3
    frame = search.trials()
    assert list(frame["status"]) == ["done"] * 3  # the two, then a new one
    assert [dict(frame.loc[i, list(SPACE)]) for i in (0, 1)] == points
    assert [t.params for t in sampler.study.trials[:2]] == points  # asked first


@gen_cluster(client=True)
async def test_a_search_runs_tpe_and_resumes_it(c, s, a, b):
    store = TrialStore("sqlite://")
    search = Search("tpe", loss, store, client=c, space=SPACE)
    sampler = OptunaSampler(tpe(seed=0), SPACE)
    report = await asyncio.to_thread(
        search.run, sampler, n_trials=24, max_in_flight=4, progress=False
    )
    assert report.evaluated == 24
    frame = search.trials()
    assert (frame["status"] == "done").sum() == 24
    complete = sampler.study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(complete) == 24
    assert sorted(t.value for t in complete) == sorted(frame["value"])
    assert search.best.value == pytest.approx(sampler.study.best_value)

    # a resumed search: Search.run teaches a new sampler the store's trials first
    resumed = OptunaSampler(tpe(seed=1), SPACE)
    report = await asyncio.to_thread(
        search.run, resumed, n_trials=8, max_in_flight=4, progress=False
    )
    assert report.evaluated + report.reused >= 8
    taught = resumed.study.trials[:24]
    assert sorted(t.value for t in taught) == sorted(frame["value"])
    assert len(resumed.study.trials) >= 32
    assert len(search.trials()) == 24 + report.evaluated


def test_an_optuna_sampler_passed_bare_says_to_wrap_it(tmp_path):
    search = Search("bare", loss, f"sqlite:///{tmp_path}/s.db", space=SPACE,
                    client="tcp://127.0.0.1:1")  # fmt: skip
    with pytest.raises(TypeError, match=r"wrap optuna's in dasktune\.OptunaSampler"):
        search.run(optuna.samplers.TPESampler(seed=0), n_trials=3, progress=False)
    # a study has ask() and tell(), but not dasktune's: its sampler is wrapped
    with pytest.raises(TypeError, match=r"OptunaSampler\(study\.sampler, space\)"):
        search.run(optuna.create_study(), n_trials=3, progress=False)
    assert search.store.trials(search.search_id) == []
    search.close()
    # a sampler class, or a study, given to OptunaSampler: what to give instead
    with pytest.raises(TypeError, match=r"make one: NSGAIISampler\(\.\.\.\)"):
        OptunaSampler(optuna.samplers.NSGAIISampler, SPACE)
    with pytest.raises(TypeError, match=r"give the study's sampler: study\.sampler"):
        OptunaSampler(optuna.create_study(), SPACE)


def test_an_optuna_distribution_in_a_space_says_how_to_write_it():
    from dasktune import Space

    with pytest.raises(ValueError, match=r"Optuna's distributions are written Float"):
        Space({"x": optuna.distributions.FloatDistribution(0.0, 1.0)})


@gen_cluster(client=True, timeout=60)
async def test_a_sampler_made_without_directions_takes_the_searchs(c, s, a, b):
    search = Search("max", loss, "sqlite://", client=c, space=SPACE,
                    direction="maximize")  # fmt: skip
    sampler = OptunaSampler(tpe(seed=0), SPACE)  # no directions given
    await asyncio.to_thread(search.run, sampler, n_trials=6, progress=False)
    assert sampler.study.direction == optuna.study.StudyDirection.MAXIMIZE
    # the study holds the objective's own values: its best is the search's
    assert sampler.study.best_value == pytest.approx(search.best.value)
    assert search.best.value == max(t.value for t in sampler.study.trials)
    # directions given that differ are refused before anything runs
    given = OptunaSampler(tpe(seed=1), SPACE, directions=["minimize"])
    with pytest.raises(ValueError, match="give both the same directions"):
        await asyncio.to_thread(search.run, given, n_trials=2, progress=False)
    # so are a study's that already holds trials: it cannot take the search's
    used = OptunaSampler(tpe(seed=2), SPACE)
    used.study.enqueue_trial(
        {"x": 0.5, "lr": 0.01, "depth": 3, "kind": "a", "flag": True}
    )
    with pytest.raises(ValueError, match="its study already holds trials"):
        await asyncio.to_thread(search.run, used, n_trials=2, progress=False)
    assert len(search.trials()) == 6
    search.close()


@gen_cluster(client=True, timeout=60)
async def test_a_sampler_made_without_a_space_takes_the_searchs(c, s, a, b):
    search = Search("spaced", loss, "sqlite://", client=c, space=SPACE)
    sampler = OptunaSampler(tpe(seed=0))  # the search's space, and direction
    report = await asyncio.to_thread(search.run, sampler, n_trials=5, progress=False)
    assert report.evaluated == 5
    assert set(sampler.study.trials[0].distributions) == set(SPACE)
    # a search without a space cannot give one: refused before anything runs
    bare = Search("bare", loss, "sqlite://", client=c)
    with pytest.raises(TypeError, match=r"or to the search, Search\(\.\.\., space="):
        await asyncio.to_thread(
            bare.run, OptunaSampler(tpe(seed=0)), n_trials=2, progress=False
        )
    assert bare.trials().empty
    search.close()
    bare.close()


@gen_cluster(client=True, timeout=60)
async def test_samplers_in_a_selector_take_the_searchs_space(c, s, a, b):
    from dasktune import LCBSelector

    search = Search("chosen", loss, "sqlite://", client=c, space=SPACE)
    selector = LCBSelector(
        {"tpe": OptunaSampler(tpe(seed=0)), "other": OptunaSampler(tpe(seed=1))},
        seed=0,
    )
    report = await asyncio.to_thread(search.run, selector, n_trials=6, progress=False)
    assert report.evaluated == 6
    assert set(search.trials()["method"]) <= {"tpe", "other"}
    selector.close()
    search.close()


def _x(params):
    return params["x"]


def test_a_sampler_over_another_space_is_refused_before_any_work():
    space = {"x": Float(0, 1), "c": Categorical(["a", "b"])}
    wider = {"x": Float(0, 2), "c": Categorical(["a", "b"])}
    with Search("s", _x, "sqlite://", space=space) as search:
        sampler = OptunaSampler(optuna.samplers.TPESampler(seed=0), wider)
        with pytest.raises(ValueError, match=r"x: Float\(low=0.0, high=2.0"):
            search.run(sampler, n_trials=3, progress=False)
        assert search.trials().empty
