"""dasktune: expensive functions, optimizers and parameter searches on Dask.

Functions, optimizers and searches run as batches of Dask futures, on a
``LocalCluster``, a remote scheduler or an HPC cluster through dask-jobqueue;
every trial of a search is kept in a durable, de-duplicated store.
"""

from __future__ import annotations

from importlib import metadata as _metadata

from dasktune.asktell import Trial
from dasktune.cluster import get_client
from dasktune.exceptions import DasktuneError
from dasktune.mapping import async_apply, async_map
from dasktune.minimize import minimize
from dasktune.producer_consumer import ProducerConsumer
from dasktune.scipy_asktell import HyperScipySampler, ScipyAskTell
from dasktune.search import Search
from dasktune.selector import LCBSelector
from dasktune.space import Bool, Categorical, Float, Int
from dasktune.spsa import SPSA

try:
    __version__ = _metadata.version("dasktune")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "Bool",
    "Categorical",
    "DasktuneError",
    "Float",
    "HyperScipySampler",
    "Int",
    "LCBSelector",
    "ProducerConsumer",
    "SPSA",
    "ScipyAskTell",
    "Search",
    "Trial",
    "async_apply",
    "async_map",
    "get_client",
    "minimize",
]
