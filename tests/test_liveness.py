"""A driver's claims are judged alive by the database's clock, and its pid only
in its own PID namespace: a clock behind, or one hostname in two PID
namespaces, never makes a live driver's trials look abandoned."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time

import pytest

from dasktune.records import Claim, canonical
from dasktune.store.liveness import node
from dasktune.store.sql import TrialStore


def _claim(**params) -> Claim:
    record, h = canonical(params)
    return Claim(h, record)


def _unavailable(reason: str) -> None:
    """Skip, saying why; under CI fail instead (as tests/postgres.py does)."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI needs this to run: {reason}")
    pytest.skip(reason)


def _pid_namespaces() -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        _unavailable("a new PID namespace needs root and unshare (util-linux)")


# a driver holding one claim (a=1) of search "s" until its stdin closes
_HOLDER = textwrap.dedent(
    """
    import sys
    from dasktune.records import Claim, canonical
    from dasktune.store.sql import TrialStore
    store = TrialStore(sys.argv[1])
    sid = store.open_search("s", space=None, direction="minimize", metadata={})
    driver = store.register_driver(sid)
    record, h = canonical({"a": 1})
    print(store.sync(sid, driver, [], [Claim(h, record)])[0].kind, flush=True)
    store.heartbeat(driver)
    sys.stdin.read()
    store.close()
    """
)

# what a driver decides for that claim, read-only
_READER = textwrap.dedent(
    """
    import sys
    from dasktune.records import canonical
    from dasktune.store.sql import TrialStore
    store = TrialStore(sys.argv[1])
    sid = store.open_search("s", space=None, direction="minimize", metadata={})
    driver = store.register_driver(sid)
    print(store.peek(sid, driver, [canonical({"a": 1})[1]])[0].kind)
    store.close()
    """
)


@pytest.fixture(params=["file", "postgresql"])
def url(request, tmp_path) -> str:
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path}/t.db"


def _env() -> dict[str, str]:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return {**os.environ, "PYTHONPATH": root}


def test_a_driver_whose_clock_is_behind_keeps_its_claims(postgres_url):
    # its heartbeat is stamped by the server's clock, not its own: a driver
    # 120 s behind is not silent for 120 s (SQLite's clock is the writer's
    # host's own: one machine, one clock, so faketime would fool it there)
    if shutil.which("faketime") is None:
        _unavailable("faketime is not installed (apt-get install faketime)")
    holder = subprocess.Popen(
        ["faketime", "-f", "-120s", sys.executable, "-c", _HOLDER, postgres_url],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_env(),
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "evaluate\n"
        store = TrialStore(postgres_url)
        sid = store.open_search("s", space=None, direction="minimize", metadata={})
        (held,) = store.runs(sid)
        assert abs(held["heartbeat"] - time.time()) < 60  # the server's clock
        reader = store.register_driver(sid)
        decision = store.peek(sid, reader, [_claim(a=1).param_hash])[0]
        assert decision.kind == "elsewhere"
        assert store.sync(sid, reader, [], [_claim(a=1)])[0].kind == "elsewhere"
        store.close()
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=60)


def test_a_live_driver_in_another_pid_namespace_keeps_its_claims(url):
    # one hostname, two PID namespaces (containers, unshare --pid): this
    # process's pid does not exist in the reader's namespace, yet it is alive
    _pid_namespaces()
    store = TrialStore(url)
    sid = store.open_search("s", space=None, direction="minimize", metadata={})
    driver = store.register_driver(sid)
    assert store.sync(sid, driver, [], [_claim(a=1)])[0].kind == "evaluate"
    reader = subprocess.run(
        ["unshare", "--pid", "--fork", sys.executable, "-c", _READER, url],
        capture_output=True, text=True, env=_env(), timeout=120, check=False,
    )  # fmt: skip
    assert reader.returncode == 0, reader.stderr
    assert reader.stdout == "elsewhere\n"
    store.close()


def test_a_dead_driver_of_another_pid_namespace_waits_for_its_heartbeat(url):
    # its pid is not looked up here: its trials wait for stale_after
    _pid_namespaces()
    holder = subprocess.Popen(
        ["unshare", "--pid", "--fork", sys.executable, "-c", _HOLDER, url],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_env(),
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline() == "evaluate\n"
    assert holder.stdin is not None
    holder.stdin.close()
    assert holder.wait(timeout=60) == 0
    store = TrialStore(url)
    sid = store.open_search("s", space=None, direction="minimize", metadata={})
    reader = store.register_driver(sid)
    (holder_row,) = (r for r in store.runs(sid) if r["id"] != reader)
    assert holder_row["node"] != store.node and holder_row["node"] is not None
    c = _claim(a=1)
    assert store.peek(sid, reader, [c.param_hash])[0].kind == "elsewhere"
    assert store.peek(sid, reader, [c.param_hash], stale_after=-1)[0].kind == (
        "evaluate"
    )
    store.close()


def test_the_node_names_this_boot_and_pid_namespace():
    here = node()
    if here is None:
        _unavailable("no /proc here: no pid is ever looked up")
    with open("/proc/sys/kernel/random/boot_id") as f:
        assert here == f"{f.read().strip()} {os.readlink('/proc/self/ns/pid')}"
