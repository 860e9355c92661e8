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
    search, minimize, spsa_run, cli, plot                        (front doors)
"""

from __future__ import annotations

from importlib import metadata as _metadata
from typing import TYPE_CHECKING

from dasktune._lazy import attach

if TYPE_CHECKING:  # the public names, listed once (dasktune._lazy)
    from dasktune.exceptions import (
        DasktuneError as DasktuneError,
    )
    from dasktune.exceptions import (
        SearchMismatchError as SearchMismatchError,
    )
    from dasktune.exceptions import (
        StoreError as StoreError,
    )
    from dasktune.exceptions import (
        TooManyFailuresError as TooManyFailuresError,
    )
    from dasktune.exceptions import (
        TrialPruned as TrialPruned,
    )
    from dasktune.minimize import minimize as minimize
    from dasktune.optim.nevergrad import NevergradOptimizer as NevergradOptimizer
    from dasktune.optim.optuna import OptunaSampler as OptunaSampler
    from dasktune.optim.replicas import HyperScipySampler as HyperScipySampler
    from dasktune.optim.scipy_bridge import ScipyAskTell as ScipyAskTell
    from dasktune.optim.selector import LCBSelector as LCBSelector
    from dasktune.records import Trial as Trial
    from dasktune.run.cluster import get_client as get_client
    from dasktune.run.mapping import async_apply as async_apply
    from dasktune.run.mapping import async_map as async_map
    from dasktune.run.producer_consumer import ProducerConsumer as ProducerConsumer
    from dasktune.search import Search as Search
    from dasktune.serve import optuna_storage as optuna_storage
    from dasktune.space import (
        Bool as Bool,
    )
    from dasktune.space import (
        Categorical as Categorical,
    )
    from dasktune.space import (
        Float as Float,
    )
    from dasktune.space import (
        Int as Int,
    )
    from dasktune.space import (
        Space as Space,
    )
    from dasktune.spsa_run import SPSA as SPSA
    from dasktune.store.sql import TrialStore as TrialStore

try:
    __version__ = _metadata.version("dasktune")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__getattr__, __dir__, _EXPORTS = attach(__name__)
__all__ = sorted(_EXPORTS)
