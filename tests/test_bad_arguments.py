"""Arguments refused before any work, each with what was expected, what came
and what to do (issue 29's smaller defects: each was accepted silently, or
failed later with a message that did not say why)."""

from __future__ import annotations

import asyncio
import math

import pytest
from distributed.utils_test import gen_cluster

from dasktune import SPSA, Float, Int, Search, async_map, minimize
from dasktune.cli import main
from dasktune.space import Space


def square(x):
    return x * x


def first(params):
    return params["a"]


def x_value(params):
    return params["x"]


def small_x(record, trials):
    return record["x"] < 0.5


def quadratic(x):
    return float(sum(v * v for v in x))


@pytest.mark.parametrize("stale_after", [math.nan, math.inf, -1.0, 0, True, "30"])
def test_stale_after_must_be_a_positive_finite_number(stale_after):
    with pytest.raises(ValueError, match="stale_after must be a positive, finite"):
        Search("s", x_value, "sqlite://", stale_after=stale_after)


@pytest.mark.parametrize("flag", ["retry_failed", "progress"])
def test_search_flags_must_be_booleans(flag):
    # "no" is a true value: taken as a flag it would mean yes
    # an unreachable scheduler: an error about it would mean the check came late
    search = Search(
        "s", x_value, "sqlite://", space={"x": Float(0, 1)}, client="tcp://127.0.0.1:9"
    )
    with pytest.raises(TypeError, match=f"{flag} must be True or False, got str: 'no'"):
        search.run(n_trials=1, **{flag: "no"})
    assert len(search.trials()) == 0  # refused before any work
    search.close()


def test_progress_must_be_a_boolean_everywhere():
    expected = "progress must be True or False, got str: 'no'"
    with pytest.raises(TypeError, match=expected):
        async_map(square, [1, 2], progress="no", client="tcp://127.0.0.1:9")
    with pytest.raises(TypeError, match=expected):
        minimize(quadratic, [(0, 1)], progress="no", client="tcp://127.0.0.1:9")
    with pytest.raises(TypeError, match=expected):
        SPSA(quadratic, [0.5], progress="no", client="tcp://127.0.0.1:9")


@pytest.mark.parametrize(
    ("method", "option", "value", "least"),
    [
        ("differential_evolution", "popsize", -1, 1),
        ("differential_evolution", "maxiter", -3, 0),
        ("differential_evolution", "popsize", 2.5, 1),
        ("dual_annealing", "maxiter", -3, 1),
        ("direct", "maxfun", 0, 1),
        ("shgo", "iters", 0, 1),
    ],
)
def test_minimize_refuses_counts_below_their_meaning(method, option, value, least):
    with pytest.raises(
        ValueError, match=f"{method}'s {option} must be an integer >= {least} "
    ):
        minimize(
            quadratic, [(0, 1), (0, 1)], method, client="tcp://127.0.0.1:9",
            **{option: value},
        )  # fmt: skip


def test_spsa_through_minimize_refuses_a_negative_maxiter():
    with pytest.raises(ValueError, match="maxiter"):
        minimize(quadratic, [(0, 1)], "spsa", maxiter=-3, client="tcp://127.0.0.1:9")


def test_a_space_is_named_by_strings():
    with pytest.raises(
        TypeError, match=r"named by strings, got 1 \(int\); name it '1'"
    ):
        Space({1: Float(0, 1)})
    with pytest.raises(TypeError, match="named by strings"):
        Search("s", x_value, "sqlite://", space={1: Float(0, 1)})


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf", "soon"])
@pytest.mark.parametrize("option", ["--worker-timeout", "--connect-timeout"])
def test_cli_timeouts_must_be_positive_finite_seconds(capsys, option, value):
    with pytest.raises(SystemExit) as exited:
        main(["demo", option, value])
    assert exited.value.code == 2  # argparse's usage error, before anything runs
    assert f"must be a positive, finite number of seconds, got '{value}'" in (
        capsys.readouterr().err
    )


def test_filters_must_be_functions():
    search = Search(
        "s", x_value, "sqlite://", space={"x": Float(0, 1)}, client="tcp://127.0.0.1:9"
    )
    with pytest.raises(TypeError, match="filters must be a list of functions"):
        search.run(n_trials=1, filters=5)
    with pytest.raises(TypeError, match="each filter must be callable"):
        search.run(n_trials=1, filters=[small_x, "x"])
    search.close()


@gen_cluster(client=True)
async def test_one_filter_function_is_taken_as_a_list_of_it(c, s, a, b):
    search = Search("s", x_value, "sqlite://", space={"x": Float(0, 1)}, client=c)
    points = [{"x": 0.25}, {"x": 0.75}, {"x": 0.4}]
    report = await asyncio.to_thread(
        search.run, points, filters=small_x, progress=False
    )
    assert (report.evaluated, report.skipped) == (2, 1)
    search.close()


@gen_cluster(client=True)
async def test_a_space_smaller_than_n_trials_reports_what_was_joined(c, s, a, b):
    # 4 points, 1,000 trials asked: the 4 are evaluated, and the random draws
    # repeating a pending one are the only joins (it counted 1,000)
    search = Search("s", first, "sqlite://", space={"a": Int(0, 3)}, client=c)
    report = await asyncio.to_thread(search.run, n_trials=1000, seed=0, progress=False)
    assert report.evaluated == 4
    assert report.stopped == "the space has 4 points; all are done"
    assert report.joined < 4 * 10
    again = await asyncio.to_thread(search.run, n_trials=1000, seed=1, progress=False)
    assert again.evaluated == 0 and again.joined < 4 * 10
    assert again.stopped == "the space has 4 points; all are done"
    search.close()
