"""KilledWorker explained: memory named as the likely cause when the nanny
restarted the worker for its memory limit; async_map names the element."""

from __future__ import annotations

import time

import dask.config
import numpy as np
import pytest
from distributed import Client, LocalCluster
from distributed.scheduler import KilledWorker

from dasktune import Float, Search, async_map
from dasktune.run.lost import memory_note


def hog(x):
    """Use about 600 MB, more than the worker may; hold it until killed."""
    if x == 3:
        block = np.ones(600 * 2**20 // 8)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the nanny kills the worker first
            time.sleep(0.05)
        return float(block[0])
    return float(x)


def hog_params(params):
    return hog(3)


@pytest.fixture
def small_memory_client():
    # one death is the task's last: KilledWorker at once
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        LocalCluster(
            n_workers=1, threads_per_worker=1, memory_limit="400 MiB",
            host="127.0.0.1", dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):  # fmt: skip
        yield client


def _notes(err: BaseException) -> str:
    return "\n".join(getattr(err, "__notes__", ()))


@pytest.mark.timeout(120)
def test_killed_for_memory_says_memory_and_names_the_element(
    small_memory_client, tmp_path
):
    client = small_memory_client
    with pytest.raises(KilledWorker) as info:
        # one thread: the first two finish before the third starts
        async_map(hog, [0, 1, 3], client=client, chunksize=1)
    notes = _notes(info.value)
    assert "async_map: element 2 of args ran on the workers that died" in notes
    assert "memory is the likely cause: the nanny restarted worker" in notes
    assert "for exceeding its memory limit" in notes
    # a Search records it in the failed trial's error
    search = Search(
        "hog", hog_params, store=tmp_path / "hog.db", space={"x": Float(0, 1)},
        client=client,
    )  # fmt: skip
    with pytest.warns(RuntimeWarning, match="every trial"):
        search.run(n_trials=1, seed=0, progress=False, max_failures=None)
    error = search.trials(status="failed")["error"].iloc[0]
    assert "KilledWorker" in error
    assert "memory is the likely cause" in error


def test_memory_note_says_what_to_do():
    note = memory_note("tcp://w:1", 600 * 2**20, 400 * 2**20)
    assert "it used 600.00 MiB of its 400.00 MiB limit" in note
    assert "Give each worker more memory" in note
    assert "it used" not in memory_note("tcp://w:1", None, None)
