"""The ask/tell contract on the base class, and the simple sources."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dasktune import Float, Int, Trial
from dasktune.optim.base import AskTell, IterableSource, Optimizer, RandomSampler


class Countdown(Optimizer):
    """Proposes 0, 1, 2 one at a time, each only after the previous is told."""

    def __init__(self) -> None:
        super().__init__()
        self.told: list[tuple[int, float]] = []

    def _ask(self):
        if self.n_pending or self.finished:
            return None
        return {"i": self._next_number}

    def _tell(self, number, params, value):
        self.told.append((number, value))

    @property
    def finished(self) -> bool:
        return len(self.told) >= 3


def test_trial_unpacks_like_cotengra():
    opt = Countdown()
    n, params = opt.ask()
    assert (n, params) == (0, {"i": 0})
    assert isinstance(opt.ask(), type(None))  # waits for the tell, never blocks
    opt.tell(n, 1.0)
    trial = opt.ask()
    assert trial == Trial(1, {"i": 1})
    opt.tell(trial, float("nan"))  # NaN is told as the worst value
    assert opt.told == [(0, 1.0), (1, math.inf)]
    assert isinstance(opt, AskTell)


def test_tell_checks():
    opt = Countdown()
    trial = opt.ask()
    opt.tell(trial, 1.0)
    with pytest.raises(ValueError, match="trial 0 was already told"):
        opt.tell(0, 2.0)
    with pytest.raises(ValueError, match="trial 7 was never asked"):
        opt.tell(7, 2.0)
    with pytest.raises(TypeError, match="takes a Trial or a trial number"):
        opt.tell("0", 2.0)
    with pytest.raises(TypeError, match="takes a Trial or a trial number"):
        opt.tell(True, 2.0)  # an int, but not a trial number
    opt.tell(np.int64(opt.ask().number), 2)  # a NumPy number, an int value
    opt.tell(opt.ask(), np.float64(3.0))
    assert opt.told == [(0, 1.0), (1, 2.0), (2, 3.0)]
    assert all(type(v) is float for _, v in opt.told)


def test_tell_reads_values_as_scipy_does():
    opt = Countdown()
    for value in (np.array([0.5]), np.array(0.5)):
        opt.tell(opt.ask(), value)
    assert opt.told == [(0, 0.5), (1, 0.5)]
    trial = opt.ask()
    with pytest.raises(TypeError, match=r"value told for trial 2 .*shape \(2,\)"):
        opt.tell(trial, np.array([0.5, 1.0]))


def test_closed_optimizer_refuses_to_ask():
    with Countdown() as opt:
        opt.ask()
    with pytest.raises(RuntimeError, match="Countdown is closed"):
        opt.ask()


def test_iterable_source():
    src = IterableSource(iter([{"a": 1}, {"a": 2}]))
    assert [src.ask().params, src.ask().params] == [{"a": 1}, {"a": 2}]
    assert src.ask() is None
    assert src.finished
    bad = IterableSource([3])
    with pytest.raises(TypeError, match="yields parameter dicts, got int"):
        bad.ask()


def test_random_sampler_is_seeded():
    space = {"x": Float(0, 1), "n": Int(1, 5)}
    a = [RandomSampler(space, seed=3).ask().params for _ in range(1)]
    b = [RandomSampler(space, seed=3).ask().params for _ in range(1)]
    assert a == b
    sampler = RandomSampler(space, seed=1, n_trials=2)
    assert sampler.ask() and sampler.ask()
    assert sampler.ask() is None and sampler.finished
