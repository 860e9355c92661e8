"""Running a vector optimizer on ``fun(x, *args)``: shared by SPSA() and minimize()."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import distributed
import numpy as np

from dasktune._checks import func_name
from dasktune.optim.base import AskTell
from dasktune.optim.spsa import SPSAPoint
from dasktune.records import MemoryRecorder
from dasktune.run.cluster import get_client
from dasktune.run.driver import BatchObjective, Driver, RunReport, check_batch_objective


class VectorObjective:
    """``fun(x, *args)`` called with a parameter vector (and a pair's ``seed``)."""

    def __init__(self, fun: Callable[..., Any], args: tuple[Any, ...], paired: bool):
        self.fun, self.args, self.paired = fun, tuple(args), paired
        self.__name__ = func_name(fun)

    def __call__(self, point: Any) -> Any:
        if isinstance(point, SPSAPoint):
            x = np.array(point.x, dtype=float)
            if self.paired:
                return self.fun(x, *self.args, seed=point.seed)
            return self.fun(x, *self.args)
        return self.fun(np.array(point, dtype=float), *self.args)


def point_record(point: Any) -> dict[str, Any]:
    """The JSON record of a point: its vector, and its seed and tag if any."""
    if isinstance(point, SPSAPoint):
        return {"x": np.asarray(point.x).tolist(), "seed": point.seed, "tag": point.tag}
    return {"x": np.asarray(point, dtype=float).tolist()}


def point_vector(point: Any) -> Any:
    """What a batch objective receives: the bare vector."""
    return np.asarray(point.x if isinstance(point, SPSAPoint) else point, dtype=float)


def run_vector(
    optimizer: AskTell,
    fun: Callable[..., Any] | BatchObjective,
    args: tuple[Any, ...],
    *,
    client: distributed.Client | None,
    name: str,
    paired: bool = False,
    recorder: Any = None,
    **driver_kwargs: Any,
) -> tuple[RunReport, Any]:
    """Drive ``optimizer`` on the cluster; return the report and the recorder.

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
    driver = Driver(
        optimizer,
        objective,
        client,
        recorder,
        name=name,
        to_call=to_call,
        to_record=point_record,
        raise_if_all_failed=True,
        **driver_kwargs,
    )
    return driver.run(), recorder
