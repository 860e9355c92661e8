"""Whether the driver holding a trial is alive, without a shared clock or PID space.

A driver stamps its heartbeat with the database's clock (:class:`DbEpoch`,
evaluated by the server: PostgreSQL's ``clock_timestamp()``, SQLite's
``julianday('now')``), and a reader asks the database how long ago that was,
so no host's clock is ever compared with another's: drivers need no clock
synchronisation. A driver whose heartbeat is older than ``stale_after`` by
the database's clock is gone (:func:`owner_gone`).

The one shortcut: a driver known dead at once, without waiting
``stale_after``, when its process is missing from this process's own PID
namespace on this very boot of this machine (:func:`node`: the kernel's boot
id and the PID namespace's id). Two containers sharing a hostname, or
``unshare --pid``, have different PID namespaces, so a PID is only ever
looked up where it means the same process.
"""

from __future__ import annotations

import os
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler

__all__ = ["DbEpoch", "node", "owner_gone", "pid_alive"]


class DbEpoch(sa.sql.functions.FunctionElement[float]):
    """The database's clock, in seconds since the epoch, read by the database."""

    type = sa.Float()
    name = "dasktune_db_epoch"
    inherit_cache = True


@compiles(DbEpoch)
def _epoch_default(element: DbEpoch, compiler: SQLCompiler, **kw: Any) -> str:
    return "EXTRACT(EPOCH FROM CURRENT_TIMESTAMP)"


@compiles(DbEpoch, "postgresql")
def _epoch_postgresql(element: DbEpoch, compiler: SQLCompiler, **kw: Any) -> str:
    # the time of the statement's own evaluation, not of the transaction's start
    return "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)"


@compiles(DbEpoch, "sqlite")
def _epoch_sqlite(element: DbEpoch, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite runs in the writer's process: its clock is the host's (one
    # machine, one kernel clock, whatever the containers)
    return "((julianday('now') - 2440587.5) * 86400.0)"


def node() -> str | None:
    """This machine's boot and this process's PID namespace, or ``None`` where
    the kernel does not tell them (no ``/proc``: no PID is ever looked up).

    Two processes with the same node see the same process behind a PID.
    """
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
    return f"{boot} {namespace}" if boot else None


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this PID namespace exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_gone(
    owner_node: str | None,
    owner_pid: int | None,
    silence: float | None,
    stale_after: float,
    here: str | None,
) -> bool:
    """Whether the driver holding a trial is gone: silent for longer than
    ``stale_after`` seconds by the database's clock (``silence``; ``None``:
    no heartbeat), or its process missing from this very PID namespace
    (``here``, this process's :func:`node`).

    >>> owner_gone("b pid:[1]", 2**22 + 1, 3.0, 30.0, "b pid:[2]")
    False
    >>> owner_gone("b pid:[1]", 2**22 + 1, 31.0, 30.0, "b pid:[2]")
    True
    """
    if silence is None or silence > stale_after:
        return True
    return (
        here is not None
        and owner_node == here
        and owner_pid is not None
        and not pid_alive(int(owner_pid))
    )
