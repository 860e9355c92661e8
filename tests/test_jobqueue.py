"""dask-jobqueue clusters built from configuration: resources and lifetimes."""

from __future__ import annotations

import dask
import pytest

from dasktune.cli import JOBQUEUE_CLUSTERS, jobqueue_cluster

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
