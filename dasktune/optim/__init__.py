"""Pure ask/tell optimizers and pruners: no Dask here.

Every optimizer follows the contract written once on
:class:`dasktune.optim.base.Optimizer`; the driver in :mod:`dasktune.run` runs
any of them on a cluster. The names below load lazily (see
:mod:`dasktune._lazy`): ``import dasktune.optim`` imports no optimizer's
dependencies (scipy, Optuna, Nevergrad) until its name is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dasktune._lazy import attach

if TYPE_CHECKING:  # the public names, listed once (dasktune._lazy)
    from dasktune.optim.base import AskTell as AskTell
    from dasktune.optim.base import IterableSource as IterableSource
    from dasktune.optim.base import Optimizer as Optimizer
    from dasktune.optim.base import RandomSampler as RandomSampler
    from dasktune.optim.nevergrad import NevergradOptimizer as NevergradOptimizer
    from dasktune.optim.optuna import OptunaSampler as OptunaSampler
    from dasktune.optim.pruners import HyperbandPruner as HyperbandPruner
    from dasktune.optim.pruners import MedianPruner as MedianPruner
    from dasktune.optim.pruners import PercentilePruner as PercentilePruner
    from dasktune.optim.pruners import Pruner as Pruner
    from dasktune.optim.pruners import (
        SuccessiveHalvingPruner as SuccessiveHalvingPruner,
    )
    from dasktune.optim.pruners import Verdict as Verdict
    from dasktune.optim.replicas import HyperScipySampler as HyperScipySampler
    from dasktune.optim.replicas import ReplicaPool as ReplicaPool
    from dasktune.optim.scipy_bridge import ScipyAskTell as ScipyAskTell
    from dasktune.optim.selector import LCBSelector as LCBSelector
    from dasktune.optim.spsa import SPSAOptimizer as SPSAOptimizer
    from dasktune.optim.spsa import SPSAPoint as SPSAPoint

__getattr__, __dir__, _EXPORTS = attach(__name__)
__all__ = sorted(_EXPORTS)
