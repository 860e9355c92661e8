"""Pools of scipy optimizer replicas, asked wherever one is free.

:class:`ReplicaPool` runs several :class:`~dasktune.optim.scipy_bridge.ScipyAskTell`
replicas of one method over a box, for methods whose own batches are too small
to fill a cluster (``dual_annealing`` and ``direct`` are serial by design);
:class:`HyperScipySampler` is such a pool over a named parameter space
(cotengra's ``hyper_scipy``, without its deadlock and repeated points).
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import scipy.optimize
from numpy.typing import NDArray

from dasktune._checks import check_int
from dasktune.optim.base import Optimizer
from dasktune.optim.scipy_bridge import PointCache, ScipyAskTell, check_problem
from dasktune.records import canonical
from dasktune.space import Bool, Categorical, Int, Space

__all__ = ["HyperScipySampler", "ReplicaPool", "replica_spec"]

_DETERMINISTIC = ("direct", "shgo")
_REPLICA_ASK_WAIT = 0.02  # seconds a pool waits on one replica before the next


def replica_spec(
    method: str,
    bounds: NDArray[np.float64],
    index: int,
    n_workers: int,
    seed: int | None,
    kwargs: Mapping[str, Any],
    rng: np.random.Generator,
) -> tuple[NDArray[np.float64], dict[str, Any]]:
    """The box and scipy keywords of replica ``index`` of a pool.

    Random methods get ``rng=default_rng([seed, index])`` on the whole box.
    Of the deterministic ones (``direct``, ``shgo``), replica 0 searches the
    whole box (scipy's own run, so the pool's best is never worse than it);
    replicas 1 to ``n_workers - 1`` a slab each of the first dimension, cut in
    an even number of slabs (``n_workers - 1`` rounded up), each drawn in by
    0.5% of its width on both sides so that no two replicas share a corner
    (shgo's first points) or a centre (direct's first point): what lies
    between slabs, or in a slab no replica took, the first replica searches.
    The replicas after them search random sub-boxes.
    """
    box = bounds.copy()
    low, high = bounds[:, 0], bounds[:, 1]
    out = dict(kwargs)
    if method in _DETERMINISTIC:
        if index == 0:
            pass  # the whole box: what scipy itself would search
        elif index < n_workers:
            cuts = n_workers - 1 + (n_workers - 1) % 2  # even: none centred
            width = (high[0] - low[0]) / cuts
            inset = 0.005 * width
            start = low[0] + (index - 1) * width
            box[0] = (start + inset, start + width - inset)
        else:
            centre = rng.uniform(low, high)
            half = rng.uniform(0.05, 0.25) * (high - low)
            box = np.column_stack(
                [np.clip(centre - half, low, high), np.clip(centre + half, low, high)]
            )
    else:
        out["rng"] = np.random.default_rng(None if seed is None else [seed, index])
    return box, out


class ReplicaPool(Optimizer):
    """Replicas of one scipy method over a box, asked wherever one is free.

    Parameters
    ----------
    method : str
    bounds : sequence of (low, high) or scipy.optimize.Bounds
    n_workers : int
        Replicas running at once.
    seed : int, optional
        Replica ``i`` gets ``rng=numpy.random.default_rng([seed, i])``.
    restart : bool, default True
        Replace a finished replica by a new one (new seed, or a new region for
        the deterministic methods); with ``False`` the pool is finished when
        every replica is.
    **kwargs
        Passed to each scipy call.

    Notes
    -----
    ``ask()`` goes to a replica that is not waiting for a result (never
    round-robin into a busy one); ``tell()`` routes by trial number. Of the
    deterministic methods (``direct``, ``shgo``), the first replica searches
    the whole box as scipy would, so the pool is never worse than scipy's own
    run; each other one a slab of it (:func:`replica_spec`), and restarts
    search random sub-boxes; one
    evaluated-point cache is shared, and a replica proposing a point already
    told gets its value at once, one proposing a point in flight gets it when
    that trial is told: a point is never proposed twice (``repeats`` counts the
    proposals answered so).
    """

    def __init__(
        self,
        method: str,
        bounds: Any,
        n_workers: int = 1,
        *,
        seed: int | None = None,
        restart: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self.bounds = check_problem(method, bounds, kwargs)
        check_int("n_workers", n_workers, 1)
        if "rng" in kwargs or "seed" in kwargs:
            msg = f"give {type(self).__name__}(seed=...); each replica derives its own rng"
            raise TypeError(msg)
        self.method, self.n_workers, self.kwargs = method, n_workers, kwargs
        self.seed, self.restart = seed, restart
        self.cache = PointCache()
        self._ready = threading.Event()
        self._started = 0
        self._rng = np.random.default_rng(seed)
        self.replicas: list[ScipyAskTell] = []
        self.results: list[scipy.optimize.OptimizeResult] = []
        # trial number -> (replica, its own number, the key of the proposal)
        self._owner: dict[int, tuple[ScipyAskTell, int, Hashable]] = {}
        # de-duplication on the key of what a trial proposes (see _key)
        self._known: dict[Hashable, float] = {}  # told values
        self._in_flight: dict[Hashable, list[tuple[ScipyAskTell, int]]] = {}
        self.repeats = 0  # proposals answered from _known or _in_flight
        self._to_resume: list[int] = []  # replicas a paused pool starts again
        try:
            for _ in range(n_workers):
                self.replicas.append(self._new_replica())
        except BaseException:
            self.close()
            raise

    def _new_replica(self) -> ScipyAskTell:
        index = self._started
        self._started += 1
        box, kwargs = replica_spec(
            self.method,
            self.bounds,
            index,
            self.n_workers,
            self.seed,
            self.kwargs,
            self._rng,
        )
        replica = ScipyAskTell(
            self.method, box, cache=self.cache, ready=self._ready, **kwargs
        )
        replica.ask_wait = _REPLICA_ASK_WAIT
        return replica

    def _ask(self) -> Any | None:
        if self._to_resume:  # paused
            self._resume()
        while True:
            if self._exhausted():
                return None
            self._ready.clear()
            for i, replica in enumerate(self.replicas):
                if replica.waiting or replica._closed:
                    continue
                if replica.finished:
                    self.results.append(replica.result)
                    replica.close()
                    if not self.restart:
                        continue
                    self.replicas[i] = replica = self._new_replica()
                trial = replica.ask()  # a replica still computing is skipped
                if trial is None:
                    continue
                params = self._params(trial.params)
                key = self._key(params)
                if self._repeat(replica, trial.number, key):
                    break  # answered without a trial: scan the replicas again
                self._owner[self._next_number] = (replica, trial.number, key)
                self._in_flight[key] = []
                return params
            else:
                if self.finished or any(
                    not owner._closed for owner, _, _ in self._owner.values()
                ):
                    return None  # results pending: the caller tells, then asks
                # every replica is computing: wait until one posts a point or ends
                self._ready.wait(0.1)

    def _repeat(self, replica: ScipyAskTell, inner: int, key: Hashable) -> bool:
        """Answer a proposal already told (at once) or in flight (when told)."""
        if key in self._known:
            self.repeats += 1
            replica.tell(inner, self._known[key])
            return True
        if key in self._in_flight:
            self.repeats += 1
            self._in_flight[key].append((replica, inner))
            return True
        return False

    def _params(self, x: NDArray[np.float64]) -> Any:
        return x

    def _key(self, params: Any) -> Hashable:
        """What makes two proposals the same trial: here the exact point."""
        return PointCache.key(params)

    def _exhausted(self) -> bool:
        """True when every possible proposal is known or in flight."""
        return False

    def _tell(self, number: int, params: Any, value: float) -> None:
        replica, inner, key = self._owner.pop(number)
        self._known[key] = value
        # a trial asked before a pause: its replicas are gone, its value kept
        waiting = [(replica, inner), *self._in_flight.pop(key, ())]
        for holder, holder_inner in waiting:
            if not holder._closed:
                holder.tell(holder_inner, value)

    @property
    def finished(self) -> bool:
        if self._exhausted():
            return True
        if self.restart or self._to_resume:
            return False  # paused: the next ask starts replicas again
        return all(r._closed or r.finished for r in self.replicas)

    @property
    def batch_size(self) -> int:
        """One trial per replica in flight; 0 once finished."""
        return 0 if self.finished else self.n_workers

    def close(self) -> None:
        """Close every replica (joining its thread), keeping finished results."""
        self._stop_replicas()
        super().close()

    def pause(self) -> None:
        """Stop every replica (joining its thread), keeping what was told: the
        next ``ask()`` starts new replicas (new seeds, or new regions of the
        box), as a finished one is restarted, and still never proposes a point
        told before. Trials asked and not told are given up (a value told for
        one later is kept, so that it is not proposed again)."""
        # the replicas to start again: every one, or (restart=False) those
        # that had not finished their scipy run
        self._to_resume = [
            i for i, r in enumerate(self.replicas) if self.restart or not r.finished
        ]
        self._stop_replicas()
        self._in_flight = {}  # their waiters are gone with their replicas

    def _stop_replicas(self) -> None:
        for replica in self.replicas:
            if not replica._closed and replica.result is not None:
                self.results.append(replica.result)
            replica.close()

    def _resume(self) -> None:
        """After :meth:`pause`: a new replica for each one stopped mid-run."""
        for i in self._to_resume:
            self.replicas[i] = self._new_replica()
        self._to_resume = []

    def describe(self) -> str:
        return f"{type(self).__name__}({self.method}, n_workers={self.n_workers}, seed={self.seed})"


class HyperScipySampler(ReplicaPool):
    """A pool of :class:`ScipyAskTell` replicas over a named space.

    Parameters
    ----------
    space : Space or dict
        Named dimensions (or cotengra dict specs); replicas work in its box
        ``[-1, 1]^d`` and trials are parameter dicts.
    method : str, default "differential_evolution"
    n_workers : int, default 1
    exponential_param_power : float, optional
        For log-scaled floats, work uniformly in ``value ** power`` instead of
        in log space (cotengra's option).
    seed : int, optional
    **kwargs
        Passed to each scipy call.

    Notes
    -----
    See :class:`ReplicaPool`: replicas are asked only when free, restarted when
    finished, deterministic ones on distinct regions, with one shared
    evaluated-point cache. Trials are de-duplicated on the decoded parameter
    dict (its canonical hash, as a ``Search`` keys trials): box points that
    decode to a dict already told are answered at once, points decoding to a
    dict in flight wait for its value, so no dict is proposed twice, even
    without a store. It finishes only when every dict of an all-discrete space
    (``Int``, ``Categorical``, ``Bool``) has been proposed; otherwise bound it
    with a search's ``n_trials``.
    """

    def __init__(
        self,
        space: Space | Mapping[str, Any],
        method: str = "differential_evolution",
        n_workers: int = 1,
        exponential_param_power: float | None = None,
        *,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:

        self.space = Space(space).with_power(exponential_param_power)
        self._canonical = canonical  # the key a Search uses
        self._size = _space_size(self.space)
        super().__init__(method, self.space.bounds, n_workers, seed=seed, **kwargs)

    def _params(self, x: NDArray[np.float64]) -> dict[str, Any]:
        return self.space.decode(x)

    def spaces(self) -> list[tuple[Space, Optimizer]]:
        return [(self.space, self)]

    def _key(self, params: Any) -> Hashable:
        """Box points decoding to the same parameter dict are the same trial."""
        return self._canonical(params)[1]

    def _exhausted(self) -> bool:
        return (
            self._size is not None
            and len(self._known) + len(self._in_flight) >= self._size
        )


def _space_size(space: Space) -> int | None:
    """The number of distinct parameter dicts, or None with a Float."""
    size = 1
    for dim in space.dimensions.values():
        if isinstance(dim, Int):
            size *= dim.high - dim.low + 1
        elif isinstance(dim, Categorical):
            size *= len(dim.choices)
        elif isinstance(dim, Bool):
            size *= 2
        else:
            return None
    return size
