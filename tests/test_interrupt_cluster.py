"""Ctrl-C (a real SIGINT) on a run whose work runs as long tasks: once it has
returned, nothing of it runs on the cluster."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from distributed.utils_test import poll_for

from dasktune import minimize
from tests.clusters import local_client


class CountingSphere:
    """A sphere that appends a byte to ``path`` at each evaluation."""

    def __init__(self, path: str):
        self.path = path

    def __call__(self, x):
        with open(self.path, "ab") as f:
            f.write(b".")
        time.sleep(0.001)
        return float(np.sum(np.asarray(x) ** 2))


def _count(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


@pytest.mark.timeout(120)
def test_ctrl_c_on_dual_annealing_leaves_no_replica_running(tmp_path):
    counted = tmp_path / "evaluations"
    fun = CountingSphere(str(counted))
    main = threading.main_thread().ident
    assert threading.get_ident() == main  # SIGINT reaches this thread

    def interrupt():
        poll_for(lambda: _count(counted) > 50, timeout=60)
        os.kill(os.getpid(), signal.SIGINT)

    with local_client(2, 1) as client:
        killer = threading.Thread(target=interrupt)
        killer.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                minimize(
                    fun, [(-5.0, 5.0)] * 4, method="dual_annealing", seed=1,
                    n_workers=2, maxiter=100_000, client=client,
                )  # fmt: skip
        finally:
            killer.join(timeout=60)
        at_return = _count(counted)
        # no worker runs a replica any more (a cancelled task's thread is
        # still "executing"): none can evaluate again
        executing = client.run(lambda dask_worker: len(dask_worker.state.executing))
        assert not any(executing.values())
        assert _count(counted) == at_return
