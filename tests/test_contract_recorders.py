"""The Recorder protocol (``dasktune.records``), run on every recorder.

As optuna runs one storage test class on every backend, :class:`TestRecorderContract`
runs on :class:`~dasktune.records.MemoryRecorder` and on
:class:`~dasktune.store.StoreRecorder` over a :class:`~dasktune.store.TrialStore`
on SQLite in memory, a SQLite file and a real PostgreSQL server. Both decide a
claim by the one rule :func:`dasktune.records.decide`; this suite checks that
they agree everywhere a single driver can see. What only a shared store does
(several drivers, stale ones, the schema) is in ``test_store.py``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import pytest

from dasktune.records import (
    REUSE_BURST,
    Claim,
    Decision,
    DecisionKind,
    MemoryRecorder,
    Outcome,
    Recorder,
    TrialStatus,
    canonical,
)
from dasktune.store import STALE_AFTER_SECONDS, StoreRecorder, TrialStore

MakeRecorder = Callable[..., Recorder]


def claim(**params: object) -> Claim:
    record, h = canonical(params)
    return Claim(h, record)


def done(c: Claim, value: float, **aux: object) -> Outcome:
    return Outcome(c.param_hash, TrialStatus.DONE, value=value, aux=dict(aux))


def failed(c: Claim) -> Outcome:
    return Outcome(c.param_hash, TrialStatus.FAILED, error="Traceback: boom")


def kinds(decisions: list[Decision]) -> list[tuple[str, int]]:
    return [(d.kind.value, d.number) for d in decisions]


@pytest.fixture(params=["memory", "sqlite-memory", "sqlite-file", "postgresql"])
def make_recorder(request: pytest.FixtureRequest, tmp_path) -> Iterator[MakeRecorder]:
    """A factory of fresh recorders (each on a search of its own)."""
    if request.param == "memory":
        yield lambda retry_failed=False: MemoryRecorder(retry_failed=retry_failed)
        return
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
    elif request.param == "sqlite-memory":
        url = "sqlite://"
    else:
        url = f"sqlite:///{tmp_path}/recorder.db"
    store = TrialStore(url)
    names = itertools.count()

    def make(retry_failed: bool = False) -> Recorder:
        sid = store.open_search(
            f"s{next(names)}", space=None, direction="minimize", metadata={}
        )
        driver = store.register_driver(sid)
        return StoreRecorder(store, sid, driver, retry_failed, STALE_AFTER_SECONDS)

    yield make
    store.close()


class TestRecorderContract:
    """What the Recorder protocol promises, for every recorder."""

    def test_every_hook_the_driver_reads_is_declared(self, make_recorder):
        # the driver reads reuse_burst as declared, not with getattr: every
        # recorder is a Recorder and says how many claims a burst may hold
        recorder = make_recorder()
        assert Recorder in type(recorder).__mro__
        assert isinstance(recorder.reuse_burst, int)
        assert recorder.reuse_burst >= 1

    def test_new_claims_are_numbered_from_zero_and_evaluated(
        self, make_recorder: MakeRecorder
    ) -> None:
        rec = make_recorder()
        first = rec.sync([], [claim(a=1), claim(a=2), claim(a=3)])
        assert kinds(first) == [("evaluate", 0), ("evaluate", 1), ("evaluate", 2)]
        assert all(isinstance(d.kind, DecisionKind) for d in first)
        assert kinds(rec.sync([], [claim(a=4)])) == [("evaluate", 3)]
        assert rec.sync([], []) == []

    def test_a_repeated_claim_in_one_batch_is_one_trial(
        self, make_recorder: MakeRecorder
    ) -> None:
        rec = make_recorder()
        c = claim(a=1)
        assert kinds(rec.sync([], [c, c])) == [("evaluate", 0), ("elsewhere", 0)]
        # the same parameters in another order are the same claim
        same = claim(b=2, a=1)
        assert kinds(rec.sync([], [claim(a=1, b=2), same])) == [
            ("evaluate", 1),
            ("elsewhere", 1),
        ]
        assert kinds(rec.sync([], [claim(a=5)])) == [("evaluate", 2)]

    def test_a_repeated_claim_of_a_recorded_trial_is_evaluated_once(
        self, make_recorder: MakeRecorder
    ) -> None:
        # a released (queued) trial, or a failed one retried, claimed twice in
        # one batch: evaluated once, the repeat waits for it
        rec = make_recorder(retry_failed=True)
        queued, failing = claim(a=1), claim(a=2)
        rec.sync([], [queued, failing])
        rec.sync([failed(failing)], [])
        rec.release()
        assert kinds(rec.sync([], [queued, queued, failing, failing])) == [
            ("evaluate", 0),
            ("elsewhere", 0),
            ("evaluate", 1),
            ("elsewhere", 1),
        ]

    def test_outcomes_then_reuse_with_value_and_aux(
        self, make_recorder: MakeRecorder
    ) -> None:
        rec = make_recorder()
        c = claim(a=1, b="x")
        rec.sync([], [c])
        # the result and the next claims in one call
        decisions = rec.sync(
            [done(c, 0.5, acc=0.9, tags=["a", "b"])],
            [claim(b="x", a=1), claim(a=2, b="x")],
        )
        assert (decisions[0].kind, decisions[0].number) == (DecisionKind.DONE, 0)
        assert (decisions[0].value, decisions[0].aux) == (
            0.5,
            {"acc": 0.9, "tags": ["a", "b"]},
        )
        assert kinds(decisions[1:]) == [("evaluate", 1)]
        again = rec.sync([], [c])[0]
        assert (again.kind, again.value) == ("done", 0.5)
        assert again.aux == {"acc": 0.9, "tags": ["a", "b"]}

    def test_reuse_gives_back_every_objective_and_the_constraints(
        self, make_recorder: MakeRecorder
    ) -> None:
        rec = make_recorder()
        several, plain = claim(a=1), claim(a=2)
        rec.sync([], [several, plain])
        rec.sync(
            [
                Outcome(several.param_hash, TrialStatus.DONE, value=0.5,
                        values=(0.5, -2.0), constraints=(-1.0, 0.25)),
                done(plain, 1.5),
            ],
            [],
        )  # fmt: skip
        again, other = rec.sync([], [several, plain])
        assert (again.kind, again.value) == ("done", 0.5)
        assert (again.values, again.constraints) == ((0.5, -2.0), (-1.0, 0.25))
        assert (other.values, other.constraints) == (None, None)
        assert rec.peek([several.param_hash])[0].values == (0.5, -2.0)

    @pytest.mark.parametrize("retry_failed", [False, True])
    def test_failed_trials_are_kept_and_retried_only_on_request(
        self, make_recorder: MakeRecorder, retry_failed: bool
    ) -> None:
        rec = make_recorder(retry_failed=retry_failed)
        c = claim(a=3)
        rec.sync([], [c])
        decision = rec.sync([failed(c)], [c])[0]
        if not retry_failed:
            assert kinds([decision]) == [("failed", 0)]
            assert (decision.value, decision.aux) == (None, {})
            assert kinds(rec.sync([], [c])) == [("failed", 0)]  # kept failed
            return
        assert kinds([decision]) == [("evaluate", 0)]
        # evaluated again: held until its new outcome, which is then reused
        assert kinds(rec.sync([], [c])) == [("elsewhere", 0)]
        assert rec.sync([done(c, 2.0)], [c])[0].value == 2.0

    def test_a_done_trial_is_never_overwritten(
        self, make_recorder: MakeRecorder
    ) -> None:
        rec = make_recorder(retry_failed=True)
        c = claim(a=1)
        rec.sync([], [c])
        rec.sync([done(c, 0.5, n=1)], [])
        rec.sync([failed(c)], [])
        rec.sync([done(c, 9.0, n=2)], [])
        decision = rec.sync([], [c])[0]
        assert (decision.kind, decision.number) == ("done", 0)
        assert (decision.value, decision.aux) == (0.5, {"n": 1})

    def test_release_puts_running_trials_back(
        self, make_recorder: MakeRecorder
    ) -> None:
        rec = make_recorder()
        running, finished = claim(a=1), claim(a=2)
        rec.sync([], [running, finished])
        rec.sync([done(finished, 1.0)], [])
        rec.release()
        decisions = rec.sync([], [running, finished])
        assert kinds(decisions) == [("evaluate", 0), ("done", 1)]
        # a result arriving after the release is still recorded
        rec.release()
        rec.sync([done(running, 3.0)], [])
        assert rec.sync([], [running])[0].value == 3.0

    def test_a_claim_of_a_trial_this_recorder_holds_is_elsewhere(
        self, make_recorder: MakeRecorder
    ) -> None:
        rec = make_recorder()
        c = claim(a=1)
        assert kinds(rec.sync([], [c])) == [("evaluate", 0)]
        rec.heartbeat()
        assert kinds(rec.sync([], [c])) == [("elsewhere", 0)]
        assert kinds(rec.sync([], [c, claim(a=2)])) == [
            ("elsewhere", 0),
            ("evaluate", 1),
        ]

    def test_many_claims_and_outcomes_in_one_call(
        self, make_recorder: MakeRecorder
    ) -> None:
        rec = make_recorder()
        claims = [claim(i=i) for i in range(1500)]  # over the store's IN chunk
        assert [d.number for d in rec.sync([], claims)] == list(range(1500))
        outcomes = [done(c, float(i)) for i, c in enumerate(claims)]
        again = rec.sync(outcomes, claims)
        assert {d.kind for d in again} == {DecisionKind.DONE}
        assert [d.value for d in again] == [float(i) for i in range(1500)]

    def test_an_outcome_never_claimed_is_refused_and_nothing_written(
        self, make_recorder: MakeRecorder
    ) -> None:
        rec = make_recorder()
        c, stray = claim(a=1), claim(a=99)
        rec.sync([], [c])
        with pytest.raises(ValueError, match=r"1 parameter set\(s\) never claimed"):
            rec.sync([done(c, 1.0), done(stray, 2.0)], [claim(a=2)])
        # the whole call was refused: c is still held, a=2 never numbered
        assert kinds(rec.sync([], [c, claim(a=2)])) == [
            ("elsewhere", 0),
            ("evaluate", 1),
        ]

    def test_reported_values_keep_the_first_value_of_each_step(
        self, make_recorder: MakeRecorder
    ) -> None:
        rec = make_recorder()
        assert rec.read_values() == []
        rec.add_values([(0, 0, 3.0, 10.0), (0, 1, 2.0, 11.0), (1, 0, 5.0, 12.0)])
        # a re-run after a lost worker reports its steps again: they count once
        rec.add_values([(0, 0, 9.0, 20.0), (0, 1, 9.0, 21.0), (0, 2, 1.0, 22.0)])
        rec.add_values([])
        assert rec.read_values() == [
            (0, 0, 3.0, 10.0),
            (0, 1, 2.0, 11.0),
            (1, 0, 5.0, 12.0),
            (0, 2, 1.0, 22.0),
        ]


def test_a_recorder_that_says_nothing_takes_the_declared_defaults():
    class Quiet(Recorder):
        pass

    assert Quiet().reuse_burst == REUSE_BURST == MemoryRecorder().reuse_burst
