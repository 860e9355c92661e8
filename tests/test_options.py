"""RunOptions: the one object the driver is told a run's settings by."""

import asyncio
import dataclasses

import pytest
from distributed.utils_test import gen_cluster

from dasktune.optim.base import IterableSource
from dasktune.records import MemoryRecorder
from dasktune.run.driver import Driver
from dasktune.run.options import RunOptions


def square(params):
    return params["x"] ** 2


@pytest.mark.parametrize(
    ("given", "error", "match"),
    [
        ({"n_trials": 0}, ValueError, r"n_trials must be an integer >= 1, got 0"),
        ({"max_in_flight": 0}, ValueError, r"max_in_flight must be an integer >= 1"),
        ({"retries": -1}, ValueError, r"retries must be an integer >= 0, got -1"),
        ({"max_failures": True}, ValueError, r"max_failures must be an integer >= 1"),
        ({"timeout": float("inf")}, ValueError, r"timeout must be a positive, finite"),
        ({"execution": "fast"}, ValueError, r"execution must be one of 'auto', "),
        ({"progress": "yes"}, TypeError, r"progress must be True or False"),
        (
            {"execution": "feed", "resources": {"GPU": 1}},
            ValueError,
            r"execution='feed' cannot run resources",
        ),
        ({"trial_timeout": 0}, ValueError, r"trial_timeout must be a positive"),
        ({"heartbeat_seconds": -1}, ValueError, r"heartbeat_seconds must be a pos"),
    ],
)
def test_bad_options_raise_when_made(given, error, match):
    with pytest.raises(error, match=match):
        RunOptions(name="t", **given)


def test_a_changed_copy_is_checked_again():
    options = RunOptions(name="t", n_trials=3)
    with pytest.raises(ValueError, match="n_trials must be an integer >= 1"):
        dataclasses.replace(options, n_trials=0)


def test_options_are_frozen_and_own_their_values():
    resources, signs = {"GPU": 1}, [1.0, -1.0]
    options = RunOptions(name="t", resources=resources, signs=signs)
    resources["GPU"] = 2
    signs.append(1.0)
    assert options.resources == {"GPU": 1}
    assert options.signs == (1.0, -1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.n_trials = 5  # type: ignore[misc]


def test_one_sign_is_one_objective():
    assert RunOptions(name="t", signs=[-1.0]).signs is None
    assert RunOptions(name="t").signs is None


@gen_cluster(client=True)
async def test_the_driver_takes_only_options(c, s, a, b):
    source = IterableSource([{"x": 1}])
    with pytest.raises(TypeError, match="options must be a dasktune.run.options"):
        Driver(source, square, c, MemoryRecorder(), {"name": "t"})  # type: ignore[arg-type]
    options = RunOptions(name="t", n_trials=1)
    driver = Driver(source, square, c, MemoryRecorder(), options)
    assert driver.options is options
    report = await asyncio.to_thread(driver.run)
    assert report.evaluated == 1
    assert report.best_value == 1
