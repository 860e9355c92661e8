"""dasktune: expensive functions, optimizers and parameter searches on Dask.

Functions, optimizers and searches run as batches of Dask futures, on a
``LocalCluster``, a remote scheduler or an HPC cluster through dask-jobqueue;
every trial of a search is kept in a durable, de-duplicated store.

The public names load lazily: ``import dasktune`` imports neither Dask nor
SQLAlchemy, pandas or scipy, and a worker unpickling a trial imports only the
modules that trial needs. The package is layered, dependencies running one way::

    records      Trial, statuses, outcomes, claims, decisions   (no Dask, no SQL)
      ^     ^
    optim/   store/    pure ask/tell optimizers; the SQL trial store
      ^
    run/               everything that imports distributed
      ^
    search, minimize, spsa, cli, plot                            (front doors)
"""

from __future__ import annotations

import importlib
from importlib import metadata as _metadata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dasktune.exceptions import (
        DasktuneError,
        SearchMismatchError,
        StoreError,
        TooManyFailuresError,
        TrialPruned,
    )
    from dasktune.export import optuna_storage
    from dasktune.minimize import minimize
    from dasktune.optim.nevergrad import NevergradOptimizer
    from dasktune.optim.optuna import OptunaSampler
    from dasktune.optim.replicas import HyperScipySampler
    from dasktune.optim.scipy_bridge import ScipyAskTell
    from dasktune.optim.selector import LCBSelector
    from dasktune.records import Trial
    from dasktune.run.cluster import get_client
    from dasktune.run.mapping import async_apply, async_map
    from dasktune.run.producer_consumer import ProducerConsumer
    from dasktune.search import Search
    from dasktune.space import Bool, Categorical, Float, Int, Space
    from dasktune.spsa import SPSA
    from dasktune.store.sql import TrialStore

try:
    __version__ = _metadata.version("dasktune")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

# public name -> the module defining it (imported on first use)
_EXPORTS = {
    "Bool": "dasktune.space",
    "Categorical": "dasktune.space",
    "DasktuneError": "dasktune.exceptions",
    "Float": "dasktune.space",
    "HyperScipySampler": "dasktune.optim.replicas",
    "Int": "dasktune.space",
    "LCBSelector": "dasktune.optim.selector",
    "NevergradOptimizer": "dasktune.optim.nevergrad",
    "OptunaSampler": "dasktune.optim.optuna",
    "ProducerConsumer": "dasktune.run.producer_consumer",
    "SPSA": "dasktune.spsa",
    "ScipyAskTell": "dasktune.optim.scipy_bridge",
    "Search": "dasktune.search",
    "SearchMismatchError": "dasktune.exceptions",
    "Space": "dasktune.space",
    "StoreError": "dasktune.exceptions",
    "TooManyFailuresError": "dasktune.exceptions",
    "Trial": "dasktune.records",
    "TrialPruned": "dasktune.exceptions",
    "TrialStore": "dasktune.store.sql",
    "async_apply": "dasktune.run.mapping",
    "async_map": "dasktune.run.mapping",
    "get_client": "dasktune.run.cluster",
    "minimize": "dasktune.minimize",
    "optuna_storage": "dasktune.export",
}

__all__ = [
    "Bool",
    "Categorical",
    "DasktuneError",
    "Float",
    "HyperScipySampler",
    "Int",
    "LCBSelector",
    "NevergradOptimizer",
    "OptunaSampler",
    "ProducerConsumer",
    "SPSA",
    "ScipyAskTell",
    "Search",
    "SearchMismatchError",
    "Space",
    "StoreError",
    "TooManyFailuresError",
    "Trial",
    "TrialPruned",
    "TrialStore",
    "async_apply",
    "async_map",
    "get_client",
    "minimize",
    "optuna_storage",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        msg = f"module 'dasktune' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    # the public names (and the dunders), not this module's own helpers
    dunders = [name for name in globals() if name.startswith("__")]
    return sorted({*dunders, *_EXPORTS, "__version__"})
