"""Objective names (``Search(metric_names=...)``) and pruned trials, everywhere a
user reads a search: the Search itself, ``dasktune show``, plots, export and
the read-only Optuna storage."""

from __future__ import annotations

import asyncio
import json
import tempfile

import optuna
import pytest
from distributed.utils_test import gen_cluster

import dasktune
from dasktune import Search, SearchMismatchError
from dasktune.cli import main
from dasktune.export import to_optuna
from dasktune.records import Claim, Outcome, TrialStatus, canonical
from dasktune.store.sql import TrialStore


def two(params):
    """Module level, so that it pickles to the workers."""
    return (params["x"] ** 2, -params["x"])


@gen_cluster(client=True, timeout=60)
async def test_metric_names_reach_plot_export_and_optuna(c, s, a, b):
    with tempfile.TemporaryDirectory() as tmp:
        await _named(c, f"sqlite:///{tmp}/m.db")


async def _named(c, url):
    search = Search("named", two, url, client=c, directions=["minimize", "maximize"],
                    metric_names=["error", "speed"])  # fmt: skip
    await asyncio.to_thread(
        search.run, [{"x": x} for x in (0.5, 1.0, 2.0)], progress=False
    )
    assert search.metric_names == ["error", "speed"]
    fig = await asyncio.to_thread(search.plot)
    labels = {ax.get_xlabel() for ax in fig.axes} | {ax.get_ylabel() for ax in fig.axes}
    assert {"error (minimize)", "speed (maximize)"} <= labels
    search.close()
    # re-opened without them: the stored ones; with others: refused
    again = Search("named", two, url, client=c)
    assert again.metric_names == ["error", "speed"]
    again.close()
    with pytest.raises(SearchMismatchError, match=r"has the metric names \['error'"):
        Search("named", two, url, client=c, metric_names=["a", "b"])
    storage = dasktune.optuna_storage(url)
    study = optuna.load_study(study_name="named", storage=storage)
    assert study.metric_names == ["error", "speed"]
    storage.close()
    copied = to_optuna(url, "named", optuna.storages.InMemoryStorage())
    assert copied.metric_names == ["error", "speed"]


def test_show_heads_its_columns_with_the_names_and_counts_pruned(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/p.db"
    store = TrialStore(url)
    sid = store.open_search(
        "pruning", space=None, direction="minimize",
        metadata={"metric_names": ["loss"]},
    )  # fmt: skip
    driver = store.register_driver(sid)
    claims = [Claim(*reversed(canonical({"x": x}))) for x in (0.1, 0.2, 0.3)]
    store.sync(sid, driver, [], claims)
    store.sync(sid, driver, [
        Outcome(claims[0].param_hash, TrialStatus.DONE, value=0.5),
        Outcome(claims[1].param_hash, TrialStatus.PRUNED, value=2.0),
        Outcome(claims[2].param_hash, TrialStatus.PRUNED, value=3.0),
    ], [])  # fmt: skip
    store.close()
    assert main(["show", url, "--format", "json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert (listed["done"], listed["pruned"]) == (1, 2)
    assert main(["show", url]) == 0
    assert "pruned" in capsys.readouterr().out.splitlines()[0]
    assert main(["show", url, "--name", "pruning"]) == 0
    out = capsys.readouterr().out
    assert "3 trials, 1 done, 2 pruned" in out
    assert main(["show", url, "--name", "pruning", "--status", "pruned",
                 "--format", "json"]) == 0  # fmt: skip
    rows = json.loads(capsys.readouterr().out)
    assert [(r["number"], r["loss"]) for r in rows] == [(2, 3.0), (1, 2.0)]


def test_bad_metric_names_are_refused_before_anything_is_stored(tmp_path):
    url = f"sqlite:///{tmp_path}/b.db"
    for bad, error, match in (
        (["a"], ValueError, r"2 distinct non-empty strings, one per objective"),
        (["a", "a"], ValueError, "distinct"),
        (["a", ""], ValueError, "non-empty"),
        ("ab", TypeError, "a list of strings"),
    ):
        with pytest.raises(error, match=match):
            Search("bad", two, url, directions=["minimize", "minimize"],
                   metric_names=bad)  # fmt: skip
    store = TrialStore(url)
    assert store.list_searches() == []
    store.close()
