"""Reports from objectives to the driver and decisions back, on real clusters."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from distributed.utils_test import gen_cluster

from dasktune.exceptions import TrialPruned
from dasktune.optim.pruners import Pruner, SuccessiveHalvingPruner, Verdict
from dasktune.run.report import ReportChannel, TrialHandle, stop_topic, wants_trial
from tests.waiting import async_poll_until, poll_until

MAX_EPOCHS = 400


def train(params, trial):
    """A training loop that reports every epoch and stops when told; at the
    step ``params["hold_at"]``, if any, it waits for the pruner's decision to
    stop it (however long the decision takes to arrive)."""
    for epoch in range(MAX_EPOCHS):
        loss = params["rate"] * 10.0 / (epoch + 1)
        trial.report(epoch, loss)
        if epoch == params.get("hold_at"):
            poll_until(
                trial.should_prune,
                what=f"the decision to stop trial {trial.number} at step {epoch}",
                timeout=20,
            )
        if trial.should_prune():
            raise TrialPruned
        if epoch >= params.get("epochs", MAX_EPOCHS) - 1:
            return loss
        time.sleep(0.005)
    return loss


def run_trial(number, params, key):
    """What the evaluation on a worker does with an objective taking ``trial``."""
    handle = TrialHandle(number, key)
    try:
        value = train(params, handle)
    except TrialPruned:
        return "pruned", handle.last_step, handle.last_value
    return "done", handle.last_step, value


def bad_reports(key, kind):
    handle = TrialHandle(0, key)
    handle.report(0, 1.0)
    if kind == "nan":
        handle.report(1, math.nan)
    handle.report(0, 0.5)


class StopOdd(Pruner):
    """Stops odd-numbered trials at step 3: a decision known in advance."""

    def _decide(self, number, step):
        return Verdict(number % 2 == 1 and step >= 3, f"trial {number} step {step}")


def test_wants_trial_finds_the_argument():
    def plain(params):
        return 0.0

    def keyword(params, *, trial):
        return 0.0

    def positional(params, trial):
        return 0.0

    assert not wants_trial(plain)
    assert wants_trial(keyword)
    assert wants_trial(positional)
    assert not wants_trial(print)  # builtins: no signature, a plain call
    assert not wants_trial(lambda params, *trial: 0.0)


def test_a_handle_without_a_run_checks_and_keeps_reports():
    handle = TrialHandle(7)
    handle.report(0, 2.0)
    handle.report(5, 1.5)
    assert (handle.last_step, handle.last_value) == (5, 1.5)
    assert not handle.should_prune()
    with pytest.raises(ValueError, match="value must be finite, got inf at step 6"):
        handle.report(6, math.inf)
    with pytest.raises(ValueError, match="trial 7 reported step 5 after step 5"):
        handle.report(5, 1.0)
    with pytest.raises(TypeError, match="step must be an integer"):
        handle.report("6", 1.0)


def test_report_takes_optunas_keywords_and_never_swaps_two_integers():
    handle = TrialHandle(3)
    handle.report(0, 2.5)  # dasktune's positional order: step first
    handle.report(value=2.0, step=1)  # Optuna users' keywords, either order
    handle.report(step=2, value=1.5)
    handle.report(1.25, step=3)  # Optuna's report(loss, step=epoch)
    handle.report(4, value=1)
    assert (handle.last_step, handle.last_value) == (4, 1.0)
    # an integer value and its step, positionally: which is which? refused
    with pytest.raises(TypeError, match=r"report\(7, 5\): two integers given"):
        handle.report(7, 5)
    with pytest.raises(TypeError, match=r"say which with report\(step=7, value=5\)"):
        handle.report(np.int64(7), 5)
    # Optuna's positional order with a float loss: the step must be an integer
    with pytest.raises(TypeError, match="the step comes first"):
        handle.report(0.5, 5)
    with pytest.raises(TypeError, match="value missing"):
        handle.report(5)
    with pytest.raises(TypeError, match="step missing"):
        handle.report(value=0.5)
    with pytest.raises(TypeError, match=r"got 2 positional argument\(s\).*step="):
        handle.report(5, 0.5, step=5)
    assert handle.last_step == 4  # refused reports leave it as it was


@gen_cluster(client=True)
async def test_pruned_trials_stop_early_and_the_others_run_whole(c, s, a, b):
    with ReportChannel(c, StopOdd()) as channel:
        # the odd ones wait at step 3 for their stop
        params = [
            {"rate": 1.0 + n, "epochs": 40, "hold_at": 3 if n % 2 else None}
            for n in range(4)
        ]
        futures = [
            c.submit(run_trial, n, p, channel.key, pure=False)
            for n, p in enumerate(params)
        ]
        results = await c.gather(futures)
        await async_poll_until(
            lambda: all(channel.last(n) == (r[1], r[2]) for n, r in enumerate(results)),
            what="every trial's last report",
        )
        reports = channel.drain()
    for number, (status, last_step, value) in enumerate(results):
        if number % 2:
            assert status == "pruned"
            # stopped at the decision at step 3, before the end
            assert last_step == 3
            assert channel.verdict(number).reason.startswith(f"trial {number} step")
        else:
            assert (status, last_step) == ("done", 39)
            assert channel.verdict(number) is None
        steps = [st for n, st, _, _ in reports if n == number]
        assert steps == list(range(last_step + 1))
        assert channel.last(number) == (last_step, value)
    assert channel.drain() == []


@gen_cluster(client=True)
async def test_asha_prunes_through_the_channel(c, s, a, b):
    with ReportChannel(c, SuccessiveHalvingPruner(2, 2)) as channel:
        # trial 0 sets the rung first; the worse ones are stopped at step 2
        # (they wait there for the decision)
        first = await c.submit(run_trial, 0, {"rate": 0.1, "epochs": 20}, channel.key)
        rest = await c.gather(
            [
                c.submit(
                    run_trial,
                    n,
                    {"rate": 1.0 + n, "epochs": 20, "hold_at": 2},
                    channel.key,
                )
                for n in (1, 2)
            ]
        )
    assert first[0] == "done"
    assert [r[0] for r in rest] == ["pruned", "pruned"]
    assert "rung 0 (step 2)" in channel.verdict(1).reason


@gen_cluster(client=True)
async def test_a_trial_stopped_before_it_listens_is_told_at_its_next_report(c, s, a, b):
    # the decision is published before any worker subscribed to the run (the
    # race a fast pruner can win), or the trial is a re-run on another worker
    with ReportChannel(c) as channel:
        channel.stop(5, "stopped by hand")
        await async_poll_until(
            lambda: s.get_events(stop_topic(channel.key)),
            what="the scheduler to have the decision",
        )
        status, last_step, _ = await c.submit(run_trial, 5, {"rate": 1.0}, channel.key)
    assert status == "pruned"
    assert last_step < MAX_EPOCHS - 1
    assert channel.verdict(5).reason == "stopped by hand"


@gen_cluster(client=True)
async def test_a_rerun_reports_its_steps_again_and_they_count_once(c, s, a, b):
    with ReportChannel(c, StopOdd()) as channel:
        # the same trial twice, as when Dask re-runs it after a lost worker
        await c.submit(run_trial, 2, {"rate": 1.0, "epochs": 5}, channel.key)
        await c.submit(run_trial, 2, {"rate": 1.0, "epochs": 8}, channel.key)
        await async_poll_until(
            lambda: channel.last(2) == (7, 10.0 / 8), what="trial 2's last report"
        )
        reports = channel.drain()
    assert [step for _, step, _, _ in reports] == list(range(8))
    assert channel.reports == 5 + 8


@gen_cluster(client=True)
async def test_bad_reports_raise_in_the_objective(c, s, a, b):
    with ReportChannel(c) as channel:
        with pytest.raises(ValueError, match="value must be finite, got nan at step 1"):
            await c.submit(bad_reports, channel.key, "nan")
        with pytest.raises(ValueError, match="reported step 0 after step 0"):
            await c.submit(bad_reports, channel.key, "back")


class Raising(Pruner):
    def _decide(self, number, step):
        raise RuntimeError("the pruner broke")


@gen_cluster(client=True)
async def test_a_pruner_error_reaches_the_driver(c, s, a, b):
    with ReportChannel(c, Raising()) as channel:
        await c.submit(run_trial, 0, {"rate": 1.0, "epochs": 2}, channel.key)
        await async_poll_until(lambda: channel.reports >= 1, what="a report")
        with pytest.raises(RuntimeError, match="the pruner broke"):
            channel.drain()


async def _nothing(*args, **kwargs):
    """A scheduler handler that does nothing (a route closed for the test)."""
    return {}


@gen_cluster(client=True)
async def test_a_stop_goes_straight_to_the_worker_not_through_the_scheduler(c, s, a, b):
    # the scheduler forwards nothing: neither the client's broadcast to a
    # worker nor the stop event; trial 1 waits at step 3 for its stop
    s.handlers["broadcast"] = s.handlers["log_event"] = _nothing
    with ReportChannel(c, StopOdd()) as channel:
        status, last_step, _ = await c.submit(
            run_trial, 1, {"rate": 1.0, "epochs": 40, "hold_at": 3}, channel.key
        )
    assert (status, last_step) == ("pruned", 3)


@gen_cluster(client=True)
async def test_a_worker_the_client_cannot_reach_is_told_through_the_scheduler(
    c, s, a, b
):
    def unreachable(address):
        raise OSError(f"no route to {address} (closed for the test)")

    reachable, c.rpc = c.rpc, unreachable  # only the scheduler's connection works
    s.handlers["log_event"] = _nothing  # and no stop event: the scheduler's run
    try:
        with ReportChannel(c, StopOdd()) as channel:
            first = c.submit(
                run_trial, 1, {"rate": 1.0, "epochs": 40, "hold_at": 3}, channel.key
            )
            assert (await first)[:2] == ("pruned", 3)
            assert not channel._direct  # later stops: through the scheduler at once
            second = c.submit(
                run_trial, 3, {"rate": 1.0, "epochs": 40, "hold_at": 3}, channel.key
            )
            assert (await second)[:2] == ("pruned", 3)
    finally:
        c.rpc = reachable
