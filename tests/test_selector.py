"""LCBSelector: cold start, scale-free scores, routing, and inside a Search."""

from __future__ import annotations

import asyncio
import collections

import numpy as np
import pytest
from distributed.utils_test import gen_cluster

from dasktune import Float, HyperScipySampler, LCBSelector, Search
from dasktune.optim.base import RandomSampler

SPACE = {"x": Float(-1.0, 1.0)}


def samplers(n=3):
    return {f"s{i}": RandomSampler(SPACE, seed=i) for i in range(n)}


def test_cold_start_spreads_pre_dispatched_asks():
    selector = LCBSelector(samplers(3), seed=0)
    names = [selector.ask().params["method"] for _ in range(9)]
    assert collections.Counter(names) == {"s0": 3, "s1": 3, "s2": 3}


@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e6])
def test_the_better_optimizer_is_preferred_whatever_the_scale(scale):
    selector = LCBSelector(samplers(2), seed=1)
    for _ in range(200):
        trial = selector.ask()
        bad = trial.params["method"] == "s1"
        selector.tell(trial, scale * (1.0 + bad + 0.1 * trial.params["x"]))
    counts = collections.Counter(selector.ask().params["method"] for _ in range(50))
    assert counts["s0"] > counts["s1"]
    assert len(selector.told["s1"]) > 5  # still explored


def test_one_lucky_trial_does_not_lock_a_method_in():
    selector = LCBSelector(samplers(2), exploration=1.0, seed=2)
    rng = np.random.default_rng(0)
    first = True
    for _ in range(200):
        trial = selector.ask()
        if trial.params["method"] == "s1":
            value = -100.0 if first else 10.0 + rng.normal()  # one lucky result
            first = False
        else:
            value = rng.normal()
        selector.tell(trial, value)
    assert len(selector.told["s0"]) > len(selector.told["s1"])


def test_tells_route_to_the_right_sampler_in_any_order():
    with LCBSelector(
        {
            "a": HyperScipySampler(SPACE, "dual_annealing", n_workers=2, seed=0),
            "b": HyperScipySampler(SPACE, "direct", n_workers=2),
        },
        seed=0,
    ) as selector:
        for _ in range(20):
            trials = []
            while (t := selector.ask()) is not None:
                trials.append(t)
            for t in reversed(trials):
                selector.tell(t, t.params["x"] ** 2)
        assert sum(map(len, selector.told.values())) >= 20


def test_bad_input():
    with pytest.raises(ValueError, match="non-empty dict of named optimizers"):
        LCBSelector({})
    with pytest.raises(TypeError, match="not an ask/tell optimizer"):
        LCBSelector({"a": 3})
    with pytest.raises(ValueError, match="exploration must be a number >= 0"):
        LCBSelector(samplers(1), exploration=-1)


def cost(params):
    return (params["x"] - 0.3) ** 2


@gen_cluster(client=True, timeout=60)
async def test_chosen_name_is_stored_with_each_trial(c, s, a, b):
    selector = LCBSelector(
        {
            "anneal": HyperScipySampler(SPACE, "dual_annealing", n_workers=2, seed=0),
            "random": RandomSampler(SPACE, seed=0),
        },
        seed=0,
    )
    search = Search("lcb", cost, "sqlite://", client=c)
    try:
        await asyncio.to_thread(search.run, selector, n_trials=40, progress=False)
    finally:
        selector.close()
    frame = search.trials()
    assert set(frame["method"]) == {"anneal", "random"}
    assert search.best.value < 0.01
