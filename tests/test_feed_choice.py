"""execution="auto" on a cluster: a sequential sampler's trials are fed only
when they are short, and never on a cluster that scales (run/policy.py); so
are a batch-synchronous optimizer's short evaluations."""

from __future__ import annotations

import asyncio
import logging
import re
import time

import pytest
from distributed.utils_test import gen_cluster
from scipy.optimize import differential_evolution

from dasktune import Float, Search, minimize
from dasktune.optim.base import Optimizer
from dasktune.run.feed import FedWindow
from dasktune.run.policy import (
    FEED_BELOW,
    FEED_MIN_BATCHES,
    FEED_PROBE,
    FeedChoice,
    cluster_scales,
)
from tests.clusters import local_client

SPACE = {"x": Float(0.0, 1.0)}


def quick(params):
    time.sleep(0.002)
    return (params["x"] - 0.3) ** 2


def slow(params):
    time.sleep(FEED_BELOW * 1.2)
    return params["x"]


class Sequential(Optimizer):
    """A sequential sampler (it learns from results, no known batch): asks
    its points one by one, at most two pending."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.todo = [{"x": i / (n + 1)} for i in range(n)]

    def _ask(self):
        if self.n_pending >= 2 or not self.todo:
            return None
        return self.todo.pop(0)

    def _tell(self, number, params, value):
        pass

    @property
    def finished(self):
        return not self.todo and not self.n_pending


@pytest.fixture
def feeds(monkeypatch) -> list[str]:
    """The names of the runs whose feed started."""
    started: list[str] = []
    real = FedWindow.start

    def start(self):
        started.append(self.name)
        real(self)

    monkeypatch.setattr(FedWindow, "start", start)
    return started


def run(search: Search, n: int, **kwargs):
    return search.run(Sequential(n), progress=False, **kwargs)


@gen_cluster(client=True, timeout=60)
async def test_short_trials_are_fed_after_the_first_are_timed_as_tasks(
    c, s, a, b, feeds, caplog
):
    search = Search("short", quick, "sqlite://", client=c, space=SPACE)
    with caplog.at_level(logging.DEBUG, logger="dasktune"):
        report = await asyncio.to_thread(run, search, 12)
    search.close()
    assert (report.evaluated, report.failed) == (12, 0)
    assert report.execution == "feed", report.execution_reason
    assert f"the first {FEED_PROBE} trials took at most" in report.execution_reason
    assert feeds == ["short"]
    logged = [r.getMessage() for r in caplog.records if r.name == "dasktune"]
    assert any("short: trials fed: fed to long-lived" in m for m in logged), logged


@gen_cluster(client=True, timeout=60)
async def test_long_trials_go_as_a_task_each(c, s, a, b, feeds):
    search = Search("long", slow, "sqlite://", client=c, space=SPACE)
    report = await asyncio.to_thread(run, search, 4)
    assert (report.evaluated, report.execution) == (4, "tasks")
    assert "a task per trial: a trial took" in report.execution_reason
    assert feeds == []  # the feed never started
    # asked for: tasks, however short the trials
    report = await asyncio.to_thread(run, search, 6, execution="tasks")
    search.close()
    assert report.execution == "tasks"
    assert report.execution_reason == "execution='tasks' was asked for"
    assert feeds == []


def test_an_adaptive_cluster_is_never_fed(feeds):
    with local_client(1, 1, processes=False) as client:
        assert cluster_scales(client) is None
        client.cluster.adapt(minimum=1, maximum=2)
        assert "scales adaptively (LocalCluster.adapt())" in cluster_scales(client)
        search = Search("adaptive", quick, "sqlite://", client=client, space=SPACE)
        report = run(search, 8)
        search.close()
    assert (report.evaluated, report.execution) == (8, "tasks")
    assert "the cluster scales adaptively" in report.execution_reason
    assert feeds == []


# -- a batch-synchronous optimizer (DE's generations, SPSA's iterations) --------


def quick_sphere(x):
    time.sleep(0.002)  # the objective's cost
    return float(sum(v * v for v in x))


def test_batches_are_fed_when_their_evaluations_are_short():
    timed = FeedChoice("auto", sequential=False, batched=True, scales=None)
    assert timed.decision is None  # the first batch goes as tasks, timed
    assert timed.observe([0.01] * FEED_PROBE).where == "feed"
    assert "a batch-synchronous optimizer" in timed.decision.reason
    assert FeedChoice(
        "auto", sequential=False, batched=True, scales=None
    ).observe([FEED_BELOW]).where == "tasks"  # fmt: skip
    # timed before the run (in the caller's process): decided at once
    known = FeedChoice("auto", sequential=False, batched=True, scales=None, cost=0.01)
    assert known.decision.where == "feed"
    assert "an evaluation took 10.0 ms in the caller's process" in known.decision.reason
    long = FeedChoice("auto", sequential=False, batched=True, scales=None, cost=0.3)
    assert long.decision.where == "tasks"
    # never on a cluster that scales, nor when tasks are asked for, nor for a
    # source that does not learn from results
    scaling = FeedChoice(
        "auto", sequential=False, batched=True, scales="adapts", cost=0
    )
    assert scaling.decision.where == "tasks" and "adapts" in scaling.decision.reason
    assert FeedChoice("tasks", sequential=False, batched=True, scales=None,
                      cost=0.0).decision.where == "tasks"  # fmt: skip
    grid = FeedChoice("auto", sequential=False, batched=False, scales=None, cost=0.0)
    assert grid.decision.where == "tasks"
    # too few batches left to pay for the feed's start
    few = FeedChoice(
        "auto", sequential=False, batched=True, scales=None, cost=0.01,
        batches=FEED_MIN_BATCHES - 1,
    )  # fmt: skip
    assert few.decision.where == "tasks"
    assert f"the run has {FEED_MIN_BATCHES - 1} batch(es) left" in few.decision.reason
    enough = FeedChoice(
        "auto", sequential=False, batched=True, scales=None, cost=0.01,
        batches=FEED_MIN_BATCHES,
    )  # fmt: skip
    assert enough.decision.where == "feed"
    # timed on the workers: the first batch goes as tasks, the rest fed
    timed = FeedChoice(
        "auto", sequential=False, batched=True, scales=None, batches=FEED_MIN_BATCHES
    )
    assert timed.decision.where == "tasks"
    timed = FeedChoice(
        "auto", sequential=False, batched=True, scales=None,
        batches=FEED_MIN_BATCHES + 1,
    )  # fmt: skip
    assert timed.decision is None


@gen_cluster(client=True, timeout=60)
async def test_short_de_generations_are_fed_exactly_as_scipy(c, s, a, b, feeds):
    kw = {"maxiter": 4, "popsize": 4, "polish": False, "tol": 0.0}
    res = await asyncio.to_thread(
        minimize, quick_sphere, [(-1, 1)] * 2, seed=3, client=c, name="de", **kw
    )
    assert res.execution == "cluster"
    # the first generation's tasks, timed (a task's trials arrive together)
    said = r"a client given \(client=\); trials fed: fed to long-lived tasks: the "
    assert re.search(said + r"first \d+ trials took at most", res.execution_reason)
    assert feeds == ["de"]  # after the first generation, as tasks
    serial = differential_evolution(
        quick_sphere, [(-1, 1)] * 2, rng=3, updating="deferred", **kw
    )
    assert (res.x.tolist(), res.fun, res.nfev) == (
        serial.x.tolist(), serial.fun, serial.nfev,
    )  # fmt: skip
    # execution="tasks": never fed, said once
    res = await asyncio.to_thread(
        minimize, quick_sphere, [(-1, 1)] * 2, seed=3, client=c, name="t",
        execution="tasks", **kw,
    )  # fmt: skip
    assert res.execution_reason == "execution='tasks' was asked for"
    # two generations: too few to pay for the feed's start
    short = {**kw, "maxiter": 1}
    res = await asyncio.to_thread(
        minimize, quick_sphere, [(-1, 1)] * 2, seed=3, client=c, name="s", **short
    )
    assert "trials as tasks: a task per worker and batch: the run has 2 batch" in (
        res.execution_reason
    )
    assert feeds == ["de"]
