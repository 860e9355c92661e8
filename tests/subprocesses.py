"""Driver scripts run in processes of their own, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def launch(script: Path, *args: str, env: dict[str, str]) -> subprocess.Popen:
    """``python script *args`` in a session of its own (to be killed with its
    children), importing this checkout and the script's siblings; ``env`` added
    to this process's environment; its output on a pipe."""
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([os.getcwd(), str(script.parent)]),
            **env,
        },
    )


def last_json(code: str, timeout: float = 280) -> tuple[Any, int]:
    """Run ``python -c code`` (in a session of its own) to its end: the JSON of
    its last output line (it must exit 0, else its error output is shown), and
    its pid (its session's id, to check that nothing of it outlives it)."""
    with subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    ) as proc:  # fmt: skip
        out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1]), proc.pid
