"""dasktune.run.entry.run: the one typed way into the driver."""

import asyncio

import pytest
from distributed.utils_test import gen_cluster

from dasktune.optim.base import IterableSource
from dasktune.records import MemoryRecorder, TrialStatus
from dasktune.run.entry import run
from dasktune.run.options import RunOptions


def square(params):
    return params["x"] ** 2


@gen_cluster(client=True)
async def test_run_drives_the_optimizer_and_records_every_trial(c, s, a, b):
    recorder = MemoryRecorder()
    source = IterableSource([{"x": 3}, {"x": -1}, {"x": 2}])
    report = await asyncio.to_thread(
        run, source, square, recorder, RunOptions(name="sq"), client=c
    )
    assert report.evaluated == 3
    assert report.best_value == 1
    assert report.best_params == {"x": -1}
    statuses = [row[1] for row in recorder.rows.values()]
    assert statuses == [TrialStatus.DONE] * 3


@gen_cluster(client=True)
async def test_run_refuses_what_is_not_options_before_any_work(c, s, a, b):
    with pytest.raises(TypeError, match="options must be a dasktune.run.options"):
        run(
            IterableSource([{"x": 1}]),
            square,
            MemoryRecorder(),
            {"name": "t"},  # type: ignore[arg-type]
            client=c,
        )
    assert not s.tasks


@gen_cluster(client=True)
async def test_run_refuses_resources_no_worker_has_before_any_work(c, s, a, b):
    options = RunOptions(name="t", resources={"GPU": 1})
    source = IterableSource([{"x": 1}])
    with pytest.raises(ValueError, match="GPU"):
        await asyncio.to_thread(
            run, source, square, MemoryRecorder(), options, client=c
        )
    assert not s.tasks
