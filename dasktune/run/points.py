"""A vector optimizer's points: how the objective is called with one, and how
one is recorded. No Dask here: the caller's process evaluates them too."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from dasktune._checks import func_name
from dasktune.optim.spsa import SPSAPoint

__all__ = ["VectorObjective", "point_key", "point_record", "point_vector"]


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


def point_key(point: Any) -> tuple[bytes, Any, Any]:
    """A point's identity, cheaper than hashing its record: the bytes of its
    vector (as ``float64``), and its seed and tag if any. Two points have the
    same key exactly when :func:`point_record` records them alike."""
    if isinstance(point, SPSAPoint):
        vector = np.asarray(point.x, dtype=np.float64)
        return vector.tobytes(), point.seed, point.tag
    return np.asarray(point, dtype=np.float64).tobytes(), None, None
