"""The command keeps Dask's noise off the terminal (``--debug`` shows it).

The command runs as a user runs it: in its own process (and process group,
so that Ctrl-C reaches every process of it as a terminal's does), on a real
``LocalCluster`` of worker processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import subprocess
import sys

import pytest
from distributed.utils_test import poll_for

from dasktune._quiet import quiet_dask

SLOW = """
import time

source = [{"x": i} for i in range(100)]


def objective(params):
    time.sleep(0.5)
    return params["x"]
"""

QUICK = "source = [{'x': 1}, {'x': 2}]\n\n\ndef objective(params):\n    return params['x']\n"
NOISE = ("Traceback", "KeyboardInterrupt", "CancelledError", "still alive")


def dasktune(tmp_path, name, text, *extra, **popen):
    script = tmp_path / f"{name}.py"
    script.write_text(text)
    argv = [sys.executable, "-m", "dasktune", "run", str(script), "--store",
            str(tmp_path / f"{name}.db"), "--n-workers", "2", *extra]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=tmp_path, **popen)  # fmt: skip


def test_ctrl_c_stops_the_command_with_one_line(tmp_path):
    proc = dasktune(tmp_path, "slow", SLOW, start_new_session=True)
    try:
        assert "dashboard:" in proc.stdout.readline()  # the cluster is up

        def some_done():
            from dasktune.store.sql import TrialStore

            store = TrialStore(tmp_path / "slow.db", readonly=True)
            try:
                searches = store.list_searches()  # none before the first trial
                return bool(searches) and searches[0]["done"] >= 2
            finally:
                store.close()

        poll_for(some_done, timeout=60)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        _, err = proc.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130
    assert "dasktune: interrupted" in err
    assert not [word for word in NOISE if word in err], err


@contextlib.contextmanager
def dashboard_port_taken():
    """Port 8787 on 127.0.0.1 in use (by this test, or already by another)."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", 8787))
            sock.listen()
        except OSError as err:
            if err.errno != errno.EADDRINUSE:
                raise
        yield


@pytest.mark.parametrize("debug", [False, True])
def test_a_taken_dashboard_port_is_not_a_warning(tmp_path, debug):
    with dashboard_port_taken():
        proc = dasktune(tmp_path, "quick", QUICK, *(["--debug"] if debug else []))
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "dashboard: http://127.0.0.1:" in out  # the real port, printed once
    assert ("Port 8787 is already in use" in err) == debug


class Kept(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_quiet_drops_only_what_it_names():
    nanny = logging.getLogger("distributed.nanny")  # Dask's: not propagated
    kept = Kept()
    nanny.addHandler(kept)
    try:
        with quiet_dask():
            nanny.warning("Worker process still alive after 4.0 seconds, killing")
            try:
                raise asyncio.CancelledError
            except asyncio.CancelledError:
                nanny.exception("a cancelled task")  # a CancelledError's record
            nanny.warning("Worker exceeded 95% memory budget")  # the user's to read
        with quiet_dask(False):  # --debug
            nanny.warning("Worker process still alive after 4.0 seconds, killing")
    finally:
        nanny.removeHandler(kept)
    assert kept.messages == [
        "Worker exceeded 95% memory budget",
        "Worker process still alive after 4.0 seconds, killing",
    ]
    assert not nanny.filters  # removed on the way out
