"""The ask/tell contract (``dasktune.optim.base``), run on every optimizer.

As optuna runs one storage test class on every backend, :class:`TestOptimizerContract`
runs on every optimizer dasktune ships, each made by a factory small enough to
finish in a moment. An optimizer added to ``dasktune.optim`` gets a factory here,
and so do the adapters of other libraries (Optuna, Nevergrad).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from dasktune import Bool, Float, Int, Space, Trial
from dasktune.optim.base import AskTell, IterableSource, Optimizer, RandomSampler
from dasktune.optim.nevergrad import NevergradOptimizer
from dasktune.optim.optuna import OptunaSampler
from dasktune.optim.replicas import HyperScipySampler, ReplicaPool
from dasktune.optim.scipy_bridge import ScipyAskTell
from dasktune.optim.selector import LCBSelector
from dasktune.optim.spsa import SPSAOptimizer, SPSAPoint
from dasktune.records import canonical

pytestmark = pytest.mark.timeout(60)  # ask() must never block: a hang fails

BOX = [(-1.0, 1.0), (-1.0, 1.0)]
SPACE = {"x": Float(-1.0, 1.0), "n": Int(0, 3)}
DISCRETE = {"n": Int(0, 3), "flag": Bool()}
MAX_TRIALS = 2000  # a run that asks more than this never finishes
WINDOW = 4  # what a driver's window would hold of an unbounded sampler's asks


@dataclass
class Case:
    """How to make one optimizer, and what it declares."""

    make: Callable[[], Optimizer]
    seed: int | None


CASES: dict[str, Case] = {
    "IterableSource": Case(
        lambda: IterableSource([{"a": i} for i in range(6)]), seed=None
    ),
    "RandomSampler": Case(lambda: RandomSampler(SPACE, seed=3, n_trials=6), seed=3),
    "SPSAOptimizer": Case(
        lambda: SPSAOptimizer([0.5, -0.5], maxiter=3, n_calibration=2, seed=4),
        seed=4,
    ),
    "SPSAOptimizer-tagged": Case(
        lambda: SPSAOptimizer(
            [0.5, -0.5], maxiter=3, n_calibration=2, seed=4, tagged=True
        ),
        seed=4,
    ),
    "ScipyAskTell-differential_evolution": Case(
        lambda: ScipyAskTell(
            "differential_evolution", BOX, rng=5, maxiter=2, popsize=3
        ),  # polished: L-BFGS-B's finite differences asked as batches too
        seed=5,
    ),
    "ScipyAskTell-dual_annealing": Case(
        lambda: ScipyAskTell("dual_annealing", BOX, rng=6, maxfun=40), seed=6
    ),
    "ScipyAskTell-direct": Case(
        lambda: ScipyAskTell("direct", BOX, maxfun=30), seed=None
    ),
    "ScipyAskTell-shgo": Case(
        lambda: ScipyAskTell("shgo", BOX, n=8, iters=1), seed=None
    ),
    "ReplicaPool": Case(
        lambda: ReplicaPool(
            "dual_annealing", BOX, n_workers=2, seed=7, restart=False, maxfun=30
        ),
        seed=7,
    ),
    "HyperScipySampler": Case(
        lambda: HyperScipySampler(
            DISCRETE, "differential_evolution", n_workers=2, seed=8, maxiter=3
        ),
        seed=8,
    ),
    "LCBSelector": Case(
        lambda: LCBSelector(
            {
                "random": RandomSampler(SPACE, seed=1, n_trials=5),
                "pool": HyperScipySampler(DISCRETE, n_workers=1, seed=2, maxiter=3),
            },
            seed=9,
        ),
        seed=9,
    ),
    "OptunaSampler": Case(
        lambda: OptunaSampler(None, SPACE, seed=10, n_trials=6), seed=10
    ),
    "OptunaSampler-directions": Case(
        lambda: OptunaSampler(
            None, DISCRETE, directions=["maximize"], seed=12, n_trials=5
        ),
        seed=12,
    ),
    "NevergradOptimizer": Case(
        lambda: NevergradOptimizer(
            "TwoPointsDE", SPACE, budget=6, num_workers=2, seed=11
        ),
        seed=11,
    ),
}


@pytest.fixture(params=list(CASES))
def case(request: pytest.FixtureRequest) -> Case:
    return CASES[request.param]


def objective(params: Any) -> float:
    """A deterministic value for whatever an optimizer proposes."""
    if isinstance(params, SPSAPoint):
        params = params.x
    if isinstance(params, dict):
        numbers = [float(v) for v in params.values() if not isinstance(v, str)]
        return float(sum((v - 0.3) ** 2 for v in numbers))
    return float(np.sum((np.asarray(params, dtype=float) - 0.3) ** 2))


def key(params: Any) -> Any:
    """A comparable form of proposed parameters."""
    if isinstance(params, SPSAPoint):
        return (tuple(params.x.tolist()), params.seed, params.tag)
    if isinstance(params, dict):
        return canonical(params)[1]
    return tuple(np.asarray(params, dtype=float).tolist())


def ask_all(opt: Optimizer) -> list[Trial]:
    """Every trial the optimizer proposes before it needs a value, as a driver
    asks: a batch whole, an unbounded sampler's (``batch_size`` 0) up to a
    window."""
    batch = []
    while (trial := opt.ask()) is not None:
        batch.append(trial)
        if opt.batch_size == 0 and len(batch) >= WINDOW:
            break  # the asker bounds an unbounded sampler
        assert len(batch) < MAX_TRIALS, "ask() keeps proposing without a value"
    return batch


def drive(opt: Optimizer) -> list[Trial]:
    """Run ``opt`` to the end, telling each batch in reverse order of its asks."""
    asked: list[Trial] = []
    while not opt.finished:
        batch = ask_all(opt)
        if not batch:
            assert opt.finished, (
                "ask() returned None with no trial pending, yet the optimizer is "
                "not finished: it would leave a driver waiting forever"
            )
            break
        asked.extend(batch)
        assert len(asked) < MAX_TRIALS, "the optimizer never finishes"
        for trial in reversed(batch):  # results arrive in any order
            opt.tell(trial, objective(trial.params))
    return asked


def new_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t not in before and t.is_alive()]


class TestOptimizerContract:
    """What ``dasktune.optim.base`` promises, for every optimizer."""

    def test_asks_unpack_and_number_from_zero_in_ask_order(self, case: Case) -> None:
        with case.make() as opt:
            first = opt.ask()
            assert isinstance(first, Trial)
            n, params = first  # cotengra's ``n, params = opt.ask()``
            assert (n, params) == (first.number, first.params)
            opt.tell(first, objective(params))
            asked = [first, *drive(opt)]
        assert [t.number for t in asked] == list(range(len(asked)))

    def test_out_of_order_tells_reach_the_end_and_ask_then_returns_none(
        self, case: Case
    ) -> None:
        with case.make() as opt:
            asked = drive(opt)
            assert asked and opt.finished
            # after the end: None at once, every time, never blocking
            assert [opt.ask() for _ in range(3)] == [None, None, None]
            assert opt.finished

    def test_tell_twice_raises(self, case: Case) -> None:
        with case.make() as opt:
            trial = opt.ask()
            opt.tell(trial, objective(trial.params))
            with pytest.raises(ValueError, match=f"trial {trial.number} was already"):
                opt.tell(trial, 1.0)
            with pytest.raises(ValueError, match="was already told"):
                opt.tell(trial.number, 1.0)

    def test_tell_of_an_unknown_number_raises(self, case: Case) -> None:
        with case.make() as opt:
            trial = opt.ask()
            with pytest.raises(ValueError, match="trial 999 was never asked"):
                opt.tell(999, 1.0)
            with pytest.raises(ValueError, match="trial -1 was never asked"):
                opt.tell(-1, 1.0)
            opt.tell(trial, objective(trial.params))  # still pending, still fine

    def test_tell_of_a_non_number_raises_and_keeps_the_trial(self, case: Case) -> None:
        with case.make() as opt:
            trial = opt.ask()
            for bad in ("0", 0.0, None, True):
                with pytest.raises(TypeError, match="takes a Trial or a trial number"):
                    opt.tell(bad, 1.0)  # type: ignore[arg-type]
            for value in ("1.0", None, [1.0, 2.0]):
                with pytest.raises(TypeError, match="value told for trial"):
                    opt.tell(trial, value)  # type: ignore[arg-type]
            opt.tell(trial, objective(trial.params))  # the trial was kept pending
            with pytest.raises(ValueError, match="already told"):
                opt.tell(trial, 1.0)

    def test_close_mid_run_joins_every_thread_it_started(self, case: Case) -> None:
        before = set(threading.enumerate())
        opt = case.make()
        batch = ask_all(opt)
        assert batch
        for trial in batch[: len(batch) // 2]:  # mid-batch: some told, some not
            opt.tell(trial, objective(trial.params))
        opt.close()
        assert new_threads(before) == []
        opt.close()  # idempotent
        assert new_threads(before) == []

    def test_close_on_leaving_with_joins_threads_and_ask_raises(
        self, case: Case
    ) -> None:
        before = set(threading.enumerate())
        with case.make() as opt:
            opt.ask()
        assert new_threads(before) == []
        with pytest.raises(RuntimeError, match=f"{type(opt).__name__} is closed"):
            opt.ask()

    def test_pause_mid_run_releases_threads_and_the_run_goes_on(
        self, case: Case
    ) -> None:
        # cotengra's loop calls its optlib's cleanup after every search and asks
        # again in the next: pause() there, close() when done
        before = set(threading.enumerate())
        opt = case.make()
        try:
            batch = ask_all(opt)
            assert batch
            half = len(batch) // 2
            for trial in batch[:half]:
                opt.tell(trial, objective(trial.params))
            was_finished = opt.finished
            opt.pause()
            if not isinstance(opt, ScipyAskTell):  # one scipy run lives in its thread
                assert new_threads(before) == []
            if not was_finished:
                assert not opt.finished  # paused is not finished: it asks again
            for trial in batch[half:]:  # told late: accepted
                opt.tell(trial, objective(trial.params))
            drive(opt)
            assert opt.finished
        finally:
            opt.close()
        assert new_threads(before) == []

    def test_declared_members(self, case: Case) -> None:
        with case.make() as opt:
            assert isinstance(opt, AskTell)
            assert isinstance(opt.wants_values, bool)
            assert opt.seed == case.seed
            text = opt.describe()
            assert isinstance(text, str) and text and "\n" not in text
            sizes = [opt.batch_size]
            while not opt.finished:
                batch = ask_all(opt)
                if not batch:
                    break
                sizes.append(opt.batch_size)
                for trial in batch:
                    opt.tell(trial, objective(trial.params))
                    sizes.append(opt.batch_size)
            assert all(type(s) is int and s >= 0 for s in sizes), sizes
            # finished: no batch is left to send
            assert opt.batch_size == 0

    def test_asks_without_values_stop_or_leave_the_bound_to_the_asker(
        self, case: Case
    ) -> None:
        # asked again and again, told nothing: ask() returns None (a batch is
        # out, or as many trials as it plans for), or the optimizer is
        # unbounded and says so with batch_size 0 after every ask, for the
        # driver's window to bound what is in flight
        with case.make() as opt:
            sizes = []
            while opt.ask() is not None:
                sizes.append(opt.batch_size)
                assert len(sizes) <= MAX_TRIALS, (
                    "ask() keeps proposing without a value: return None, or keep "
                    "batch_size 0 and take a budget (n_trials=)"
                )
            assert sizes
            assert opt.ask() is None  # told nothing: still nothing to propose
            if len(sizes) > WINDOW and all(s == 0 for s in sizes):
                # unbounded: it stopped only because its budget is spent
                assert opt.finished

    def test_declared_hooks(self, case: Case) -> None:
        # everything a search reads of an optimizer is declared on the base
        # class with a default, so no optimizer lacks it
        with case.make() as opt:
            assert opt.directions is None or (
                isinstance(opt.directions, list)
                and all(d in ("minimize", "maximize") for d in opt.directions)
                and len(opt.directions) == opt.n_objectives
            )
            assert isinstance(opt.directions_given, bool)
            spaces = opt.spaces()
            assert isinstance(spaces, list)
            for space, owner in spaces:
                assert isinstance(space, Space) and isinstance(owner, Optimizer)
            own = [s for s, o in spaces]
            opt.adopt_space(Space({"other": Float(0.0, 1.0)}))  # its own is kept
            opt.adopt_directions(["minimize"] * opt.n_objectives)
            assert [s for s, _ in opt.spaces()] == own
            assert opt.requeue([]) == 0 and opt.warm_start([]) == 0
            trial = opt.ask()
            assert trial is not None
            if own and isinstance(trial.params, dict):
                assert any(s.contains(trial.params) for s in own), trial.params
            opt.tell(trial, objective(trial.params))

    def test_a_seeded_optimizer_proposes_the_same_trials_twice(
        self, case: Case
    ) -> None:
        runs = []
        for _ in range(2):
            with case.make() as opt:
                runs.append([key(t.params) for t in drive(opt)])
        if isinstance(opt, ReplicaPool):
            # replicas run in threads: which one posts first is timing, so the
            # order of their proposals may differ, never what they propose
            assert sorted(runs[0]) == sorted(runs[1])
        else:
            assert runs[0] == runs[1]
