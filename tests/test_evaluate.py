"""Evaluating trials: result forms, retries and failures, caught trial by trial."""

from __future__ import annotations

import math
import sys
from dataclasses import replace

import numpy as np
import pytest

from dasktune import Search, async_map
from dasktune.exceptions import DasktuneError
from dasktune.records import Outcome, TrialStatus
from dasktune.run.evaluate import (
    Group,
    evaluate_columns,
    evaluate_group,
    failure_exception,
    normalize_result,
    outcome_of,
)


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


@pytest.mark.parametrize(
    "raw",
    [
        np.array([0.5]),
        np.array(0.5),
        {"loss": np.array([0.5]), "n": 1},
        {"loss": np.array(0.5), "n": 1},
        (np.array([0.5]), {"n": 1}),
        (np.array(0.5), {"n": 1}),
    ],
)
def test_values_of_size_one_in_every_form(raw):
    value, _ = normalize_result(raw)
    assert value == 0.5 and type(value) is float


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (np.array([0.5, 1.0]), r"objective's value .*got ndarray of shape \(2,\)"),
        ({"loss": "low"}, r"'loss' of the objective's dict .*got str: 'low'"),
        ((None, {"n": 1}), r"value in the objective's \(value, dict\) .*NoneType"),
    ],
)
def test_bad_values_in_every_form(raw, match):
    with pytest.raises(TypeError, match=match):
        normalize_result(raw)
    failed = outcome_of([1.0], "h", raw, 0.0, 1.0)
    assert failed.status == "failed" and isinstance(failed.exception, TypeError)


def divide_by_zero(x):
    return 1 / 0


class NeedsTwo(Exception):  # unpicklable: __reduce__ gives one argument back
    def __init__(self, a, b):
        super().__init__(f"{a} and {b}")


def raises_unpicklable(x):
    raise NeedsTwo(1, 2)


def test_a_failure_keeps_its_own_exception_without_its_frames():
    (outcome,) = evaluate_group(divide_by_zero, Group([("a", 1)], retries=0)).outcomes
    assert isinstance(outcome.exception, ZeroDivisionError)
    assert outcome.exception.__traceback__ is None  # a copy: no frames kept alive
    assert "1 / 0" in outcome.error
    assert "exception" not in repr(outcome)


def test_an_unpicklable_failure_travels_as_its_text():
    (outcome,) = evaluate_group(raises_unpicklable, Group([("a", 1)], 0)).outcomes
    assert isinstance(outcome.exception, DasktuneError)
    assert "NeedsTwo: 1 and 2" in str(outcome.exception)
    assert "could not be pickled" in str(outcome.exception)


def test_failure_exception_notes_the_traceback_once():
    (outcome,) = evaluate_group(divide_by_zero, Group([("a", 1)], 0)).outcomes
    outcome.worker = "tcp://w:1"
    exc = failure_exception(outcome)
    assert failure_exception(outcome) is exc
    (note,) = exc.__notes__
    assert note.startswith("dasktune: raised by the objective on worker tcp://w:1")
    assert "ZeroDivisionError: division by zero" in note
    lost = Outcome("h", TrialStatus.FAILED, error="Traceback...\nKilledWorker: w")
    assert isinstance(failure_exception(lost), DasktuneError)
    assert str(failure_exception(lost)) == "KilledWorker: w"


def test_groups_and_results_travel_packed_and_come_back_whole():
    import pickle

    points = [np.arange(3.0) + i for i in range(4)]
    group = pickle.loads(
        pickle.dumps(Group([(str(i), p) for i, p in enumerate(points)], 1, 2))
    )
    assert [h for h, _ in group.items] == ["0", "1", "2", "3"]
    assert all(
        np.array_equal(p, q) for (_, p), q in zip(group.items, points, strict=True)
    )
    assert (group.retries, group.threads) == (1, 2)
    mixed = pickle.loads(pickle.dumps(Group([("a", {"x": 1}), ("b", points[0])], 0)))
    assert mixed.items[0] == ("a", {"x": 1})
    result = evaluate_group(lambda p: float(np.sum(p)), group)
    back = pickle.loads(pickle.dumps(result))
    # the worker and host travel once per group and are set on each outcome
    assert back.outcomes == [replace(o, host=result.host) for o in result.outcomes]
    assert [o.value for o in back.outcomes] == [3.0, 6.0, 9.0, 12.0]
    assert all(o.status is TrialStatus.DONE for o in back.outcomes)


def exits(params):
    sys.exit(3)


def interrupts(params):
    raise KeyboardInterrupt


def test_an_objective_that_exits_fails_its_trials_and_spares_the_worker(client):
    workers = set(client.scheduler_info()["workers"])
    with Search("exits", exits, "sqlite://", client=client) as search:
        report = search.run([{"a": i} for i in range(4)], progress=False)
        assert (report.failed, report.evaluated) == (4, 0)
        errors = search.trials()["error"]
        assert errors.str.contains("SystemExit: 3").all()
    with Search("interrupts", interrupts, "sqlite://", client=client) as search:
        report = search.run([{"a": i} for i in range(2)], progress=False)
        assert report.failed == 2
        assert search.trials()["error"].str.contains("KeyboardInterrupt").all()
    # vectorized: the same
    outcome = evaluate_columns(exits, Group([("h", np.zeros(1))], 0)).outcomes[0]
    assert outcome.status == TrialStatus.FAILED
    assert "SystemExit: 3" in outcome.error
    assert isinstance(outcome.exception, DasktuneError)
    with pytest.raises(DasktuneError, match=r"element 1 of args.*SystemExit: 3"):
        async_map(exit_on_one, [0, 1, 2], client=client)
    assert set(client.scheduler_info()["workers"]) == workers  # none died


def exit_on_one(x):
    if x == 1:
        sys.exit(3)
    return x
