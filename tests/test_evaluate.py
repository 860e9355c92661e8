"""Evaluating trials: result forms, retries and failures, caught trial by trial."""

from __future__ import annotations

import math

import pytest

from dasktune.evaluate import Group, evaluate_group, normalize_result, outcome_of


def test_result_forms():
    assert normalize_result(2) == (2.0, {})
    assert normalize_result((1.5, {"n": 3})) == (1.5, {"n": 3})
    assert normalize_result({"loss": 0.5, "acc": 0.9}) == (0.5, {"acc": 0.9})


def test_bad_results():
    with pytest.raises(TypeError, match="must give a 'loss' key"):
        normalize_result({"acc": 1})
    with pytest.raises(TypeError, match="must be a real number.*got str: 'x'"):
        normalize_result("x")


_attempts: dict[int, int] = {}


def flaky_square(x):
    _attempts[x] = _attempts.get(x, 0) + 1
    if x < 0:
        raise ArithmeticError(f"negative {x}")
    if x == 3 and _attempts[x] == 1:
        raise RuntimeError("first try")
    return x * x


def test_each_trial_is_caught_timed_and_retried_on_its_own():
    result = evaluate_group(
        flaky_square, Group([("a", 2), ("b", -1), ("c", 3)], retries=1)
    )
    done, failed, retried = result.outcomes
    assert (done.status, done.value, done.attempts) == ("done", 4.0, 1)
    assert failed.status == "failed" and "ArithmeticError: negative -1" in failed.error
    assert failed.attempts == 2  # retried once, then recorded
    assert (retried.status, retried.value, retried.attempts) == ("done", 9.0, 2)
    assert all(o.duration is not None and o.duration >= 0 for o in result.outcomes)
    assert result.host


def test_nan_and_bad_batch_results_fail_with_a_traceback():
    nan = outcome_of([1.0], "h", math.nan, 0.0, 1.0)
    assert nan.status == "failed" and "returned NaN" in nan.error
    bad = outcome_of([1.0], "h", "oops", 0.0, 1.0)
    assert bad.status == "failed" and "TypeError" in bad.error
    good = outcome_of([1.0], "h", (2.0, {"k": 1}), 0.0, 1.0)
    assert (good.status, good.value, good.aux, good.duration) == (
        "done",
        2.0,
        {"k": 1},
        1.0,
    )
