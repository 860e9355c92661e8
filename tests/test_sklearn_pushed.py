"""Scores pushed from the score tasks to the driver (dasktune.sklearn.pushed).

The driver decides from the score each task pushes as an event, before the
task's result reaches it; each (model, calls) is judged once, whether it came
pushed, returned, or pushed again by a task run again elsewhere.
"""

from __future__ import annotations

import asyncio
import collections
import time

import dask.config
import pytest
from distributed import Worker
from distributed.utils_test import BlockedGetData, async_poll_for, gen_cluster
from scipy.stats import loguniform
from sklearn.datasets import load_digits
from sklearn.linear_model import SGDClassifier

from dasktune.exceptions import NoWorkersError
from dasktune.run.report import report_topic
from dasktune.sklearn import SuccessiveHalvingSearchCV
from dasktune.sklearn.steps import fetch

X, Y = load_digits(return_X_y=True)
PARAMS = {"alpha": loguniform(1e-6, 1e0), "penalty": ["l2", "l1"]}


def _search(client, n: int = 9, max_iter: int = 9) -> SuccessiveHalvingSearchCV:
    return SuccessiveHalvingSearchCV(
        SGDClassifier(tol=None, random_state=0),
        PARAMS,
        n_initial_parameters=n,
        max_iter=max_iter,
        random_state=0,
        client=client,
    )


def _steps(scheduler, start: str = "partial_fit-") -> list[tuple[int, int]]:
    """The (model, calls) of the steps the scheduler holds."""
    out = []
    for key in scheduler.tasks:
        if str(key).startswith(start):
            _, _, number, calls, *_ = str(key).split("-")
            out.append((int(number), int(calls)))
    return out


def _judged_once(search) -> None:
    """Each (model, calls) recorded once; each model's calls increase."""
    seen = collections.Counter(
        (r["model_id"], r["partial_fit_calls"]) for r in search.history_
    )
    assert set(seen.values()) == {1}, seen
    for i, records in search.model_history_.items():
        calls = [r["partial_fit_calls"] for r in records]
        assert calls == sorted(set(calls))
        assert calls[-1] == search.cv_results_["partial_fit_calls"][i]
        assert i in search.decisions_


@gen_cluster(
    client=True, Worker=BlockedGetData, nthreads=[("127.0.0.1", 1)], timeout=180
)
async def test_a_score_is_decided_before_its_result_reaches_the_driver(c, s, a):
    # the worker answers no request for data: no task's result reaches the
    # client until block_get_data is set; the pushed scores do
    search = _search(c)
    fit = asyncio.create_task(asyncio.to_thread(search.fit, X, Y))
    # a model promoted past rung 1 (ASHA promotes the first score at a rung):
    # its next step is sent, though no score task's result came back
    await async_poll_for(lambda: any(c > 1 for _, c in _steps(s)), timeout=60)
    assert not fit.done()
    a.block_get_data.set()
    await fit
    _judged_once(search)  # each score pushed, then returned: judged once
    assert 9 in search.cv_results_["partial_fit_calls"]
    await async_poll_for(lambda: not s.tasks, timeout=10)


class LosesReports(Worker):
    """A worker whose scores pushed never leave it (as if it died first)."""

    def log_event(self, topic, msg):
        if not str(topic).startswith(report_topic("")):
            super().log_event(topic, msg)


@gen_cluster(client=True, Worker=LosesReports, timeout=180)
async def test_a_score_never_pushed_is_judged_from_its_result(c, s, a, b):
    search = _search(c)
    # scores go on the driver's line when it is on (test_report_line.py):
    # with it off, the events are the only push, and these workers lose them
    with dask.config.set({"dasktune.report-line": False}):
        await asyncio.to_thread(search.fit, X, Y)
    _judged_once(search)
    assert 9 in search.cv_results_["partial_fit_calls"]
    await async_poll_for(lambda: not s.tasks, timeout=10)


@gen_cluster(
    client=True, Worker=BlockedGetData, nthreads=[("127.0.0.1", 1)] * 2, timeout=180
)
async def test_a_score_pushed_again_by_a_task_run_again_is_judged_once(c, s, a, b):
    # once the data are on both workers, worker a keeps its results (and
    # models) to itself: its scores come pushed only; once it leaves, Dask
    # runs its held score tasks again on b, which push them again, then
    # return them
    a.block_get_data.set()  # the data go to both (replicated from either)
    b.block_get_data.set()
    search = _search(c, n=20, max_iter=27)
    fit = asyncio.create_task(asyncio.to_thread(search.fit, X, Y))

    def scores() -> set[str]:
        return {str(k) for k in a.data if str(k).startswith("score-")}

    await async_poll_for(
        lambda: sum(str(k).startswith("Resident") for w in (a, b) for k in w.data) == 2,
        timeout=60,
    )
    a.block_get_data.clear()
    before = scores()
    # a score on a since: the fit cannot end without its result, which a keeps
    await async_poll_for(lambda: scores() - before, timeout=60)
    await a.close()
    await fit
    _judged_once(search)
    assert len(s.workers) == 1
    await async_poll_for(lambda: not s.tasks, timeout=10)


def _slow(x: float) -> float:
    time.sleep(x)
    return x


@gen_cluster(client=True, timeout=60)
async def test_the_best_models_fetch_is_bounded_by_the_no_workers_timeout(c, s, a, b):
    future = c.submit(_slow, 0.5, key="partial_fit-SGDClassifier-3-best")
    await a.close()
    await b.close()
    what = "the best model (SGDClassifier 3)"
    with (
        dask.config.set({"dasktune.no-workers-timeout": 0.5}),
        pytest.raises(NoWorkersError, match=r"the best model \(SGDClassifier 3\)"),
    ):
        await asyncio.to_thread(fetch, c, future, what)
