"""Search.run in the caller's process (dasktune.run.here): a cheap objective
starts no cluster and every trial is recorded as on a cluster; what needs a
worker goes there; an expensive objective moves to the cluster, no trial lost
or run twice."""

from __future__ import annotations

import asyncio
import textwrap
import time

import pytest
from distributed.utils_test import gen_cluster

from dasktune import Float, Search
from dasktune.run.here import HereWindow, runs_here, search_policy
from dasktune.run.policy import ExecutionPolicy
from tests.subprocesses import last_json
from tests.test_local import _group_alive
from tests.waiting import poll_until

SPACE = {"x": Float(0.0, 1.0)}


def cheap(params):
    return (params["x"] - 0.3) ** 2


def reporting(params, trial):
    trial.report(1, params["x"])
    return params["x"]


def policy(**kwargs):
    args = {
        "execution": "auto", "name": "s", "client": None, "resources": None,
        "batch": False, "trial_timeout": None, "reports": False, "n_trials": None,
    }  # fmt: skip
    args.update(kwargs)
    return search_policy(args.pop("execution"), **args)


def test_what_needs_a_worker_sends_a_search_to_the_cluster():
    assert policy().forced is None  # measured: the first trials are timed here
    needs = {
        "resources": ({"resources": {"GPU": 1}}, "only a worker has them"),
        "trial_timeout": ({"trial_timeout": 5.0}, "interrupted on a worker"),
        "batch": ({"batch": True}, "its data lives on workers"),
        "reports": ({"reports": True}, "its reports travel through the cluster"),
        "client": ({"client": "tcp://127.0.0.1:8786"}, "a client given"),
        "tasks": ({"execution": "tasks"}, "execution='tasks' was asked for"),
        "feed": ({"execution": "feed"}, "execution='feed' was asked for"),
    }
    for name, (kwargs, says) in needs.items():
        made = policy(**kwargs)
        assert not runs_here(made), name
        assert made.forced.where == "cluster" and says in made.forced.reason, name
    assert runs_here(policy(execution="local"))
    with pytest.raises(ValueError, match=r"execution='local' cannot run with resou"):
        policy(execution="local", resources={"GPU": 1})


def test_past_its_timeout_a_window_here_runs_nothing_more():
    ran = []
    local = ExecutionPolicy("local", what="t")
    with HereWindow[int](local, name="t", timeout=0.0) as win:
        win.map(ran.append, [1, 2], [1, 2], keys=["a", "b"])
        with pytest.raises(TimeoutError, match="t: the timeout of 0.0 s passed"):
            win.next_batch()
        assert ran == [] and len(win) == 2
    assert len(win) == 0  # left: dropped


def test_a_cheap_search_runs_here_and_records_every_trial(tmp_path):
    from dasktune.run import cluster

    owned = cluster._owned_cluster  # what an earlier test left, if anything
    url = f"sqlite:///{tmp_path}/s.db"
    with Search("cheap", cheap, url, space=SPACE) as search:
        report = search.run(None, n_trials=40, seed=0, progress=False)
        assert (report.evaluated, report.execution) == (40, "local")
        assert "no cluster started" in report.execution_reason
        trials = search.trials()
        assert (trials["status"] == "done").all() and len(trials) == 40
        assert trials["worker"].isna().all()  # none ran on a worker
        # a second run goes on from the store: the same 40 points reused, as
        # on a cluster, and 40 new ones evaluated
        again = search.run(None, n_trials=40, seed=0, progress=False)
        assert (again.evaluated, again.reused, again.execution) == (40, 40, "local")
        assert len(search.trials()) == 80
    assert cluster._owned_cluster is owned  # no LocalCluster started


def test_execution_local_refuses_what_needs_a_worker_before_any_work(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    with Search("r", reporting, url, space=SPACE) as search:
        with pytest.raises(ValueError, match="execution='local' cannot run with an"):
            search.run(None, n_trials=2, seed=0, execution="local")
        with pytest.raises(ValueError, match="execution='local' cannot run with re"):
            search.run(
                None, n_trials=2, seed=0, execution="local", resources={"GPU": 1}
            )
        assert search.trials().empty
    with pytest.raises(ValueError, match="execution must be one of 'auto', 'local'"):
        Search("c", cheap, url, space=SPACE).run(None, n_trials=2, execution="here")


@gen_cluster(client=True)
async def test_a_current_client_runs_the_search_unless_local_is_asked(c, s, a, b):
    search = Search("current", cheap, "sqlite://", space=SPACE)
    # a client current (not given): its cluster runs the search, on its dashboard
    report = await asyncio.to_thread(search.run, None, n_trials=6, seed=0)
    assert report.execution in ("tasks", "feed"), report.execution_reason
    report = await asyncio.to_thread(
        search.run, None, n_trials=6, seed=1, execution="local", progress=False
    )
    assert report.execution == "local", report.execution_reason
    assert "execution='local' was asked for" in report.execution_reason
    trials = await asyncio.to_thread(search.trials)
    search.close()
    assert trials["worker"].notna().sum() == 6 and trials["worker"].isna().sum() == 6


@pytest.mark.timeout(300)  # a cluster of worker processes, on a busy machine
def test_an_expensive_search_moves_to_the_cluster_started_meanwhile(tmp_path):
    # a fresh interpreter: the cluster dasktune starts is its own
    code = textwrap.dedent(
        f"""
        import json, time
        from dasktune import Float, Search

        def slow(params):
            time.sleep(0.05)  # the objective's cost, not a synchronisation
            return params["x"]

        if __name__ == "__main__":
            with Search("slow", slow, "sqlite:///{tmp_path}/m.db",
                        space={{"x": Float(0, 1)}}) as search:
                report = search.run(None, n_trials=120, seed=0, progress=False)
                trials = search.trials()
                print(json.dumps({{
                    "where": report.execution, "reason": report.execution_reason,
                    "evaluated": report.evaluated, "n": len(trials),
                    "numbers": trials["number"].nunique(),
                    "done": int((trials["status"] == "done").sum()),
                    "on_workers": int(trials["worker"].notna().sum()),
                }}))
        """
    )
    seen, pid = last_json(code)
    # every trial once, done, wherever it ran
    assert seen["evaluated"] == seen["n"] == seen["numbers"] == seen["done"] == 120
    assert "took" in seen["reason"], seen
    if seen["where"] == "tasks":  # moved once the cluster was up
        assert (
            "trial(s) ran in the caller's process while the cluster" in (seen["reason"])
        )
        assert 0 < seen["on_workers"] < 120, seen
    else:  # a slow start: the run ended here first
        assert "the run ended in the caller's process" in seen["reason"], seen
    poll_until(lambda: not _group_alive(pid), what="the script's processes to end")


def test_a_cpu_bound_search_does_not_starve_the_cluster_starting(tmp_path):
    """Pure-Python trials hold the GIL: run here while the cluster starts,
    they starved its start and the whole search ran here; the search now
    waits for the start once what it overlaps holds the CPU."""
    code = textwrap.dedent(
        f"""
        import json, time
        from dasktune import Float, Search

        def busy(params):
            end = time.perf_counter() + 0.02  # 20 ms of pure Python: its cost
            while time.perf_counter() < end:
                pass
            return params["x"]

        if __name__ == "__main__":
            with Search("busy", busy, "sqlite:///{tmp_path}/b.db",
                        space={{"x": Float(0, 1)}}) as search:
                report = search.run(None, n_trials=200, seed=0, progress=False)
                trials = search.trials()
                print(json.dumps({{
                    "where": report.execution, "reason": report.execution_reason,
                    "done": int((trials["status"] == "done").sum()),
                    "on_workers": int(trials["worker"].notna().sum()),
                }}))
        """
    )
    seen, pid = last_json(code)
    assert seen["done"] == 200, seen
    assert seen["where"] == "tasks" and seen["on_workers"] > 0, seen
    poll_until(lambda: not _group_alive(pid), what="the script's processes to end")


def napping(params):
    time.sleep(0.02)  # the objective's cost
    return params["x"]


def test_a_run_here_past_its_timeout_puts_back_what_it_claimed(tmp_path):
    url = f"sqlite:///{tmp_path}/t.db"
    with Search("t", napping, url, space=SPACE) as search:
        report = search.run(
            None, n_trials=1000, seed=0, progress=False, timeout=0.2,
            execution="local",
        )  # fmt: skip
        assert (report.stopped, report.execution) == ("timeout", "local")
        statuses = search.trials()["status"]
        # claimed ahead and not run: queued again, for a later run
        assert set(statuses) <= {"done", "queued"}, statuses.value_counts()
        queued = int((statuses == "queued").sum())
        # proposed again (the same seed), they are evaluated, the done reused
        later = search.run(
            None, n_trials=queued, seed=0, progress=False, execution="local"
        )
        assert later.evaluated == queued
        assert (search.trials()["status"] == "done").all()
