"""Results that travel back from a worker, checked where they are made.

A result that cannot be pickled stays on its worker: Dask fails to send it
(a task's result, an actor call's answer) and the caller waits for it, forever
without a timeout. Code that runs user functions on a worker in another
process checks their results with :func:`first_unpicklable` before returning
them, and fails the task or call with the element named instead.

The check pickles as Dask does (``pickle``, then ``cloudpickle``), with arrays'
data out of band, so an array's bytes are not copied. Only a worker in the
caller's own process (:data:`PROCESS` is the same there) that it reaches
through ``inproc://`` skips it (:func:`must_check`): Dask hands such results
over as they are. In-process workers on TCP (``gen_cluster``, a
``LocalCluster(processes=False, protocol="tcp")``) pickle theirs.
"""

from __future__ import annotations

import pickle
import uuid
from collections.abc import Iterable
from typing import Any

import cloudpickle
import distributed

__all__ = ["PROCESS", "first_unpicklable", "must_check", "unpicklable_message"]

#: this process: work made here carries it, and a worker in another process
#: (a different value) checks what it sends back
PROCESS = uuid.uuid4().hex


def must_check(origin: str) -> bool:
    """Whether results made on this worker for a caller in process ``origin``
    are pickled to reach it: unless the caller is this process and the worker
    talks through ``inproc://`` (objects passed as they are)."""
    if origin != PROCESS:
        return True
    try:
        address = distributed.get_worker().address
    except ValueError:  # not on a worker
        return True
    return not address.startswith("inproc://")


def _drop(buffer: pickle.PickleBuffer) -> None:
    """Keep an array's data out of band: checking it copies nothing."""


def _why(obj: Any) -> Exception | None:
    """Why ``obj`` cannot travel as Dask sends a result; None when it can."""
    try:
        pickle.dumps(obj, protocol=5, buffer_callback=_drop)
        return None
    except Exception:
        pass
    try:
        cloudpickle.dumps(obj, protocol=5, buffer_callback=_drop)
        return None
    except Exception as err:
        return err


def first_unpicklable(
    whole: Any, parts: Iterable[tuple[Any, Any]]
) -> tuple[Any, Any, Exception] | None:
    """``None`` when ``whole`` pickles; else the first of ``parts`` (pairs of
    a label and a value, together ``whole``'s values) that does not, as
    ``(label, value, error)``, or ``(None, whole, error)`` when each part
    pickles alone."""
    err = _why(whole)
    if err is None:
        return None
    for label, value in parts:
        part_err = _why(value)
        if part_err is not None:
            return label, value, part_err
    return None, whole, err


def unpicklable_message(what: str, value: Any, err: Exception) -> str:
    """The error for a result that cannot travel back from its worker."""
    return (
        f"{what} returned a {type(value).__qualname__}, which cannot be pickled "
        f"to travel back from its worker: {err}; return plain values (numbers, "
        "arrays, lists, dicts), or make the object picklable"
    )
