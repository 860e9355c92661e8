"""async_map with no client: a cheap function is mapped in the caller's process
(no cluster started); an expensive one moves to the cluster (run/map_here.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from dasktune import async_map

ENV = {**os.environ, "PYTHONPATH": os.getcwd()}  # this worktree's dasktune


def _fresh(code: str, timeout: float) -> dict:
    """Run ``code`` in a fresh interpreter (no client current, no cluster of
    dasktune's yet); its last line of output, as JSON."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, timeout=timeout, env=ENV,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_cheap_function_is_mapped_here_without_a_cluster():
    seen = _fresh(
        """
        import json, logging
        import dasktune
        from dasktune.run.cluster import owned_cluster

        logging.basicConfig(level=logging.DEBUG, format="%(name)s %(message)s")
        values = dasktune.async_map(abs, range(-50, 50))
        print(json.dumps({"ok": values == [abs(x) for x in range(-50, 50)],
                          "owned": owned_cluster() is not None}))
        """,
        timeout=120,
    )
    assert seen == {"ok": True, "owned": False}


def _fails_on_negative(x):
    if x < 0:
        raise ValueError(f"negative: {x}")
    return x


_calls: dict[int, int] = {}


def _fails_once(x):
    _calls[x] = _calls.get(x, 0) + 1
    if _calls[x] == 1:
        raise RuntimeError(f"first call of {x}")
    return 2 * x


def test_here_a_failure_names_its_element_and_retries_run_it_again(caplog):
    with pytest.raises(ValueError, match="negative: -3") as info:
        async_map(_fails_on_negative, [1, 2, -3, 4], execution="local")
    assert "async_map: raised by element 2 of args: -3" in info.value.__notes__
    _calls.clear()
    with caplog.at_level("DEBUG", logger="dasktune"):
        assert async_map(_fails_once, range(5), retries=1) == [0, 2, 4, 6, 8]
    assert _calls == {x: 2 for x in range(5)}
    assert any("async_map: execution local" in r.getMessage() for r in caplog.records)


def test_what_only_a_cluster_does_is_never_mapped_here():
    with pytest.raises(ValueError, match=r"execution='local' cannot run with resources"):  # fmt: skip
        async_map(abs, [1], resources={"GPU": 1}, execution="local")
    with pytest.raises(ValueError, match="execution must be 'auto', 'local' or 'tasks'"):  # fmt: skip
        async_map(abs, [1], execution="feed")


@pytest.mark.timeout(300)  # worker processes, on a busy machine
def test_an_expensive_function_moves_to_the_cluster_in_order():
    seen = _fresh(
        """
        import json, time
        import dasktune
        from dasktune.run.cluster import close_owned, owned_cluster

        def slow(x):
            time.sleep(0.05)  # the function's cost, not a synchronisation
            if x == "boom":
                raise KeyError(x)
            return 3 * x

        if __name__ == "__main__":
            # 80 calls of 50 ms: more than a cluster's start-up to save
            values = dasktune.async_map(slow, range(80))
            started = owned_cluster() is not None
            close_owned()
            try:
                dasktune.async_map(slow, [*range(79), "boom"])
                notes = []
            except KeyError as err:
                notes = err.__notes__
            print(json.dumps({"ok": values == [3 * x for x in range(80)],
                              "started": started, "notes": notes}))
        """,
        timeout=280,
    )
    assert seen["ok"] and seen["started"], seen
    # an element mapped on the cluster is named by its place in args
    assert "async_map: raised by element 79 of args: 'boom'" in seen["notes"], seen
