"""The pruners: Optuna's semantics, asynchronous rungs, seeded brackets, restore."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dasktune.optim.pruners import (
    HyperbandPruner,
    MedianPruner,
    PercentilePruner,
    Pruner,
    SuccessiveHalvingPruner,
    Verdict,
)


def interleaved(n_trials=30, n_steps=12, n_parallel=4, seed=0):
    """Reports of trials running ``n_parallel`` at a time, in a shuffled order:
    ``("report", number, step, value)`` and ``("complete", number)``."""
    rng = np.random.default_rng(seed)
    rates = rng.uniform(0.05, 0.5, n_trials)
    running: dict[int, int] = {}
    upcoming = iter(range(n_trials))
    events = []
    while True:
        while len(running) < n_parallel:
            number = next(upcoming, None)
            if number is None:
                break
            running[number] = 0
        if not running:
            return events
        number = int(rng.choice(sorted(running)))
        step = running[number]
        value = math.exp(-rates[number] * step) + 0.02 * rng.standard_normal()
        events.append(("report", number, step, value))
        running[number] += 1
        if running[number] == n_steps:
            del running[number]
            events.append(("complete", number))


def drive(pruner: Pruner, events):
    """Feed ``events`` to ``pruner``; a pruned trial reports no more."""
    stopped: set[int] = set()
    decisions = []
    for event in events:
        if event[1] in stopped:
            continue
        if event[0] == "complete":
            pruner.complete(event[1])
            continue
        _, number, step, value = event
        verdict = pruner.report(number, step, value)
        decisions.append((number, step, verdict.prune))
        if verdict:
            stopped.add(number)
    return decisions


def drive_optuna(pruner, events, direction="minimize"):
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=direction, pruner=pruner)
    trials, last, stopped, decisions = {}, {}, set(), []
    for event in events:
        number = event[1]
        if number in stopped:
            continue
        if number not in trials:
            trials[number] = study.ask()
        trial = trials[number]
        if event[0] == "complete":
            study.tell(trial, last[number])
            continue
        _, _, step, value = event
        trial.report(value, step)
        last[number] = value
        prune = trial.should_prune()
        decisions.append((number, step, prune))
        if prune:
            stopped.add(number)
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    return decisions


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_median_rule_decides_as_optuna_does(seed, direction):
    optuna = pytest.importorskip("optuna")
    sign = 1 if direction == "minimize" else -1
    events = [
        (e[0], e[1], e[2], sign * e[3]) if e[0] == "report" else e
        for e in interleaved(seed=seed)
    ]
    ours = drive(
        MedianPruner(3, n_warmup_steps=2, interval_steps=2, direction=direction),
        events,
    )
    theirs = drive_optuna(
        optuna.pruners.MedianPruner(3, n_warmup_steps=2, interval_steps=2),
        events,
        direction,
    )
    assert ours == theirs
    assert any(prune for *_, prune in ours)  # the rule did prune


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_asha_decides_as_optunas_successive_halving(seed, direction):
    optuna = pytest.importorskip("optuna")
    sign = 1 if direction == "minimize" else -1
    events = [
        (e[0], e[1], e[2], sign * e[3]) if e[0] == "report" else e
        for e in interleaved(n_trials=40, n_steps=10, seed=seed)
    ]
    ours = drive(SuccessiveHalvingPruner(1, 2, direction=direction), events)
    theirs = drive_optuna(
        optuna.pruners.SuccessiveHalvingPruner(
            min_resource=1, reduction_factor=2, min_early_stopping_rate=0
        ),
        events,
        direction,
    )
    assert ours == theirs
    assert sum(prune for *_, prune in ours) >= 10


def test_asha_promotes_at_once_without_waiting_for_the_rung():
    asha = SuccessiveHalvingPruner(min_resource=2, reduction_factor=3)
    assert asha.report(0, 1, 9.0).reason == "step 1 reaches no new rung"
    # the first trial at a rung goes on: nothing waits for the rung to fill
    assert not asha.report(0, 2, 5.0)
    # a worse one is stopped, a better one promoted, each when it arrives
    verdict = asha.report(1, 2, 6.0)
    assert verdict.prune
    assert "rung 0 (step 2)" in verdict.reason
    assert not asha.report(2, 2, 4.0)
    assert asha.rungs[0] == {0: 5.0, 1: 6.0, 2: 4.0}
    # with 3 values the top 1/3 is the best one
    assert asha.report(3, 3, 4.5).prune  # step 3 >= 2: its value at step 3 joins
    assert asha.rungs[0][3] == 4.5
    # the next rung is at 2 * 3 = 6
    assert asha.rung_resource(1) == 6


def test_asha_has_no_rung_at_or_past_max_resource():
    asha = SuccessiveHalvingPruner(1, 2, max_resource=4)
    for number, value in enumerate([1.0, 2.0, 3.0]):
        asha.observe(number, 2, value)
    assert sorted(asha.rungs) == [0, 1]
    # a trial at max_resource is complete: never checked there
    asha.report(0, 4, 0.5)
    assert sorted(asha.rungs) == [0, 1]
    assert asha.report(0, 5, 0.4).reason == "step 5 reaches no new rung"


def test_hyperband_assigns_brackets_by_seed_in_any_order():
    hb = HyperbandPruner(1, 27, 3, seed=7)
    assert len(hb.brackets) == 4  # 1, 3, 9, 27
    assignment = [hb.bracket_of(n) for n in range(2000)]
    again = HyperbandPruner(1, 27, 3, seed=7)
    assert [again.bracket_of(n) for n in reversed(range(2000))] == assignment[::-1]
    other = HyperbandPruner(1, 27, 3, seed=8)
    assert [other.bracket_of(n) for n in range(2000)] != assignment
    # the aggressive bracket gets the most trials, as Hyperband sizes them
    counts = np.bincount(assignment, minlength=4) / 2000
    np.testing.assert_allclose(counts, hb.weights, atol=0.04)
    assert counts[0] > counts[1] > counts[3]
    # the last bracket runs every trial to max_resource
    last = next(n for n, b in enumerate(assignment) if b == 3)
    assert not hb.report(last, 26, 1e9).prune


def test_hyperband_compares_trials_only_within_their_bracket():
    hb = HyperbandPruner(1, 9, 3, seed=0)
    in_zero = [n for n in range(200) if hb.bracket_of(n) == 0][:4]
    in_one = [n for n in range(200) if hb.bracket_of(n) == 1][:1]
    for n in in_zero:
        hb.report(n, 1, 0.1)
    # bad in absolute terms, but alone in bracket 1's first rung (step 3)
    verdict = hb.report(in_one[0], 3, 50.0)
    assert not verdict.prune
    assert verdict.reason.startswith("bracket 1: ")
    assert hb.report(in_zero[0] + 1000 * 0, 3, 0.1).reason.startswith("bracket 0")


def test_restore_replays_stored_curves_to_the_same_decisions():
    events = interleaved(n_trials=40, n_steps=10, seed=3)
    cut = len(events) // 2
    live = SuccessiveHalvingPruner(1, 2)
    drive(live, events[:cut])
    reports = [(n, s, v) for kind, n, *rest in events[:cut] if kind == "report"
               for s, v in [rest]]  # fmt: skip
    # the stored curves hold only what was reported before a trial was pruned
    stopped: set[int] = set()
    kept = []
    fresh = SuccessiveHalvingPruner(1, 2)
    for n, s, v in reports:
        if n in stopped:
            continue
        kept.append((n, s, v))
        if fresh.report(n, s, v):
            stopped.add(n)
    resumed = SuccessiveHalvingPruner(1, 2)
    resumed.restore(kept, completed=live.completed)
    assert resumed.rungs == live.rungs
    assert resumed.curves == live.curves
    rest = [e for e in events[cut:] if e[1] not in stopped]
    assert drive(resumed, rest) == drive(live, rest)


def test_median_waits_for_startup_warmup_and_check_steps():
    median = MedianPruner(n_startup_trials=2, n_warmup_steps=2, interval_steps=3)
    assert "0 of 2 startup" in median.report(0, 0, 1.0).reason
    for number in (0, 1):
        for step in range(1, 9):
            median.observe(number, step, 1.0)
        median.complete(number)
    assert median.report(2, 1, 5.0).reason == "step 1 is a warm-up step"
    assert median.report(2, 2, 5.0).prune  # the first check step
    median2 = MedianPruner(n_startup_trials=0, n_warmup_steps=2, interval_steps=3)
    median2.curves, median2.completed = median.curves, median.completed
    median2.observe(3, 2, 0.5)
    assert median2.report(3, 3, 9.0).reason == "step 3 is not a check step"
    # best so far (0.5 at step 2) counts, as in Optuna
    assert not median2.report(3, 5, 9.0).prune


def test_percentile_of_maximize_mirrors():
    p = PercentilePruner(25.0, n_startup_trials=4, direction="maximize")
    for number, value in enumerate([1.0, 2.0, 3.0, 4.0]):
        p.report(number, 0, value)
        p.complete(number)
    # keep the top 25%: at least the 75th percentile (3.25)
    assert p.report(9, 0, 3.0).prune
    assert not p.report(10, 0, 3.5).prune


def test_reports_are_checked():
    pruner = MedianPruner()
    with pytest.raises(ValueError, match="value must be finite, got nan at step 0"):
        pruner.report(0, 0, float("nan"))
    with pytest.raises(ValueError, match="must be finite, got inf"):
        pruner.report(0, 0, math.inf)
    with pytest.raises(TypeError, match="value must be a real number, got str"):
        pruner.report(0, 0, "0.5")
    with pytest.raises(TypeError, match="step must be an integer"):
        pruner.report(0, 1.5, 0.5)
    with pytest.raises(ValueError, match="step must be >= 0"):
        pruner.report(0, -1, 0.5)
    pruner.report(0, 3, 0.5)
    with pytest.raises(ValueError, match="reported step 2 after step 3; steps must"):
        pruner.report(0, 2, 0.5)
    with pytest.raises(ValueError, match="reported step 3 after step 3"):
        pruner.report(0, 3, 0.5)
    # replaying (restore) tolerates what was already seen
    pruner.observe(0, 3, 0.7)
    assert pruner.curves[0] == {3: 0.5}


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: MedianPruner(direction="max"), ValueError, "'minimize' or"),
        (lambda: MedianPruner(n_startup_trials=-1), ValueError, "n_startup_trials"),
        (lambda: MedianPruner(interval_steps=0), ValueError, "interval_steps must"),
        (lambda: PercentilePruner(120), ValueError, r"percentile must be in \[0, 100"),
        (lambda: SuccessiveHalvingPruner(0), ValueError, "min_resource must be"),
        (lambda: SuccessiveHalvingPruner(1, 1), ValueError, "reduction_factor must"),
        (lambda: SuccessiveHalvingPruner(1, 2.5), TypeError, "reduction_factor must"),
        (lambda: SuccessiveHalvingPruner(4, max_resource=2), ValueError, "max_resou"),
        (lambda: HyperbandPruner(10, 5), ValueError, r"max_resource \(5\) must be"),
    ],
)
def test_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_a_pruner_of_your_own_needs_only_decide():
    class StopAbove(Pruner):
        def _decide(self, number, step):
            value = self.curves[number][step]
            return Verdict(value > 1.0, f"{value} vs 1.0")

    pruner = StopAbove()
    assert not pruner.report(0, 0, 0.5)
    assert pruner.report(0, 1, 2.0).reason == "2.0 vs 1.0"
    assert "StopAbove" in pruner.describe()


def test_a_resumed_search_rebuilds_its_pruner_from_the_store():
    from dasktune.records import Claim, Outcome, TrialStatus, canonical
    from dasktune.store.sql import TrialStore

    store = TrialStore("sqlite://")
    sid = store.open_search("s", space=None, direction="minimize", metadata={})
    driver = store.register_driver(sid)
    claims = [Claim(*reversed(canonical({"i": i}))) for i in range(40)]
    store.sync(sid, driver, [], claims)
    live = HyperbandPruner(1, 9, 3, seed=4)
    stopped: set[int] = set()
    reports, outcomes, when = [], [], 0.0
    for kind, number, *rest in interleaved(n_trials=40, n_steps=10, seed=5):
        if number in stopped:
            continue
        if kind == "complete":
            live.complete(number)
            status, value = TrialStatus.DONE, list(live.curves[number].values())[-1]
        else:
            step, value = rest
            when += 1.0
            reports.append((number, step, value, when))
            if not live.report(number, step, value):
                continue
            stopped.add(number)
            status = TrialStatus.PRUNED
        outcomes.append(Outcome(claims[number].param_hash, status, value=value))
    for i in range(0, len(reports), 7):  # written in batches, as the driver does
        store.add_values(sid, reports[i : i + 7])
    store.sync(sid, driver, outcomes, [])
    resumed = HyperbandPruner(1, 9, 3, seed=4)
    done = [t["number"] for t in store.trials(sid) if t["status"] == "done"]
    resumed.restore([r[:3] for r in store.read_values(sid)], completed=done)
    assert [b.rungs for b in resumed.brackets] == [b.rungs for b in live.brackets]
    assert resumed.completed == live.completed
    pruned = {t["number"] for t in store.trials(sid) if t["status"] == "pruned"}
    assert pruned == stopped and pruned


def test_a_pruner_takes_its_searchs_direction_once_it_holds_curves():
    from dasktune.optim.pruners import HyperbandPruner, MedianPruner

    pruner = MedianPruner()
    pruner.for_search("up", "maximize")  # no direction given: the search's
    assert pruner.direction == "maximize"
    band = HyperbandPruner(1, 27, seed=0)
    band.for_search("up", "maximize")
    assert {b.direction for b in band.brackets} == {"maximize"}
    with pytest.raises(ValueError, match="it would stop the best trials"):
        MedianPruner(direction="minimize").for_search("up", "maximize")
    pruner.report(0, 0, 0.5)  # now it holds a maximised search's curves
    with pytest.raises(ValueError, match="make a new pruner for this search"):
        pruner.for_search("down", "minimize")
    pruner.for_search("up", "maximize")  # the same search again: fine
