"""dasktune export: a search as an Optuna study, read by Optuna itself."""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from pathlib import Path

import optuna
import pytest
from distributed.utils_test import gen_cluster

from dasktune import Bool, Categorical, DasktuneError, Float, Int, Search
from dasktune.cli import main
from dasktune.export import to_optuna
from dasktune.records import Claim, Outcome, TrialStatus, canonical
from dasktune.space import Space
from dasktune.store.sql import TrialStore

SPACE = {
    "x": Float(-2.0, 2.0),
    "lr": Float(1e-3, 1.0, log=True),
    "depth": Int(1, 4),
    "kind": Categorical(["a", "b"]),
    "flag": Bool(),
}


def loss(params):
    """Module level, so that it pickles to the workers."""
    if params["kind"] == "b" and params["flag"]:
        raise ValueError("b with flag diverged")
    return {"loss": params["x"] ** 2 + params["depth"], "note": "kept"}


def journal(path):
    backend = optuna.storages.journal.JournalFileBackend(str(path))
    return optuna.storages.JournalStorage(backend)


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@gen_cluster(client=True, timeout=60)
async def test_export_to_a_journal_reads_back_in_optuna(c, s, a, b):
    with tempfile.TemporaryDirectory() as tmp:
        await _export_and_read_back(c, Path(tmp))


async def _export_and_read_back(c, tmp):
    db = tmp / "store.db"
    url = f"sqlite:///{db}"
    search = Search("spaced", loss, url, client=c, space=SPACE, direction="maximize")
    await asyncio.to_thread(search.run, n_trials=30, seed=0, progress=False)
    grid = Search("grid", loss, url, client=c)
    points = [{"x": x, "lr": 0.1, "depth": 2, "kind": k, "flag": False}
              for x in (-1.0, 0.5, 2.0) for k in ("a", "b")]  # fmt: skip
    await asyncio.to_thread(grid.run, points, progress=False)
    frame = search.trials()
    search.close()
    grid.close()
    before = digest(db)

    log = tmp / "spaced.log"
    code = await asyncio.to_thread(
        main,
        [
            "export",
            str(db),
            "--name",
            "spaced",
            "--to",
            "optuna-journal",
            str(log),
        ],
    )
    assert code == 0
    assert digest(db) == before  # read-only on the dasktune store
    study = optuna.load_study(study_name="spaced", storage=journal(log))
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    assert len(study.trials) == len(frame) == 30
    by_number = {t.user_attrs["dasktune_number"]: t for t in study.trials}
    for row in frame.itertuples():
        trial = by_number[row.number]
        assert trial.params == {n: getattr(row, n) for n in SPACE}
        if row.status == "done":
            assert trial.state == optuna.trial.TrialState.COMPLETE
            assert trial.value == row.value
            assert trial.user_attrs["aux"] == {"note": "kept"}
        else:
            assert trial.state == optuna.trial.TrialState.FAIL
            assert "diverged" in trial.user_attrs["error"]
    assert (frame["status"] == "failed").any()
    assert study.best_value == frame["value"].max()
    assert isinstance(
        study.trials[0].distributions["lr"], optuna.distributions.FloatDistribution
    )
    assert study.trials[0].distributions["lr"].log
    # Optuna's own analysis runs on it
    assert set(optuna.importance.get_param_importances(study)) == set(SPACE)

    # a search without a space: distributions from the values seen
    target = f"sqlite:///{tmp / 'optuna.db'}"
    study = await asyncio.to_thread(to_optuna, url, "grid", target)
    loaded = optuna.load_study(study_name="grid", storage=target)
    assert len(loaded.trials) == 6
    dist = loaded.trials[0].distributions
    assert dist["x"] == optuna.distributions.FloatDistribution(-1.0, 2.0)
    assert dist["kind"] == optuna.distributions.CategoricalDistribution(["a", "b"])
    assert sorted(t.params["x"] for t in loaded.trials) == [-1, -1, 0.5, 0.5, 2, 2]

    # never mixed into an existing study; unknown names listed
    with pytest.raises(DasktuneError, match="already has a study named 'grid'"):
        await asyncio.to_thread(to_optuna, url, "grid", target)
    with pytest.raises(DasktuneError, match=r"no search named 'nope'.*'grid'"):
        await asyncio.to_thread(to_optuna, url, "nope", target)


def test_export_errors_are_one_line(tmp_path, capsys):
    assert main(["export", str(tmp_path / "none.db"), "--name", "x", "--to",
                 "optuna-journal", str(tmp_path / "x.log")]) == 1  # fmt: skip
    assert "no store at" in capsys.readouterr().err
    assert main(["export", "sqlite://", "--name", "x", "--to", "csv",
                 "out.csv"]) == 1  # fmt: skip
    assert "--to takes one of ['optuna-journal', 'optuna-storage']" in (
        capsys.readouterr().err
    )


def test_export_without_name_takes_the_stores_only_search(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/s.db"
    store = TrialStore(url)
    sid = store.open_search("only", space=None, direction="minimize", metadata={})
    driver = store.register_driver(sid)
    claim = Claim(*reversed(canonical({"x": 0.5})))
    store.sync(sid, driver, [], [claim])
    store.sync(
        sid, driver, [Outcome(claim.param_hash, TrialStatus.DONE, value=1.0)], []
    )
    log = str(tmp_path / "only.log")
    empty = f"sqlite:///{tmp_path}/empty.db"
    TrialStore(empty).close()
    assert main(["export", empty, "--to", "optuna-journal", log]) == 1
    assert "holds no search to export" in capsys.readouterr().err
    assert main(["export", url, "--to", "optuna-journal", log]) == 0
    assert "exported 1 trials of 'only'" in capsys.readouterr().out
    # with two searches, it asks which
    store.open_search("second", space=None, direction="minimize", metadata={})
    store.close()
    assert main(["export", url, "--to", "optuna-journal", log + "2"]) == 1
    assert (
        "holds 2 searches ['only', 'second']: name the one to export with --name"
        in (capsys.readouterr().err)
    )
    assert not os.path.exists(log + "2")


def test_parameters_beside_the_space_are_kept_as_a_user_attribute(tmp_path):
    # LCBSelector records which sampler proposed a trial as "method"
    url = f"sqlite:///{tmp_path}/s.db"
    store = TrialStore(url)
    sid = store.open_search("m", space=Space({"x": Float(-1, 1)}).to_json(),
                            direction="minimize", metadata={})  # fmt: skip
    driver = store.register_driver(sid)
    claim = Claim(*reversed(canonical({"x": 0.5, "method": "tpe"})))
    store.sync(sid, driver, [], [claim])
    store.sync(
        sid, driver, [Outcome(claim.param_hash, TrialStatus.DONE, value=1.0)], []
    )
    (trial,) = to_optuna(store, "m", optuna.storages.InMemoryStorage()).trials
    store.close()
    assert trial.params == {"x": 0.5}
    assert trial.user_attrs["params_outside_space"] == {"method": "tpe"}


def test_a_grid_without_a_space_keeps_its_ints_beside_floats(tmp_path):
    # a space-less grid's [0.1, 1, 10]: 10 and 10.0 are different keys here
    store = TrialStore(f"sqlite:///{tmp_path}/s.db")
    sid = store.open_search("grid", space=None, direction="minimize", metadata={})
    driver = store.register_driver(sid)
    grid = [{"C": c, "gamma": g} for c in (0.1, 1, 10) for g in (0.5, 2.5)]
    claims = [Claim(*reversed(canonical(p))) for p in grid]
    store.sync(sid, driver, [], claims)
    store.sync(sid, driver, [
        Outcome(claim.param_hash, TrialStatus.DONE, value=float(i))
        for i, claim in enumerate(claims)
    ], [])  # fmt: skip
    to_optuna(store, "grid", journal(tmp_path / "grid.log"))  # values round-trip
    store.close()
    study = optuna.load_study(study_name="grid", storage=journal(tmp_path / "grid.log"))
    assert [t.params for t in study.trials] == grid
    assert type(study.trials[-1].params["C"]) is int
    assert isinstance(study.trials[0].distributions["gamma"],
                      optuna.distributions.FloatDistribution)  # fmt: skip


def test_reported_values_become_optunas_intermediate_values(tmp_path):
    # Optuna's test_with_server checks intermediate_values after loading; a
    # pruned trial's curve is why it was pruned
    store = TrialStore(f"sqlite:///{tmp_path}/s.db")
    sid = store.open_search("curves", space=Space({"x": Float(-1, 1)}).to_json(),
                            direction="minimize", metadata={})  # fmt: skip
    driver = store.register_driver(sid)
    claims = [Claim(*reversed(canonical({"x": x}))) for x in (0.1, 0.2, 0.3)]
    decisions = store.sync(sid, driver, [], claims)
    numbers = [d.number for d in decisions]
    store.add_values(sid, [(numbers[0], 0, 0.9, 1.0), (numbers[0], 1, 0.4, 2.0),
                           (numbers[1], 0, 2.5, 1.5)])  # fmt: skip
    store.sync(
        sid, driver,
        [Outcome(claims[0].param_hash, TrialStatus.DONE, value=0.4),
         Outcome(claims[1].param_hash, TrialStatus.PRUNED, value=2.5),
         Outcome(claims[2].param_hash, TrialStatus.DONE, value=0.3)],
        [],
    )  # fmt: skip
    study = to_optuna(store, "curves", optuna.storages.InMemoryStorage())
    store.close()
    curves = {t.number: t.intermediate_values for t in study.trials}
    assert curves == {numbers[0]: {0: 0.9, 1: 0.4}, numbers[1]: {0: 2.5},
                      numbers[2]: {}}  # fmt: skip
    assert study.trials[numbers[1]].state == optuna.trial.TrialState.PRUNED


def test_export_of_a_point_outside_the_space_writes_nothing(tmp_path, capsys):
    # recorded straight into the store, as a dasktune that did not check did
    url = f"sqlite:///{tmp_path}/s.db"
    store = TrialStore(url)
    sid = store.open_search("b", space=Space({"x": Float(-1, 1)}).to_json(),
                            direction="minimize", metadata={})  # fmt: skip
    driver = store.register_driver(sid)
    claims = [Claim(*reversed(canonical({"x": x}))) for x in (0.5, 5.0)]
    store.sync(sid, driver, [], claims)
    store.sync(sid, driver, [Outcome(c.param_hash, TrialStatus.DONE, value=1.0)
                             for c in claims], [])  # fmt: skip
    store.close()
    journal = tmp_path / "b.log"
    argv = ["export", url, "--name", "b", "--to", "optuna-journal", str(journal)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert (
        "trial 1 of 'b' cannot be an Optuna trial" in err and "x=5.0 is not in" in err
    )
    assert "nothing was exported" in err
    assert not journal.exists()  # no half-made study, no empty journal
    # an unknown name makes no journal either
    assert main([*argv[:2], "--name", "nope", *argv[4:]]) == 1
    assert "no search named 'nope'" in capsys.readouterr().err
    assert not journal.exists()


def two_constrained(params):
    """Two objectives and a constraint; pruned when x is large."""
    x = params["x"]
    return (x, -((x - 1) ** 2)), {"constraints": [-x - 1.0]}


@gen_cluster(client=True)
async def test_export_of_several_objectives_and_constraints(c, s, a, b):
    space = {"x": Float(-2.0, 2.0)}
    directions = ["minimize", "maximize"]
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/s.db"
        search = Search(
            "mo", two_constrained, url, client=c, space=space, directions=directions
        )
        grid = [{"x": x} for x in (-1.5, -0.5, 0.0, 0.5, 1.0)]
        await asyncio.to_thread(search.run, grid, progress=False)
        ours = sorted(t.values for t in search.best)
        search.close()
        target = journal(Path(tmp) / "j.log")
        study = await asyncio.to_thread(to_optuna, url, "mo", target)
        loaded = optuna.load_study(study_name="mo", storage=target)
        assert [d.name for d in loaded.directions] == ["MINIMIZE", "MAXIMIZE"]
        assert len(loaded.trials) == 5
        # -1.5 violates x >= -1: Optuna's front leaves it out, as dasktune's does
        theirs = sorted(tuple(t.values) for t in loaded.best_trials)
        assert theirs == ours and (-1.5, -6.25) not in theirs
        assert loaded.trials[0].constraints == {"0": 0.5}
        assert study.study_name == "mo"


def test_inferred_choices_keep_1_and_1_0_apart():
    from dasktune.export import _inferred

    trials = [{"params": {"c": v}} for v in (1, 1.0, 0.5, 1)]
    (dist,) = _inferred(optuna, trials).values()
    assert [(type(v), v) for v in dist.choices] == [(int, 1), (float, 1.0),
                                                    (float, 0.5)]  # fmt: skip
