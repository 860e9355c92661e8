"""dasktune.optuna_storage: a store read by Optuna as one of its own storages.

The read-side expectations are ported from Optuna's storage suite
(``optuna/testing/pytest_storages.py``): unknown ids raise ``KeyError``,
``get_all_trials`` filters by state and copies on request, ``get_best_trial``
raises ``ValueError`` before a completed trial and ``RuntimeError`` for several
objectives; the trials themselves must equal what ``dasktune export`` writes
into Optuna's own in-memory storage.
"""

from __future__ import annotations

import hashlib

import optuna
import pytest
from optuna.study import StudyDirection
from optuna.trial import TrialState

import dasktune
from dasktune.exceptions import StoreError
from dasktune.export import to_optuna
from dasktune.records import Claim, Outcome, TrialStatus, canonical
from dasktune.space import Categorical, Float, Int, Space
from dasktune.store.sql import TrialStore

SPACE = Space({"x": Float(-1.0, 1.0), "n": Int(1, 4), "kind": Categorical(["a", "b"])})


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{tmp_path}/store.db"


def claims_of(points):
    return [Claim(*reversed(canonical(p))) for p in points]


def fill(store):
    """A search with a trial in every status and reported values, and a
    search of two objectives; returns their ids."""
    sid = store.open_search(
        "one", space=SPACE.to_json(), direction="minimize", metadata={"seed": 3}
    )
    driver = store.register_driver(sid)
    points = [{"x": x / 10, "n": 2, "kind": "a"} for x in range(6)]
    claims = claims_of(points)
    numbers = [d.number for d in store.sync(sid, driver, [], claims)]
    store.add_values(sid, [(numbers[0], 0, 0.9, 1.0), (numbers[0], 1, 0.5, 2.0),
                           (numbers[1], 0, 3.0, 1.0), (numbers[4], 0, 7.0, 1.0)])  # fmt: skip
    store.sync(
        sid,
        driver,
        [
            Outcome(
                claims[0].param_hash,
                TrialStatus.DONE,
                value=0.5,
                started=10.0,
                finished=12.0,
                duration=2.0,
                worker="w1",
            ),
            Outcome(
                claims[1].param_hash,
                TrialStatus.PRUNED,
                value=3.0,
                started=10.0,
                finished=11.0,
            ),
            Outcome(claims[2].param_hash, TrialStatus.FAILED, error="ValueError: no", finished=13.0),
            Outcome(claims[3].param_hash, TrialStatus.DONE, value=-0.25, aux={"a": 1}, finished=14.0),
        ],
        [],
    )  # fmt: skip
    store.release(sid, driver)  # running trials go back to queued: WAITING
    driver = store.register_driver(sid)
    store.sync(sid, driver, [], claims[4:5])  # taken again: RUNNING
    two = store.open_search(
        "two",
        space=SPACE.to_json(),
        direction="minimize",
        directions=["minimize", "maximize"],
        metadata={},
    )
    driver = store.register_driver(two)
    claims = claims_of(points[:3])
    store.sync(two, driver, [], claims)
    store.sync(two, driver, [
        Outcome(c.param_hash, TrialStatus.DONE, value=float(i), values=(float(i), -i),
                finished=20.0)
        for i, c in enumerate(claims)
    ], [])  # fmt: skip
    return sid, two


def comparable(trial):
    """A trial without what two storages number or stamp differently."""
    out = {k: v for k, v in trial.__dict__.items() if k != "_trial_id"}
    if trial.state == TrialState.RUNNING:
        out.pop("_datetime_start", None)  # no start recorded: each stamps its own
    return out


def test_trials_equal_what_export_writes_into_optunas_storage(url):
    store = TrialStore(url)
    sid, two = fill(store)
    storage = dasktune.optuna_storage(store)
    for name, study_id in (("one", sid), ("two", two)):
        copied = to_optuna(store, name, optuna.storages.InMemoryStorage())
        live = optuna.load_study(study_name=name, storage=storage)
        assert [comparable(t) for t in live.trials] == [
            comparable(t) for t in copied.trials
        ]
        assert live.directions == copied.directions
        assert live.user_attrs == copied.user_attrs
        assert storage.get_study_id_from_name(name) == study_id
        assert storage.get_study_name_from_id(study_id) == name
    states = [t.state for t in storage.get_all_trials(sid)]
    assert states == [
        TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL,
        TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING,
    ]  # fmt: skip
    first, pruned = storage.get_all_trials(sid)[:2]
    assert first.intermediate_values == {0: 0.9, 1: 0.5}
    assert pruned.intermediate_values == {0: 3.0} and pruned.value == 3.0
    assert storage.get_all_trials(two)[2].values == [2.0, -2.0]
    store.close()


def test_read_side_of_optunas_storage_suite(url):
    store = TrialStore(url)
    sid, two = fill(store)
    storage = dasktune.optuna_storage(url)  # a URL: opened read-only
    studies = storage.get_all_studies()
    assert [(s.study_name, s._study_id) for s in studies] == [
        ("one", sid),
        ("two", two),
    ]
    assert studies[1].directions == [StudyDirection.MINIMIZE, StudyDirection.MAXIMIZE]
    assert studies[0].user_attrs == {
        "dasktune_search": "one",
        "dasktune_metadata": {"seed": 3},
    }
    unknown = max(sid, two) + 1
    for call in (
        lambda: storage.get_study_id_from_name("dummy-name"),
        lambda: storage.get_study_name_from_id(unknown),
        lambda: storage.get_all_trials(unknown),
        lambda: storage.get_n_trials(unknown),
        lambda: storage.get_best_trial(unknown),
        lambda: storage.get_trial_id_from_study_id_trial_number(sid, 99),
        lambda: storage.get_trial_id_from_study_id_trial_number(unknown, 0),
    ):
        with pytest.raises(KeyError):
            call()
    trials = storage.get_all_trials(sid)
    ids = [t._trial_id for t in trials]
    assert len(set(ids + [t._trial_id for t in storage.get_all_trials(two)])) == 9
    for trial in trials:
        assert storage.get_trial(trial._trial_id) == trial
        assert storage.get_trial_number_from_id(trial._trial_id) == trial.number
        assert (
            storage.get_trial_id_from_study_id_trial_number(sid, trial.number)
            == trial._trial_id
        )
        assert storage.get_trial_params(trial._trial_id) == trial.params
        assert storage.get_trial_user_attrs(trial._trial_id) == trial.user_attrs
    with pytest.raises(KeyError):
        storage.get_trial(max(ids) + 1)
    # states
    assert storage.get_n_trials(sid) == 6
    assert storage.get_n_trials(sid, TrialState.COMPLETE) == 2
    assert storage.get_n_trials(sid, TrialState.PRUNED) == 1
    assert storage.get_all_trials(sid, states=()) == []
    assert {t.state for t in storage.get_all_trials(
        sid, states=(TrialState.COMPLETE, TrialState.PRUNED))
    } == {TrialState.COMPLETE, TrialState.PRUNED}  # fmt: skip
    # a copy on request: changing it changes nothing kept
    copied = storage.get_all_trials(sid, deepcopy=True)
    copied[0].params["x"] = 0.7
    assert storage.get_all_trials(sid, deepcopy=False)[0].params["x"] == 0.0
    # the best trial
    assert storage.get_best_trial(sid).value == -0.25
    with pytest.raises(RuntimeError):
        storage.get_best_trial(two)
    empty = store.open_search("empty", space=None, direction="maximize", metadata={})
    with pytest.raises(ValueError, match="No trials are completed"):
        storage.get_best_trial(empty)
    storage.close()
    store.close()


def test_every_write_is_refused_and_the_store_is_untouched(tmp_path):
    path = tmp_path / "store.db"
    store = TrialStore(path)
    sid, _ = fill(store)
    store.close()
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
              for p in tmp_path.iterdir()}  # fmt: skip
    storage = dasktune.optuna_storage(path)  # a path, as a user types it
    trial_id = storage.get_all_trials(sid)[4]._trial_id  # a running one
    dist = optuna.distributions.FloatDistribution(0, 1)
    writes = [
        lambda: storage.create_new_study([StudyDirection.MINIMIZE], "new"),
        lambda: storage.delete_study(sid),
        lambda: storage.set_study_user_attr(sid, "k", 1),
        lambda: storage.set_study_system_attr(sid, "k", 1),
        lambda: storage.create_new_trial(sid),
        lambda: storage.set_trial_param(trial_id, "x", 0.5, dist),
        lambda: storage.set_trial_state_values(trial_id, TrialState.COMPLETE, [1.0]),
        lambda: storage.set_trial_intermediate_value(trial_id, 3, 1.0),
        lambda: storage.set_trial_user_attr(trial_id, "k", 1),
        lambda: storage.set_trial_system_attr(trial_id, "k", 1),
    ]
    for write in writes:
        with pytest.raises(StoreError, match="read-only: dasktune's store is written"):
            write()
    study = optuna.load_study(study_name="one", storage=storage)
    with pytest.raises(StoreError, match="read-only"):
        study.optimize(lambda trial: 0.0, n_trials=1)
    with pytest.raises(StoreError, match="setting a user attribute"):
        study.set_user_attr("note", "x")
    storage.close()
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
             for p in tmp_path.iterdir()}  # fmt: skip
    assert after == before


def test_new_trials_and_searches_appear_without_a_copy(url):
    store = TrialStore(url)
    sid = store.open_search("live", space=SPACE.to_json(), direction="minimize",
                            metadata={})  # fmt: skip
    storage = dasktune.optuna_storage(store)
    study = optuna.load_study(study_name="live", storage=storage)
    assert study.trials == []
    driver = store.register_driver(sid)
    claims = claims_of(
        [{"x": 0.1, "n": 1, "kind": "b"}, {"x": 0.2, "n": 1, "kind": "b"}]
    )
    numbers = [d.number for d in store.sync(sid, driver, [], claims)]
    assert [t.state for t in study.trials] == [TrialState.RUNNING] * 2
    kept = storage.get_all_trials(sid, deepcopy=False)
    store.add_values(sid, [(numbers[1], 0, 4.0, 1.0)])
    assert study.trials[1].intermediate_values == {0: 4.0}  # a running curve
    store.add_values(sid, [(numbers[1], 1, 3.0, 2.0)])
    store.sync(
        sid, driver, [Outcome(claims[0].param_hash, TrialStatus.DONE, value=1.5)], []
    )
    now = storage.get_all_trials(sid, deepcopy=False)
    assert now[0].state == TrialState.COMPLETE and now[0].value == 1.5
    assert now[1].intermediate_values == {0: 4.0, 1: 3.0}
    assert kept[0].state == TrialState.RUNNING  # what was handed out is not changed
    store.sync(
        sid, driver, [Outcome(claims[1].param_hash, TrialStatus.PRUNED, value=3.0)], []
    )
    final = storage.get_all_trials(sid, deepcopy=False)
    # read again: nothing changed, nothing converted again
    assert all(
        a is b
        for a, b in zip(final, storage.get_all_trials(sid, deepcopy=False), strict=True)
    )
    assert study.best_value == 1.5
    store.open_search("later", space=None, direction="minimize", metadata={})
    assert [s.study_name for s in storage.get_all_studies()] == ["live", "later"]
    store.close()


def test_a_grid_without_a_space_gets_distributions_from_the_values_seen(tmp_path):
    store = TrialStore(tmp_path / "g.db")
    sid = store.open_search("grid", space=None, direction="minimize", metadata={})
    driver = store.register_driver(sid)
    storage = dasktune.optuna_storage(store)
    first = claims_of([{"C": 0.5}, {"C": 1.5}])
    store.sync(sid, driver, [], first)
    dist = storage.get_all_trials(sid)[0].distributions["C"]
    assert (dist.low, dist.high) == (0.5, 1.5)
    store.sync(sid, driver, [], claims_of([{"C": 9.0}]))
    # every trial's range widens with it: Optuna's search space stays one
    assert {t.distributions["C"].high for t in storage.get_all_trials(sid)} == {9.0}
    store.close()


def test_a_value_outside_the_searchs_space_is_kept_beside_it(tmp_path):
    store = TrialStore(tmp_path / "o.db")
    sid = store.open_search("o", space=SPACE.to_json(), direction="minimize",
                            metadata={})  # fmt: skip
    driver = store.register_driver(sid)
    store.sync(sid, driver, [], claims_of([{"x": 5.0, "n": 1, "kind": "a"}]))
    (trial,) = dasktune.optuna_storage(store).get_all_trials(sid)
    assert trial.params == {"n": 1, "kind": "a"}
    assert trial.user_attrs["params_outside_space"] == {"x": 5.0}
    store.close()


def test_bad_stores_are_one_clear_error(tmp_path):
    with pytest.raises(StoreError, match="no store at|unable to open"):
        dasktune.optuna_storage(tmp_path / "missing.db")


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_the_best_trial_is_optunas_as_trials_arrive(tmp_path, direction):
    # kept as trials arrive (the dashboard asks at every poll): always the one
    # Optuna's own method finds over every trial, ties to the lowest number
    store = TrialStore(tmp_path / "b.db")
    sid = store.open_search("b", space=None, direction=direction, metadata={})
    driver = store.register_driver(sid)
    storage = dasktune.optuna_storage(store)
    with pytest.raises(ValueError, match="No trials are completed yet"):
        storage.get_best_trial(sid)
    values = [3.0, 1.0, 5.0, 1.0, 5.0, -2.0, 7.0, -2.0]
    for i, value in enumerate(values):
        (claim,) = claims_of([{"x": i}])
        store.sync(sid, driver, [], [claim])
        status = TrialStatus.PRUNED if i == 6 else TrialStatus.DONE  # not COMPLETE
        store.sync(sid, driver, [Outcome(claim.param_hash, status, value=value)], [])
        mine = storage.get_best_trial(sid)
        theirs = optuna.storages.BaseStorage.get_best_trial(storage, sid)
        assert mine is theirs, (i, mine.number, theirs.number)
    assert mine.number == (5 if direction == "minimize" else 2)
    store.close()
