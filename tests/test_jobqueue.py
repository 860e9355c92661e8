"""dask-jobqueue clusters built from configuration: resources and lifetimes."""

from __future__ import annotations

import os
import subprocess
import sys

import dask
import pytest
import yaml

from dasktune.cli import JOBQUEUE_CLUSTERS, jobqueue_cluster, main

pytest.importorskip("dask_jobqueue")


@pytest.fixture(autouse=True)
def _jobqueue_defaults():
    # distributed's test fixtures restore a configuration saved before
    # dask_jobqueue added its defaults; put them back
    import importlib

    import dask_jobqueue.config

    importlib.reload(dask_jobqueue.config)


# what the README recommends: workers leave before the batch system kills them
LIFETIME = ["--lifetime", "55m", "--lifetime-stagger", "4m"]


def config(kind: str) -> dict:
    common = {
        "cores": 8,
        "memory": "16GiB",
        "processes": 2,
        "walltime": "01:00:00",
        "worker-extra-args": LIFETIME,
        "scheduler-options": {"dashboard_address": ":0", "host": "127.0.0.1"},
        "interface": None,
    }
    if kind == "htcondor":
        common["disk"] = "1GiB"
        common.pop("walltime")
    if kind == "lsf":
        common["use-stdin"] = True
    return {f"jobqueue.{kind}.{key}": value for key, value in common.items()}


@pytest.mark.parametrize("kind", sorted(JOBQUEUE_CLUSTERS))
def test_job_script_from_configuration(kind):
    with dask.config.set(config(kind)):
        cluster = jobqueue_cluster(kind, jobs=0)
        try:
            script = cluster.job_script()
        finally:
            cluster.close()
    for option in LIFETIME:
        assert option in script
    assert "--nworkers 2" in script and "--nthreads 4" in script
    assert any(
        memory in script
        for memory in ("16GiB", "8.00GiB", "16G", "15.99GiB", "17179869184", "8.59GB")
    )


# -- a batch system that never starts workers ------------------------------------

SEARCH = "source = [{'x': 1}]\n\n\ndef objective(params):\n    return params['x']\n"


def _fake_command(directory, name, body):
    path = directory / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """``sbatch``/``squeue``/``scancel`` on PATH; the test writes sbatch's body."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_command(bin_dir, "scancel", "exit 0")
    _fake_command(bin_dir, "squeue", "exit 0")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    (tmp_path / "search.py").write_text(SEARCH)
    return bin_dir


def _run_on_slurm(tmp_path, *extra):
    code = main(["run", str(tmp_path / "search.py"), "--store",
                 str(tmp_path / "jq.db"), "--cluster", "slurm", *extra])  # fmt: skip
    # closed once, for good: distributed's atexit hook (close_clusters) has
    # nothing left to close again (a cluster left "closing" cost 10 s at exit)
    from distributed.core import Status
    from distributed.deploy.spec import SpecCluster

    assert all(c.status == Status.closed for c in SpecCluster._instances)
    return code


def test_a_refused_submission_is_shown_and_exits_1(tmp_path, fake_slurm, capsys):
    _fake_command(fake_slurm, "sbatch",
                  "echo 'sbatch: error: Invalid partition name specified' >&2; exit 1")  # fmt: skip
    with dask.config.set(config("slurm")):
        assert _run_on_slurm(tmp_path, "--worker-timeout", "60") == 1
    err = capsys.readouterr().err
    assert "the batch system refused the slurm jobs" in err
    assert "sbatch: error: Invalid partition name specified" in err


def test_a_refused_submission_is_one_message_in_a_terminal(tmp_path, fake_slurm):
    # as a user runs it, in its own process: tornado's traceback of the
    # background submission is not printed before the message
    _fake_command(fake_slurm, "sbatch",
                  "echo 'sbatch: error: Invalid partition name specified' >&2; exit 1")  # fmt: skip
    (tmp_path / "config").mkdir()
    settings = {"jobqueue": {"slurm": {key.split(".")[-1]: value
                for key, value in config("slurm").items()}}}  # fmt: skip
    (tmp_path / "config" / "jobqueue.yaml").write_text(yaml.safe_dump(settings))
    done = subprocess.run(
        [sys.executable, "-m", "dasktune", "run", str(tmp_path / "search.py"),
         "--store", str(tmp_path / "jq.db"), "--cluster", "slurm"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "DASK_CONFIG": str(tmp_path / "config")},
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith("dasktune: error: the batch system refused")
    assert done.stderr.count("Invalid partition name specified") == 1


def test_jobs_that_never_start_time_out(tmp_path, fake_slurm, capsys):
    _fake_command(fake_slurm, "sbatch", "echo 'Submitted batch job 42'")
    with dask.config.set(config("slurm")):
        assert _run_on_slurm(tmp_path, "--worker-timeout", "2") == 1
    err = capsys.readouterr().err
    assert "no worker joined the slurm jobs within 2 s (--worker-timeout)" in err


def test_a_configuration_error_is_shown_whole(tmp_path, fake_slurm, capsys):
    incomplete = {k: v for k, v in config("slurm").items() if not k.endswith("cores")}
    with dask.config.set({**incomplete, "jobqueue.slurm.cores": None}):
        assert _run_on_slurm(tmp_path) == 1
    err = capsys.readouterr().err
    assert "cannot build a slurm cluster from your configuration" in err
    assert "You must specify how much cores and memory" in err
    assert "cluster = SLURMCluster(cores=" in err  # the example, on its own line


# -- what a --cluster scheduler exposes ------------------------------------------


def test_a_configuration_naming_no_interface_is_refused(tmp_path, fake_slurm, capsys):
    # dask-jobqueue would listen on 0.0.0.0: refused, saying what to set
    _fake_command(fake_slurm, "sbatch", "echo 'Submitted batch job 42'")
    unnamed = {**config("slurm"), "jobqueue.slurm.scheduler-options": {}}
    with dask.config.set(unnamed):
        assert _run_on_slurm(tmp_path) == 1
    err = capsys.readouterr().err
    assert "names no network interface for the scheduler" in err
    assert "(0.0.0.0)" in err and "jobqueue.slurm.interface" in err


def _listening(cluster) -> set[str]:
    """The hosts the scheduler and its dashboard listen on."""
    scheduler = cluster.scheduler
    hosts = {listener.get_host_port()[0] for listener in scheduler.listeners}
    http = scheduler.http_server
    hosts |= {sock.getsockname()[0] for sock in http._sockets.values()}
    return hosts


def test_the_scheduler_and_its_dashboard_listen_on_the_named_interface():
    named = {**config("slurm"), "jobqueue.slurm.scheduler-options": {},
             "jobqueue.slurm.interface": "lo"}  # fmt: skip
    with dask.config.set(named):
        cluster = jobqueue_cluster("slurm", jobs=0)
        try:
            assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
            assert _listening(cluster) == {"127.0.0.1"}
        finally:
            cluster.close()


def test_tls_with_a_cluster_reaches_its_workers(tmp_path, monkeypatch, capsys):
    # dask-jobqueue's LocalCluster runs each job as a local process: a
    # jobqueue cluster that needs no batch system
    import dask_jobqueue
    from dask_jobqueue.local import LocalCluster

    from tests.deploy import write_certificates

    monkeypatch.setitem(JOBQUEUE_CLUSTERS, "local", "LocalCluster")
    monkeypatch.setattr(dask_jobqueue, "LocalCluster", LocalCluster, raising=False)
    (tmp_path / "search.py").write_text(SEARCH)
    certs = write_certificates(tmp_path)
    local = {"jobqueue.local.cores": 1, "jobqueue.local.memory": "1GiB",
             "jobqueue.local.processes": 1, "jobqueue.local.interface": "lo",
             "jobqueue.local.scheduler-options": {"dashboard_address": ":0"}}  # fmt: skip
    flags = [item for pair in certs.items() for item in pair]
    with dask.config.set(local):
        code = main(["run", str(tmp_path / "search.py"), "--store",
                     str(tmp_path / "tls.db"), "--cluster", "local",
                     "--worker-timeout", "120", *flags])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "scheduler: tls://127.0.0.1:" in out and "(TLS)" in out
    assert "1 evaluated" in out


def test_tls_with_a_cluster_needs_all_three_files(tmp_path, capsys):
    (tmp_path / "search.py").write_text(SEARCH)
    ca = tmp_path / "ca.pem"
    ca.write_text("")
    with dask.config.set(config("slurm")):
        assert _run_on_slurm(tmp_path, "--tls-ca-file", str(ca)) == 1
    assert "--cluster with TLS needs --tls-ca-file, --tls-cert and --tls-key" in (
        capsys.readouterr().err
    )


def test_a_submit_command_that_hangs_is_given_up(
    tmp_path, fake_slurm, capsys, monkeypatch
):
    import dasktune.cli

    monkeypatch.setattr(dasktune.cli, "_SUBMIT_SECONDS", 1.0)
    _fake_command(fake_slurm, "sbatch", "sleep 30; echo 'Submitted batch job 42'")
    with dask.config.set(config("slurm")):
        # not _run_on_slurm: the cluster cannot be closed for good while the
        # hung sbatch still runs (its job's start is still pending)
        code = main(["run", str(tmp_path / "search.py"), "--store",
                     str(tmp_path / "jq.db"), "--cluster", "slurm",
                     "--worker-timeout", "60"])  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert "the batch system did not take the slurm jobs within 1 s" in err


def _sigint_after(statement: str) -> str:
    """The SIGINT handler's name after ``statement``, in a fresh interpreter."""
    code = f"import signal\n{statement}\nprint(signal.getsignal(signal.SIGINT))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=120,
                          cwd=os.path.dirname(os.path.dirname(__file__)))  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_importing_dask_jobqueue_leaves_ctrl_c_a_keyboard_interrupt():
    # dask_jobqueue's runner module sets SIGINT to sys.exit() when imported:
    # dasktune run --cluster then ended on Ctrl-C with status 0, silently
    assert "lambda" in _sigint_after("import dask_jobqueue")
    kept = _sigint_after(
        "from dasktune.cli import _import_jobqueue\n_import_jobqueue()"
    )
    assert "default_int_handler" in kept
