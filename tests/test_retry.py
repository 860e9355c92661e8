"""What ``retries`` means on a worker (dasktune.run.retry), written once."""

from __future__ import annotations

import threading

import pytest

from dasktune.exceptions import TrialTimeoutError
from dasktune.run.retry import retried


class Flaky:
    """Raises ``errors`` one by one, then returns how many calls it took."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.calls


def test_a_raising_call_runs_again_retries_times_then_its_error_counts():
    done = retried(Flaky(ValueError("a"), ValueError("b")), retries=2)
    assert (done.value, done.error, done.calls) == (3, None, 3)
    flaky = Flaky(ValueError("a"), ValueError("b"))
    failed = retried(flaky, retries=1)
    assert failed.value is None and failed.calls == 2 == flaky.calls
    assert isinstance(failed.error, ValueError) and str(failed.error) == "b"
    assert retried(Flaky(ValueError("a")), retries=0).calls == 1


def test_system_exit_and_keyboard_interrupt_are_retried_and_caught():
    # raised out of a task they would kill the worker: the caller decides
    done = retried(Flaky(SystemExit(3), KeyboardInterrupt()), retries=2)
    assert (done.value, done.calls) == (3, 3)
    failed = retried(Flaky(KeyboardInterrupt()), retries=0)
    assert isinstance(failed.error, KeyboardInterrupt)


def test_before_runs_ahead_of_each_call():
    seen: list[int] = []
    flaky = Flaky(ValueError("a"))
    retried(flaky, retries=1, before=lambda: seen.append(flaky.calls))
    assert seen == [0, 1]


@pytest.mark.timeout(60)
def test_a_call_past_its_limit_is_not_retried():
    calls = []
    release = threading.Event()

    def slow() -> None:
        calls.append(1)
        while not release.wait(0.01):  # interruptible between waits
            pass

    try:
        done = retried(slow, retries=3, limit=0.2)
    finally:
        release.set()
    assert isinstance(done.error, TrialTimeoutError) and len(calls) == 1
