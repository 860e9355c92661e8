"""What makes a search defensible: :func:`provenance`, kept with it when made.

The versions of Python and of the packages that compute, the host, the user,
the working directory, the git commit (and whether the tree was dirty) and
the objective's name and source hash. ``Search`` and ``minimize`` (with a
``store=``) keep it in the search's metadata.
"""

from __future__ import annotations

import getpass
import hashlib
import inspect
import os
import platform
import socket
import subprocess
from importlib import metadata
from typing import Any

__all__ = ["provenance"]


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def provenance(objective: object) -> dict[str, Any]:
    """What makes a search defensible: versions, host, user, git, objective."""
    target = getattr(objective, "process_function", objective)
    try:
        source = inspect.getsource(target)  # type: ignore[arg-type]
        source_hash: str | None = hashlib.sha256(source.encode()).hexdigest()
    except (OSError, TypeError):
        source_hash = None
    commit = _git("rev-parse", "HEAD")
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = None
    module = getattr(target, "__module__", None)
    qualname = getattr(target, "__qualname__", type(target).__qualname__)
    return {
        "dasktune": _version("dasktune"),
        "python": platform.python_version(),
        "packages": {
            name: _version(name)
            for name in ("numpy", "scipy", "pandas", "dask", "distributed")
        },
        "host": socket.gethostname(),
        "user": user,
        "cwd": os.getcwd(),
        "git_commit": commit,
        "git_dirty": None if commit is None else bool(_git("status", "--porcelain")),
        "objective": f"{module}.{qualname}" if module else qualname,
        "objective_source_sha256": source_hash,
    }
