"""scipy's global optimizers as ask/tell, in parallel.

:class:`ScipyAskTell` runs one of ``differential_evolution``, ``dual_annealing``,
``direct`` or ``shgo`` in a background thread whose objective blocks until the
point it asked for is told. Where scipy hands out whole batches — DE's
population and shgo's sampling points through ``workers=``, the finite
differences of DE's L-BFGS-B polish and of dual_annealing's local search
through L-BFGS-B's ``workers`` option — every point of the batch is asked at
once. scipy's own function is then called on each point and answered from an
evaluated-point cache, so its counters and results are exactly those of the
serial call.

:mod:`dasktune.optim.replicas` keeps pools of them.
"""

from __future__ import annotations

import collections
import inspect
import numbers
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import scipy.optimize
from numpy.typing import NDArray

from dasktune.optim.base import Optimizer
from dasktune.optim.bounds import as_pairs

__all__ = ["METHODS", "PointCache", "ScipyAskTell", "check_kwargs", "check_problem"]

METHODS = ("differential_evolution", "dual_annealing", "direct", "shgo")
# the most dimensions in which shgo's sampling posts its first point within
# seconds: measured on a 2-core machine (scipy 1.17, f(x) = sum(x**2) on
# [-1, 1]^n), the default simplicial triangulation took 3.9 s before the first
# evaluation in 11 dimensions, 15-31 s in 12 and over a minute in 13; sobol and
# halton (a Delaunay triangulation of their samples) took 3-8 s in 7, 12-19 s in 8
_SHGO_MAX_DIMS = {"simplicial": 11, "sobol": 7, "halton": 7}
#: seconds close() waits for the scipy thread to stop (it stops at its next
#: wait for values: only scipy's own arithmetic, or a callback, delays it)
_JOIN_SECONDS = 30.0


class _Stop(BaseException):
    """Raised inside the optimizer thread to end it on ``close()``."""


class PointCache:
    """Values of evaluated points, keyed by their exact float64 bytes.

    Shared by the replicas of a pool, so that no point is evaluated twice.
    """

    def __init__(self) -> None:
        self.values: dict[bytes, float] = {}
        self.lock = threading.Lock()

    @staticmethod
    def key(x: Any) -> bytes:
        """The cache key of a point."""
        return np.ascontiguousarray(x, dtype=np.float64).reshape(-1).tobytes()

    def get(self, key: bytes) -> float | None:
        with self.lock:
            return self.values.get(key)

    def put(self, key: bytes, value: float) -> None:
        with self.lock:
            self.values[key] = value

    def __len__(self) -> int:
        return len(self.values)


#: the counts each scipy function takes: the least each may be, and its meaning
_COUNTS: dict[str, dict[str, tuple[int, str]]] = {
    "differential_evolution": {
        "popsize": (1, "the population is popsize × the dimensions"),
        "maxiter": (0, "generations after the first population"),
    },
    "dual_annealing": {
        "maxiter": (1, "global search iterations"),
        "maxfun": (1, "function evaluations"),
    },
    "direct": {
        "maxiter": (1, "iterations"),
        "maxfun": (1, "function evaluations"),
    },
    "shgo": {
        "n": (1, "sampling points"),
        "iters": (1, "iterations"),
    },
}


def check_problem(
    method: str, bounds: Any, kwargs: Mapping[str, Any]
) -> NDArray[np.float64]:
    """``bounds`` as ``(low, high)`` pairs, once ``method``, the bounds and
    the keywords are what scipy's ``method`` takes (the check of every
    optimizer running scipy's methods, before anything starts).

    >>> check_problem("direct", [(0, 1), (-1, 1)], {}).tolist()
    [[0.0, 1.0], [-1.0, 1.0]]
    >>> check_problem("nelder-mead", [(0, 1)], {})
    Traceback (most recent call last):
    ...
    ValueError: method must be one of ['differential_evolution', 'dual_annealing', 'direct', 'shgo'], got 'nelder-mead'

    Raises
    ------
    ValueError
        For a method scipy's global optimizers do not have, bounds that are
        not finite (a low equal to its high only for
        ``differential_evolution``, which holds that parameter fixed), or
        counts below what they mean (:func:`check_kwargs`).
    TypeError
        For keywords the method does not take (:func:`check_kwargs`).
    """
    if method not in METHODS:
        msg = f"method must be one of {list(METHODS)}, got {method!r}"
        raise ValueError(msg)
    pairs = as_pairs(
        bounds,
        finite=f"{method} (scipy)",
        fixed=method == "differential_evolution",  # a parameter held fixed
    )
    check_kwargs(method, kwargs, len(pairs))
    return pairs


def check_kwargs(
    method: str, kwargs: Mapping[str, Any], n_dims: int | None = None
) -> None:
    """Raise for keywords the scipy function does not take, or a dimension it
    cannot handle in reasonable time.

    Parameters
    ----------
    method : str
    kwargs : mapping
        The keywords for the scipy function.
    n_dims : int, optional
        The number of dimensions of the box; checked for ``shgo``.

    Raises
    ------
    TypeError
        For keywords the scipy function does not take, ``workers``, or
        ``{"jac": True}`` in ``minimizer_kwargs`` or ``options``.
    ValueError
        For ``shgo`` in more dimensions than its sampling handles in seconds,
        or a count below what it means (``popsize=-1``, ``maxiter=-3``).
    """
    fun = getattr(scipy.optimize, method)
    allowed = set(inspect.signature(fun).parameters) - {"func", "bounds", "workers"}
    unknown = sorted(set(kwargs) - allowed)
    if "workers" in kwargs:
        msg = f"{method}: workers is managed by dasktune (the cluster runs the batches)"
        raise TypeError(msg)
    if unknown:
        msg = (
            f"{method}() got unexpected keyword arguments {unknown}; "
            f"it takes {sorted(allowed)}"
        )
        raise TypeError(msg)
    for where in ("minimizer_kwargs", "options"):
        given = kwargs.get(where)
        if isinstance(given, Mapping) and given.get("jac") is True:
            msg = (
                f"{method}: {where}={{'jac': True}} means an objective returning "
                "(value, gradient), but dasktune's objective returns its value "
                "(see 'What an objective may return'); give jac as a function "
                "jac(x, *args), or leave it out for finite differences"
            )
            raise TypeError(msg)
    for name, (minimum, meaning) in _COUNTS.get(method, {}).items():
        value = kwargs.get(name)
        if value is None:
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Integral)
            or (value < minimum)
        ):
            msg = (
                f"{method}'s {name} must be an integer >= {minimum} ({meaning}), "
                f"got {value!r}"
            )
            raise ValueError(msg)
    if method == "shgo" and n_dims is not None:
        _check_shgo_dims(n_dims, kwargs.get("sampling_method", "simplicial"))


def _check_shgo_dims(n_dims: int, sampling_method: Any) -> None:
    """Refuse shgo where its triangulation would block ``ask()`` for minutes."""
    limit = (
        _SHGO_MAX_DIMS.get(sampling_method)
        if isinstance(sampling_method, str)
        else None
    )
    if limit is None or n_dims <= limit:
        return
    msg = (
        f"shgo with sampling_method={sampling_method!r} in {n_dims} dimensions "
        f"triangulates for minutes before its first point (it handles at most "
        f"{limit} in seconds); use method='differential_evolution', "
        "'dual_annealing' or 'direct' for this many dimensions"
    )
    if sampling_method != "simplicial":
        msg += f", or sampling_method='simplicial' up to {_SHGO_MAX_DIMS['simplicial']}"
    raise ValueError(msg)


class ScipyAskTell(Optimizer):
    """One scipy global optimizer driven by ask/tell.

    Parameters
    ----------
    method : {"differential_evolution", "dual_annealing", "direct", "shgo"}
    bounds : sequence of (low, high) or scipy.optimize.Bounds
        Finite.
    cache : PointCache, optional
        Shared evaluated-point cache (a pool's); default: one of its own.
    **kwargs
        Passed to the scipy function (``rng``, ``maxiter``, ``popsize``,
        ``maxfun``, ``polish``, ``callback``, ...). ``workers`` is managed here.
        With DE's ``vectorized=True`` scipy asks a whole generation at once and
        counts one evaluation per generation (its ``nfev``), as it does serially.
        ``args`` reach only a ``jac`` or ``hess`` in ``minimizer_kwargs``
        (scipy passes them on): the objective is evaluated elsewhere and does
        not receive them (``minimize(args=...)`` gives them to both; in a
        ``Search``, bind them with ``functools.partial``).
        ``{"jac": True}`` (an objective returning its gradient) is refused.

    Notes
    -----
    ``ask()`` returns ``Trial(number, x)``, ``x`` a vector; several asks in a
    row are possible while scipy's batch lasts. It returns ``None`` when every
    asked point waits for its value; while scipy computes between evaluations
    it waits for the next point (never forever: the thread either asks, ends or
    raises). An exception in scipy (a bad keyword value, a raising callback)
    is re-raised from the next ``ask()``/``tell()`` with its own type. ``close()``
    (or leaving a ``with`` block) stops the thread, also mid-iteration, and joins it.
    ``pause()`` does nothing here: the scipy run lives in the thread (a
    :class:`~dasktune.optim.replicas.ReplicaPool` pauses by stopping its
    replicas and starting new ones).

    Raises
    ------
    ValueError
        For an unknown method or bad bounds.
        For ``shgo`` in more dimensions than its sampling handles in seconds
        (11 for the default simplicial sampling, 7 for sobol and halton).
    TypeError
        For keywords the scipy function does not take.
    """

    def __init__(
        self,
        method: str,
        bounds: Any,
        *,
        cache: PointCache | None = None,
        ready: threading.Event | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self.bounds = check_problem(method, bounds, kwargs)
        self.method = method
        self.kwargs = dict(kwargs)
        given = kwargs.get("rng", kwargs.get("seed"))
        self.seed = given if isinstance(given, int) else None
        self.cache = cache if cache is not None else PointCache()
        self.ready = ready  # set whenever points are posted or the run ends
        # how long ask() waits for scipy to post its next point (None: until it
        # posts, ends or raises); a pool waits briefly, then asks another replica
        self.ask_wait: float | None = None
        self.evaluations = 0  # points actually asked (scipy's nfev counts repeats)
        self._cond = threading.Condition()
        self._queue: collections.deque[tuple[bytes, NDArray[np.float64]]] = (
            collections.deque()
        )
        self._asked: dict[int, bytes] = {}
        self._awaited: set[bytes] = set()  # the points scipy's thread waits for
        self._error: BaseException | None = None
        self._result: scipy.optimize.OptimizeResult | None = None
        self._stopping = False
        self._thread = threading.Thread(
            target=self._run, name=f"dasktune-scipy-{method}", daemon=True
        )
        self._thread.start()

    # -- the optimizer thread ------------------------------------------------------

    def _call_kwargs(self) -> dict[str, Any]:
        kwargs = dict(self.kwargs)
        if self.method == "differential_evolution":
            if kwargs.get("vectorized"):
                # scipy hands each generation to _evaluate as one (N, S) array
                # and counts one evaluation per call, as in a serial run
                kwargs.setdefault("updating", "deferred")
            elif kwargs.setdefault("updating", "deferred") == "deferred":
                kwargs["workers"] = self._map
            if kwargs.get("polish", True) is True and not kwargs.get("constraints"):
                kwargs["polish"] = self._polish
        elif self.method == "shgo":
            kwargs["workers"] = self._map
        elif self.method == "dual_annealing" and "minimizer_kwargs" not in kwargs:
            kwargs["minimizer_kwargs"] = self._dual_annealing_local_search()
        return kwargs

    def _dual_annealing_local_search(self) -> dict[str, Any]:
        """dual_annealing's default local search, its finite differences batched."""
        wrapper = scipy.optimize._dual_annealing.LocalSearchWrapper
        n = len(self.bounds)
        maxiter = min(
            max(n * wrapper.LS_MAXITER_RATIO, wrapper.LS_MAXITER_MIN),
            wrapper.LS_MAXITER_MAX,
        )
        return {
            "method": "L-BFGS-B",
            "options": {"maxiter": maxiter, "workers": self._map},
            "bounds": [tuple(pair) for pair in self.bounds],
        }

    def _signal(self) -> None:
        self._cond.notify_all()
        if self.ready is not None:
            self.ready.set()

    def _run(self) -> None:
        fun = getattr(scipy.optimize, self.method)
        try:
            bounds = [tuple(pair) for pair in self.bounds.tolist()]
            result = fun(self._evaluate, bounds, **self._call_kwargs())
        except _Stop:
            return
        except BaseException as err:
            with self._cond:
                self._error = err
                self._signal()
            return
        with self._cond:
            self._result = result
            self._signal()

    def _wait_for(self, keys: Iterable[bytes]) -> None:
        """Post the points not yet known, and wait for all their values."""
        missing = {}
        for key in keys:
            if self.cache.get(key) is None and key not in missing:
                missing[key] = np.frombuffer(key, dtype=np.float64).copy()
        with self._cond:
            self._queue.extend(missing.items())
            # told points leave this set; the last one wakes this thread (a
            # check of every point on every tell costs O(batch**2))
            self._awaited = set(missing)
            if missing:
                self._signal()
            while not all(self.cache.get(k) is not None for k in missing):
                if self._stopping:
                    raise _Stop
                self._cond.wait()

    def _evaluate(self, x: Any, *args: Any) -> Any:
        # args (scipy's, for a jac or hess in minimizer_kwargs): the objective
        # got them where it was evaluated
        if self.kwargs.get("vectorized") and np.ndim(x) == 2:
            # DE's vectorized=True: one point per column, one value each
            keys = [PointCache.key(column) for column in np.asarray(x).T]
            self._wait_for(keys)
            return np.array([self.cache.get(k) for k in keys], dtype=float)
        key = PointCache.key(x)
        self._wait_for([key])
        value = self.cache.get(key)
        assert value is not None
        return value

    def _map(self, func: Callable[[Any], Any], iterable: Iterable[Any]) -> list[Any]:
        points = list(iterable)
        self._wait_for(PointCache.key(x) for x in points)
        # scipy's own wrapper on every point (its counters stay exact); each call
        # is answered from the cache
        return [func(x) for x in points]

    def _polish(self, f: Callable[[Any], float], x0: Any, **kwargs: Any) -> Any:
        # DE's default polish, with the finite differences as one batch
        return scipy.optimize.minimize(
            f, x0, method="L-BFGS-B", options={"workers": self._map}, **kwargs
        )

    # -- ask/tell --------------------------------------------------------------------

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def _ask(self) -> NDArray[np.float64] | None:
        deadline = None if self.ask_wait is None else time.monotonic() + self.ask_wait
        with self._cond:
            while True:
                self._raise_if_failed()
                if self._queue:
                    key, x = self._queue.popleft()
                    self._asked[self._next_number] = key
                    self.evaluations += 1
                    return x.copy()
                if self._result is not None or self._asked or self._stopping:
                    return None
                if not self._thread.is_alive():
                    return None
                if deadline is None:
                    self._cond.wait(0.1)
                elif (left := deadline - time.monotonic()) > 0:
                    self._cond.wait(left)
                else:
                    return None

    def _tell(self, number: int, params: Any, value: float) -> None:
        with self._cond:
            self._raise_if_failed()
            key = self._asked.pop(number)
            self.cache.put(key, value)
            self._awaited.discard(key)
            if not self._awaited:
                self._cond.notify_all()

    @property
    def finished(self) -> bool:
        with self._cond:
            self._raise_if_failed()
            return self._result is not None

    @property
    def batch_size(self) -> int:
        """Points of scipy's current batch not yet told (the driver sends them
        all at once)."""
        with self._cond:
            return len(self._queue) + len(self._asked)

    @property
    def waiting(self) -> bool:
        """True when every asked point waits for its value (nothing to ask)."""
        with self._cond:
            return bool(self._asked) and not self._queue

    @property
    def result(self) -> scipy.optimize.OptimizeResult | None:
        """scipy's ``OptimizeResult`` once finished (``nfev`` is scipy's count;
        ``nfev_evaluated`` the points actually evaluated), else ``None``."""
        if self._result is not None:
            self._result.nfev_evaluated = self.evaluations
        return self._result

    def close(self) -> None:
        """Stop the optimizer thread (also mid-iteration) and join it."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(_JOIN_SECONDS)
        super().close()
        if self._thread.is_alive():
            msg = (
                f"{self.describe()}: its scipy thread did not stop within "
                f"{_JOIN_SECONDS:g} s of close() (still inside scipy's "
                f"{self.method}, or in a callback that does not return); it is a "
                "daemon thread and stops at its next evaluation"
            )
            raise TimeoutError(msg)

    def describe(self) -> str:
        options = ", ".join(
            f"{k}={v!r}"
            for k, v in self.kwargs.items()
            if k not in ("callback", "args")
        )
        return f"ScipyAskTell({self.method}, {options})"
