"""Running a vector optimizer on ``fun(x, *args)``: shared by SPSA() and minimize()."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import distributed

from dasktune.optim.base import AskTell
from dasktune.records import MemoryRecorder
from dasktune.run.base import BatchObjective
from dasktune.run.cluster import get_client
from dasktune.run.driver import check_batch_objective
from dasktune.run.entry import run
from dasktune.run.options import RunOptions
from dasktune.run.points import VectorObjective, point_record, point_vector
from dasktune.run.summary import RunReport


def run_vector(
    optimizer: AskTell,
    fun: Callable[..., Any] | BatchObjective,
    args: tuple[Any, ...],
    options: RunOptions,
    *,
    client: distributed.Client | None,
    paired: bool = False,
    recorder: Any = None,
) -> tuple[RunReport, Any]:
    """Drive ``optimizer`` on the cluster as ``options`` say; return the report
    and the recorder. The points are recorded as vectors (``to_call`` and
    ``to_record`` are set here, so are any in ``options``).

    When trials failed and none gave a value, the first failure's own
    exception is raised (its traceback in a note), never a silent ``inf``.
    """
    check_batch_objective(fun)
    client = get_client(client)
    recorder = recorder if recorder is not None else MemoryRecorder()
    if isinstance(fun, BatchObjective):
        objective: Any = fun
        to_call: Callable[[Any], Any] = point_vector
    else:
        objective, to_call = VectorObjective(fun, args, paired), lambda p: p
    options = replace(
        options, to_call=to_call, to_record=point_record, raise_if_all_failed=True
    )
    return run(optimizer, objective, recorder, options, client=client), recorder
