"""``map()`` and one call, as Dask futures.

:func:`async_map` applies a function to every element of an iterable on the
cluster and returns the results in input order; :func:`async_apply` submits one
call; :class:`ClientMap` is the map-like callable scipy's ``workers=`` takes.

``async_map`` is the map primitive of ``run/``, beside its ask/tell entry
(:func:`dasktune.run.entry.run`): work whose elements are all known, sent as
Dask futures and returned in input order, with no optimizer to tell and no
trial store to record in.

How ``async_map`` chunks its work
---------------------------------
A Dask task costs about a millisecond of overhead, so one task per element would
make tiny functions hundreds of times slower than ``multiprocessing``. Elements
are therefore grouped into chunks, one task each; a chunk travels to the worker,
and its results back, wrapped in one object (Dask's serialization walks plain
lists element by element, which costs ~30 µs per element against ~5 µs wrapped).

- ``chunksize=k`` fixes the chunk size; ``chunksize=1`` turns chunking off.
- With ``chunksize=None`` and an ``args`` of known length ``n`` (a list, an
  array, a ``range``), the elements are split into ``ncpu`` chunks whose sizes
  differ by at most one, one per slot: the least overhead Dask allows, and every
  thread busy until the end when the elements cost about the same. When their
  costs vary a lot, a smaller ``chunksize`` balances better.
- With ``chunksize=None`` and an iterable of unknown length (a generator), the
  first chunks hold one element; each finished chunk reports how long its calls
  took on the worker, and the next chunks are sized so that one task runs for
  about 0.2 s (growing at most eightfold from one chunk to the next).

At most ``ncpu`` chunks are in flight when ``ncpu`` is given; otherwise twice the
cluster's thread count, so that workers never wait for the client. Elements are
drawn from ``args`` only as the window frees, so a generator of a million elements
never becomes a million futures.

A result that cannot be pickled would stay on its worker: Dask fails to send
it and the caller waits for it. A chunk whose results will be pickled (a
worker in another process, or reached over TCP) therefore checks that they
pickle, and fails with the element named when one does not
(:mod:`dasktune.run.travel`).
"""

from __future__ import annotations

import collections
import itertools
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
from typing import Any, TypeVar

import cloudpickle
import distributed
from distributed.scheduler import KilledWorker
from distributed.security import Security

from dasktune._checks import (
    check_bool,
    check_callable,
    check_int,
    check_timeout,
    func_name,
    short_repr,
)
from dasktune.exceptions import DasktuneError
from dasktune.run.cluster import capacity, check_resources, get_client
from dasktune.run.keys import key_part
from dasktune.run.lost import explain_killed
from dasktune.run.map_here import map_here
from dasktune.run.policy import ExecutionPolicy
from dasktune.run.progress import progress_bar
from dasktune.run.retry import retried
from dasktune.run.stop import cancelled_here
from dasktune.run.submit import ChunkSizer, Window, raise_failed, split_sizes
from dasktune.run.timelimit import free_workers, stuck_worker
from dasktune.run.travel import (
    PROCESS,
    first_unpicklable,
    must_check,
    unpicklable_message,
)

__all__ = ["ClientMap", "async_apply", "async_map"]

T = TypeVar("T")
R = TypeVar("R")

_TARGET_CHUNK_SECONDS = 0.2
_MAX_GROWTH = 8


class _Chunk:
    """Consecutive elements of ``args`` travelling as one opaque object;
    ``limit``: the seconds each call may run (``trial_timeout``)."""

    __slots__ = ("items", "limit", "origin", "retries", "start")

    def __init__(
        self, start: int, items: list[Any], retries: int, limit: float | None = None
    ) -> None:
        self.start = start
        self.items = items
        self.retries = retries
        self.limit = limit
        self.origin = PROCESS


class _ChunkResult:
    """The results of one chunk and the seconds its calls took on the worker."""

    __slots__ = ("elapsed", "values")

    def __init__(self, values: list[Any], elapsed: float) -> None:
        self.values = values
        self.elapsed = elapsed


def _run_chunk(fun: Callable[[Any], Any], chunk: _Chunk) -> _ChunkResult:
    values: list[Any] = []
    started = time.perf_counter()
    limit = chunk.limit
    for offset, item in enumerate(chunk.items):
        if offset and cancelled_here():
            # its map is over (interrupted, failed): nobody reads the rest
            return _ChunkResult(values, time.perf_counter() - started)
        done = retried(partial(fun, item), chunk.retries, limit)
        err = done.error
        if err is not None:
            where = f"element {chunk.start + offset} of args: {short_repr(item)}"
            if not isinstance(err, Exception):
                # raised out of the task, SystemExit or KeyboardInterrupt
                # would kill the worker; raised again here, the caller
                msg = (
                    f"async_map: {where} raised {type(err).__qualname__}: "
                    f"{err}; caught on the worker so that the worker lives"
                )
                raise DasktuneError(msg) from err
            err.add_note(f"async_map: raised by {where}")
            raise err
        values.append(done.value)
    if must_check(chunk.origin):  # they will be pickled: check first
        bad = first_unpicklable(values, enumerate(values))
        if bad is not None:
            offset, value, why = bad
            where = (
                "a chunk of async_map"
                if offset is None
                else f"async_map: element {chunk.start + offset} of args "
                f"({short_repr(chunk.items[offset])})"
            )
            raise TypeError(unpicklable_message(where, value, why)) from why
    return _ChunkResult(values, time.perf_counter() - started)


_SHIPPED_CACHE: collections.OrderedDict[str, Callable[..., Any]] = (
    collections.OrderedDict()
)
_SHIPPED_CACHE_SIZE = 64


class Shipped:
    """A function pickled once on the client, unpickled once per worker process.

    Dask pickles a task's function with every ``client.map``; for a function
    defined in ``__main__`` or a notebook (pickled by value) that costs
    milliseconds each time. A ``Shipped`` function travels as bytes, and each
    worker process keeps the last few it has unpickled.
    """

    __slots__ = ("__name__", "payload", "token")

    def __init__(
        self, fun: Callable[..., Any], user: Callable[..., Any] | None = None
    ) -> None:
        try:
            self.payload = cloudpickle.dumps(fun)
        except Exception as err:
            # named as the user knows it (``user``: the function ``fun`` wraps)
            msg = (
                f"the function {func_name(user or fun)!r} cannot be pickled to be sent "
                f"to the workers: {err}; define it at module level, or keep what "
                "it uses (locks, open files, clients) out of its closure and its "
                "arguments (load such things on the workers instead)"
            )
            raise TypeError(msg) from err
        self.token = uuid.uuid4().hex
        self.__name__ = func_name(fun)

    def __getstate__(self) -> tuple[bytes, str, str]:
        return self.payload, self.token, self.__name__

    def __setstate__(self, state: tuple[bytes, str, str]) -> None:
        self.payload, self.token, self.__name__ = state

    def __call__(self, *args: Any) -> Any:
        fun = _SHIPPED_CACHE.get(self.token)
        if fun is None:
            fun = cloudpickle.loads(self.payload)
            _SHIPPED_CACHE[self.token] = fun
            while len(_SHIPPED_CACHE) > _SHIPPED_CACHE_SIZE:
                _SHIPPED_CACHE.popitem(last=False)
        return fun(*args)


def async_map(
    fun: Callable[[T], R],
    args: Iterable[T],
    ncpu: int | None = None,
    *,
    client: distributed.Client | None = None,
    security: Security | None = None,
    chunksize: int | None = None,
    retries: int = 0,
    progress: bool = False,
    timeout: float | None = None,
    resources: Mapping[str, float] | None = None,
    trial_timeout: float | None = None,
    execution: str = "auto",
) -> list[R]:
    """Apply ``fun`` to every element of ``args`` on the cluster, like ``map()``.

    Parameters
    ----------
    fun : callable
        Called as ``fun(element)``. Lambdas and closures work (Dask pickles with
        cloudpickle). Equal elements are still evaluated once each, so a
        stochastic ``fun`` gets one call per element.
    args : iterable
        Any iterable, a generator too: elements are drawn only as the window of
        in-flight work frees.
    ncpu : int, optional
        How many chunks of work may be in flight at once (default: the
        cluster's thread count, and as many more queued so that workers never
        wait; see the module notes). When dasktune has to start its own
        ``LocalCluster``, it starts ``ncpu`` workers.
    client : distributed.Client, optional
        The client to run on; see :func:`dasktune.get_client`.
    security : distributed.security.Security, optional
        TLS certificates for a ``tls://`` address; see :func:`dasktune.get_client`.
    chunksize : int, optional
        Elements per task. ``None`` chooses automatically (see the module notes);
        ``1`` gives one task per element.
    retries : int, default 0
        How many times a call that raised is run again, on its worker, before
        the error is raised (the other elements of its chunk are not re-run). Work lost with a dying worker is re-run by Dask in
        any case, within ``distributed.scheduler.allowed-failures``.
    progress : bool, default False
        Show a ``tqdm.auto`` progress bar.
    timeout : float, optional
        Seconds to wait for the whole map; then the rest is cancelled and
        ``TimeoutError`` raised.
    resources : mapping, optional
        Dask worker resources each task holds while it runs (``{"GPU": 1}``):
        it runs only on a worker that declared them. Unless ``chunksize`` is
        given, each element is a task of its own, spread over those workers.
    trial_timeout : float, optional
        Seconds one call may run. Past it the call is interrupted on its
        worker and the map raises ``dasktune.exceptions.TrialTimeoutError``
        (a ``TimeoutError``), "timed out after N s", with a note naming the
        element (not retried); the rest is cancelled. A call blocked in C code
        that does not stop within 2 s more is left in its thread and its
        worker restarted, with a ``RuntimeWarning`` (see ``Search.run``).
    execution : {"auto", "local", "tasks"}, default "auto"
        Where the calls run. ``"auto"``, with no client given (one may be
        current), times the first calls in this process and maps the rest here
        too, starting no cluster, while they are cheaper than a task's
        dispatch cost (or too few to pay for a cluster's start); otherwise on
        the cluster (see :class:`dasktune.run.policy.ExecutionPolicy`).
        ``"local"``: always here; ``"tasks"``: always on the cluster. A
        client, ``resources``, ``trial_timeout`` and ``progress`` use the
        cluster. The results are the same wherever the calls ran.

    Returns
    -------
    list
        ``[fun(x) for x in args]``, in input order.

    Raises
    ------
    TypeError
        If ``fun`` is not callable or ``args`` not iterable.
    ValueError
        If ``ncpu``, ``chunksize``, ``retries``, ``timeout`` or
        ``trial_timeout`` is out of range.
    TimeoutError
        If ``timeout`` passes first; ``TrialTimeoutError`` (a ``TimeoutError``)
        if a call runs past ``trial_timeout``.
    Exception
        Whatever ``fun`` raised, with its own type and a note naming the
        element's index and a short repr of it; the rest is cancelled and the
        cluster stays usable.

    See Also
    --------
    async_apply : one call as a future.
    ClientMap : a map-like for scipy's ``workers=``.

    Examples
    --------
    >>> async_map(lambda x: x * x, range(5))  # doctest: +SKIP
    [0, 1, 4, 9, 16]
    """
    check_callable("fun", fun)
    try:
        iterator = iter(args)
    except TypeError as err:
        msg = f"args must be iterable, got {type(args).__name__}: {short_repr(args)}"
        raise TypeError(msg) from err
    if ncpu is not None:
        check_int("ncpu", ncpu, 1)
    if chunksize is not None:
        check_int("chunksize", chunksize, 1)
    check_int("retries", retries, 0)
    check_timeout(timeout)
    check_bool("progress", progress)
    check_timeout(trial_timeout, "trial_timeout")
    try:
        n: int | None = len(args)  # type: ignore[arg-type]
    except TypeError:
        n = None
    if execution == "feed":
        msg = (
            "async_map: execution must be 'auto', 'local' or 'tasks'; got 'feed' "
            "(the feed is for a search's trials, Search.run)"
        )
        raise ValueError(msg)
    policy = ExecutionPolicy(
        execution, what="async_map", client=client, resources=resources,
        trial_timeout=trial_timeout, progress=progress, expected=n,
    )  # fmt: skip
    here: list[Any] = []
    if policy.forced is None or policy.forced.where == "local":
        started = time.perf_counter()
        here, decision = map_here(
            fun, iterator, policy=policy, retries=retries, timeout=timeout, n=n
        )
        if decision.where == "local":
            return here
        # the rest on the cluster, started now
        n = None if n is None else n - len(here)
        if timeout is not None:
            timeout = max(timeout - (time.perf_counter() - started), 1e-3)
    if client is None and ncpu is not None:
        client = get_client(n_workers=ncpu, security=security)
    else:
        client = get_client(client, security=security)
    if resources:
        check_resources(client, resources)
    threads = capacity(client, max_age=2.0)
    slots = ncpu if ncpu is not None else threads
    window = ncpu if ncpu is not None else 2 * threads

    if chunksize is not None or resources:
        sizes: Iterator[int] | None = itertools.repeat(chunksize or 1)
    elif n is not None:
        sizes = iter(split_sizes(n, slots))
    else:
        sizes = None  # adaptive, from the measured cost per element
    rest = _Mapper(fun, client, retries, resources, trial_timeout).run(
        iterator, n, sizes, window, progress, timeout, offset=len(here)
    )
    return here + rest if here else rest


class _Mapper:
    """One ``async_map`` call: a bounded window of chunk futures, harvested."""

    def __init__(
        self,
        fun: Callable[[Any], Any],
        client: distributed.Client,
        retries: int,
        resources: Mapping[str, float] | None = None,
        limit: float | None = None,
    ):
        self.resources = resources
        self.limit = limit
        self.runner = Shipped(partial(_run_chunk, fun), fun)
        self.client = client
        self.retries = retries
        self.prefix = f"map-{key_part(func_name(fun))}-{uuid.uuid4().hex}"
        self.sizer = ChunkSizer(_TARGET_CHUNK_SECONDS, growth=_MAX_GROWTH)
        self._lengths: dict[int, int] = {}  # of the chunks in flight, by start

    def _raise(self, future: distributed.Future, result: Any, start: int) -> None:
        """Re-raise a chunk's failure; a chunk whose workers died
        (``KilledWorker``) gets notes naming its elements, and memory when
        that was the likely cause."""
        try:
            raise_failed(future, result, "async_map")
        except KilledWorker as err:
            count = self._lengths.get(start, 1)
            where = (
                f"element {start} of args"
                if count == 1
                else f"elements {start} to {start + count - 1} of args (one chunk)"
            )
            err.add_note(
                f"async_map: {where} ran on the workers that died "
                f"(or waited there to run: task {future.key})"
            )
            explain_killed(self.client, err)
            raise

    def run(
        self,
        iterator: Iterator[Any],
        n: int | None,
        sizes: Iterator[int] | None,
        window: int,
        progress: bool,
        timeout: float | None,
        offset: int = 0,
    ) -> list[Any]:
        """Map ``iterator`` (``n`` elements if known), the first of them
        element ``offset`` of ``args`` (those before ran elsewhere)."""
        results: dict[int, list[Any]] = {}
        bar = progress_bar(progress, total=n, desc=self.prefix.rsplit("-", 1)[0])
        position = offset
        exhausted = False
        index = 0

        def submit_more(flying: Window[int]) -> None:
            # one client.map per refill: one graph update for the scheduler
            nonlocal position, exhausted, index
            chunks: list[_Chunk] = []
            while not exhausted and len(flying) + len(chunks) < window:
                size = next(sizes, 0) if sizes is not None else self.sizer.size
                items = list(itertools.islice(iterator, size)) if size else []
                if not items:
                    exhausted = True
                    break
                chunks.append(_Chunk(position, items, self.retries, self.limit))
                self._lengths[position] = len(items)
                position += len(items)
            if not chunks:
                return
            keys = [f"{self.prefix}-{index + i}" for i in range(len(chunks))]
            index += len(chunks)
            flying.map(
                self.runner,
                chunks,
                [c.start for c in chunks],
                keys=keys,
                resources=self.resources,
            )

        try:
            with Window[int](self.client, timeout, what="async_map") as flying:
                submit_more(flying)
                while len(flying):
                    try:
                        batch = flying.next_batch()
                    except TimeoutError as err:
                        msg = (
                            f"async_map did not finish within timeout={timeout} s: "
                            f"{sum(len(v) for v in results.values())} of "
                            f"{n if n is not None else 'an unknown number of'} elements "
                            "done; the rest was cancelled"
                        )
                        raise TimeoutError(msg) from err
                    failed = next(
                        ((f, r, t) for f, r, t in batch if f.status != "finished"),
                        None,
                    )
                    if failed is not None:
                        # raised with the failed future alone referenced: the
                        # rest of the batch is released with the window
                        batch = []
                        self._free(flying, *failed[:2])
                        self._raise(*failed)
                    self._take(batch, results, bar)
                    batch = []  # the next wait's error must not hold these
                    submit_more(flying)
        finally:
            bar.close()
        out: list[Any] = []
        for start in sorted(results):
            out.extend(results[start])
        return out

    def _free(
        self, flying: Window[int], future: distributed.Future, result: Any
    ) -> None:
        """A call that ran past ``trial_timeout`` and did not stop: cancel the
        rest, then restart its worker (:func:`free_workers`)."""
        exc = result[1] if isinstance(result, tuple) and len(result) == 3 else None
        worker = stuck_worker(exc)
        if worker is None:
            return
        flying.cancel()
        notes = getattr(exc, "__notes__", ())
        what = next(
            (n.removeprefix("async_map: raised by ") for n in notes if "element" in n),
            "a call",
        )
        free_workers(self.client, [(worker, what)], self.limit or 0.0)

    def _take(
        self,
        batch: list[tuple[distributed.Future, Any, int]],
        results: dict[int, list[Any]],
        bar: Any,
    ) -> None:
        """Keep a harvested batch's values (in a frame of its own: no loop
        variable of ``run`` keeps a finished future alive, as a later error's
        traceback would)."""
        for _, result, start in batch:
            del self._lengths[start]
            results[start] = result.values
            bar.update(len(result.values))
            self.sizer.observe(result.elapsed, len(result.values))


def async_apply(
    pool: distributed.Client | None,
    fun: Callable[..., R],
    args: tuple[Any, ...] | list[Any] = (),
    kwargs: dict[str, Any] | None = None,
    *,
    security: Security | None = None,
    **submit_kwargs: Any,
) -> distributed.Future:
    """Submit one call ``fun(*args, **kwargs)`` and return its future.

    Parameters
    ----------
    pool : distributed.Client or None
        The client (OptimTools called it a pool); ``None`` for
        :func:`dasktune.get_client`.
    fun : callable
    args : tuple, optional
        Positional arguments.
    kwargs : dict, optional
        Keyword arguments of ``fun`` (kept apart from Dask's own options).
    security : distributed.security.Security, optional
        TLS certificates for a ``tls://`` address; see :func:`dasktune.get_client`.
    **submit_kwargs
        Passed to :meth:`distributed.Client.submit`: ``retries``, ``resources``,
        ``workers``, ``priority``, ``key``, ... Calls are not de-duplicated
        (``pure=False``) unless ``pure=True`` is given.

    Returns
    -------
    distributed.Future

    Examples
    --------
    >>> future = async_apply(None, pow, (2, 10))  # doctest: +SKIP
    >>> future.result()  # doctest: +SKIP
    1024
    """
    check_callable("fun", fun)
    if not isinstance(args, tuple | list):
        msg = f"args must be a tuple of positional arguments, got {type(args).__name__}"
        raise TypeError(msg)
    if kwargs is not None and not isinstance(kwargs, dict):
        msg = f"kwargs must be a dict of keyword arguments, got {type(kwargs).__name__}"
        raise TypeError(msg)
    client = get_client(pool, security=security)
    call = partial(fun, **kwargs) if kwargs else fun
    submit_kwargs.setdefault("pure", False)
    submit_kwargs.setdefault(
        "key", f"apply-{key_part(func_name(fun))}-{uuid.uuid4().hex}"
    )
    return client.submit(call, *args, **submit_kwargs)


class ClientMap:
    """A map-like callable running each batch on a Dask client.

    scipy's ``differential_evolution`` and ``shgo`` accept it as ``workers=``:
    each generation (or batch of sampling points) becomes one :func:`async_map`.

    Parameters
    ----------
    client : distributed.Client, optional
        See :func:`dasktune.get_client`.
    chunksize : int, optional
        Passed to :func:`async_map`.

    Examples
    --------
    >>> from scipy.optimize import differential_evolution
    >>> differential_evolution(
    ...     f, bounds, workers=ClientMap(client), updating="deferred"
    ... )  # doctest: +SKIP
    """

    def __init__(
        self, client: distributed.Client | None = None, *, chunksize: int | None = None
    ) -> None:
        self.client = get_client(client)
        self.chunksize = chunksize

    def __call__(self, func: Callable[[T], R], iterable: Iterable[T]) -> list[R]:
        """Return ``[func(x) for x in iterable]``, computed on the cluster."""
        return async_map(func, iterable, client=self.client, chunksize=self.chunksize)
