"""ProducerConsumer: data loaded once, kept on the workers, evaluated where it lives.

The elements of ``init_data`` are split into contiguous shards. Each shard is a
worker-pinned Dask actor that runs ``init_function`` once per element when it is
created and keeps the loaded objects in the worker's memory: they never travel
(they may be huge or unpicklable). ``run(params)`` then applies
``process_function(params, loaded)`` to every element, one round trip per shard,
with the shards working in parallel on the workers' threads.

Losing a worker loses no data: a shard whose worker died is rebuilt — its
elements sent again and ``init_function`` re-run for just those elements — on the
remaining or new workers, and the call in progress is retried there, so the
result is the same as without the loss. (Dask actors are not resilient by
themselves: the scheduler marks a lost actor as erred and never recomputes it.)
A rebuild waits for a live worker and for the loading at most
``rebuild_timeout`` seconds, then raises ``TimeoutError`` saying how far it got.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any, Self, cast

import distributed
from distributed.security import Security

from dasktune._checks import (
    check_callable,
    check_int,
    check_timeout,
    func_name,
    short_repr,
)
from dasktune.run.cluster import capacity, get_client
from dasktune.run.keys import key_part
from dasktune.run.submit import Window, raise_failed, split_sizes
from dasktune.run.travel import (
    PROCESS,
    first_unpicklable,
    must_check,
    unpicklable_message,
)

__all__ = ["ProducerConsumer"]

_REBUILD_ATTEMPTS = 3
_LOSS_CHECK_SECONDS = 2.0  # visible mode: how often a slow call checks for losses
_LOSS_WAIT_SECONDS = 10.0  # how long an unreachable worker may take to be seen lost
#: the default bound of a rebuild: far above a worker's restart on a loaded
#: machine (tens of seconds), below "for ever"
REBUILD_TIMEOUT = 600.0
_BUILD_LOOK_SECONDS = 1.0  # how often a build in progress looks at the workers


class _Payload:
    """Any value travelling as one opaque object (not walked by Dask)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _as_error(err: BaseException, where: str) -> BaseException:
    """``err`` if it is an ``Exception``; a ``RuntimeError`` naming a
    ``SystemExit`` or ``KeyboardInterrupt`` raised by user code on a worker,
    so that it fails the call as an error instead of ending the worker's
    actor thread or, re-raised in the caller, the caller's program."""
    if isinstance(err, Exception):
        return err
    return RuntimeError(f"{where} raised {type(err).__name__}: {err}")


class _Holder:
    """The actor holding the loaded objects of one worker's shards."""

    def __init__(
        self,
        init_function: Callable[[Any], Any],
        process_function: Callable[[Any, Any], Any],
        shards: _Payload,
        origin: str = PROCESS,
    ) -> None:
        self.process_function = process_function
        # results that will be pickled to reach the caller are checked first
        self.check = must_check(origin)
        self.shards: list[tuple[int, list[Any]]] = []  # (start, loaded objects)
        for start, items in shards.value:
            loaded = []
            for offset, item in enumerate(items):
                try:
                    loaded.append(init_function(item))
                except BaseException as err:
                    raised = _as_error(err, "init_function")
                    raised.add_note(
                        "ProducerConsumer: init_function raised on "
                        f"init_data[{start + offset}]"
                    )
                    if raised is err:
                        raise
                    raise raised from err
            self.shards.append((start, loaded))
        self.calls = 0

    def _shards(
        self,
        indices: list[int],
        batch: list[Any],
        reduce: Callable[[list[Any]], Any] | None,
    ) -> list[list[Any]]:
        out = []
        for index in indices:
            start, loaded = self.shards[index]
            values_per_params = []
            for params in batch:
                values = []
                for offset, obj in enumerate(loaded):
                    try:
                        values.append(self.process_function(params, obj))
                    except BaseException as err:
                        raised = _as_error(err, "process_function")
                        raised.add_note(
                            "ProducerConsumer: process_function raised on "
                            f"init_data[{start + offset}] with params "
                            f"{short_repr(params)}"
                        )
                        if raised is err:
                            raise
                        raise raised from err
                values_per_params.append(
                    reduce(values) if reduce is not None else values
                )
            out.append(values_per_params)
        if self.check:
            self._check(indices, batch, reduce, out)
        return out

    def _check(
        self,
        indices: list[int],
        batch: list[Any],
        reduce: Callable[[list[Any]], Any] | None,
        out: list[list[Any]],
    ) -> None:
        """Fail the call, naming the item and the parameters, when a result
        cannot be pickled (:mod:`dasktune.run.travel`)."""

        def parts() -> Iterator[tuple[str, Any]]:
            for index, per_params in zip(indices, out, strict=True):
                start = self.shards[index][0]
                for params, values in zip(batch, per_params, strict=True):
                    with_params = f"with params {short_repr(params)}"
                    if reduce is not None:
                        yield (
                            f"reduce over the shard at init_data[{start}] {with_params}",
                            values,
                        )
                        continue
                    for offset, value in enumerate(values):
                        yield (
                            (
                                f"process_function on init_data[{start + offset}] "
                                f"{with_params}"
                            ),
                            value,
                        )

        bad = first_unpicklable(out, parts())
        if bad is not None:
            where, value, err = bad
            what = f"ProducerConsumer: {where or 'a call'}"
            raise TypeError(unpicklable_message(what, value, err)) from err

    async def evaluate(
        self, batch: _Payload, reduce: Callable[[list[Any]], Any] | None
    ) -> _Payload:
        # this worker's shards in parallel on its task threads, one job per
        # thread (an actor's own methods share a single thread per worker)
        worker = distributed.get_worker()
        executor = worker.executors["default"]
        n_jobs = max(1, min(worker.state.nthreads, len(self.shards)))
        jobs = [list(range(len(self.shards)))[j::n_jobs] for j in range(n_jobs)]
        loop = asyncio.get_running_loop()
        results = await asyncio.gather(
            *(
                loop.run_in_executor(executor, self._shards, job, batch.value, reduce)
                for job in jobs
            )
        )
        parts: list[Any] = [None] * len(self.shards)
        for job, result in zip(jobs, results, strict=True):
            for index, part in zip(job, result, strict=True):
                parts[index] = part
        self.calls += 1
        return _Payload(parts)


def _evaluate_in_place(
    key: str, batch: _Payload, reduce: Callable[[list[Any]], Any] | None
) -> _Payload:
    """A task on the worker holding actor ``key``: its shards, in this thread."""
    holder = cast(_Holder, distributed.get_worker().state.actors[key])
    return _Payload(
        holder._shards(list(range(len(holder.shards))), batch.value, reduce)
    )


class _LostShard(Exception):
    """A shard's worker is gone (raised to rebuild it and retry)."""


def _is_lost(future: distributed.Future, client: distributed.Client, ask: bool) -> bool:
    """Whether a shard's actor is gone; ``ask`` the scheduler, or trust the
    status the client already has (free: the hot path)."""
    if future.status in ("error", "lost", "cancelled"):
        return True
    if not ask:
        return False
    return not client.who_has([future]).get(future.key)


class ProducerConsumer:
    """Load data once per element on the workers; evaluate it there many times.

    Parameters
    ----------
    init_function : callable
        ``init_function(item) -> loaded``, run once per element of
        ``init_data``, on a worker.
    init_data : sequence
        The elements to load (file names, shard descriptions, arrays...). Each
        is sent to its worker once.
    process_function : callable
        ``process_function(params, loaded) -> value``, run for every element
        where it lives.
    n_cores : int, optional
        Number of shards (default: the cluster's thread count, at most one per
        element). Shards are spread over the workers and run in parallel.
    client : distributed.Client, optional
    security : distributed.security.Security, optional
        TLS certificates for a ``tls://`` address; see :func:`dasktune.get_client`.
    timeout : float, optional
        Seconds a call may take before ``TimeoutError``.
    rebuild_timeout : float or None, default 600
        Seconds the rebuild of the shards of a lost worker may take — waiting
        for a live worker, then re-running ``init_function`` for those shards —
        before ``TimeoutError`` (``None``: no limit; ``timeout``, if shorter,
        bounds it too).
    name : str, optional
        Names the shards' tasks on the dashboard (default: the init function's).
    reduce : callable, optional
        The default reduction of :meth:`run` and :meth:`map`, and what makes the
        object usable as the objective of ``SPSA``, ``minimize`` and ``Search``
        (``reduce=sum`` for a log-likelihood summed over the data).
    visible : bool, default False
        Run each call as tasks named ``pc-run-<name>-...``, one per
        worker, pinned where the data lives, so the dashboard's task stream shows
        them. The default calls the actors directly: a few milliseconds faster
        per call, but actor calls do not appear in the task stream.

    Raises
    ------
    TypeError
        If a function is not callable or ``init_data`` is not a sequence.
    ValueError
        If ``init_data`` is empty, ``n_cores`` < 1, or a timeout is not a
        positive number of seconds.
    Exception
        Whatever ``init_function`` raised, with a note naming the element.

    Examples
    --------
    >>> pc = ProducerConsumer(load_shard, paths, loglike)  # doctest: +SKIP
    >>> pc.run(theta, reduce=sum)  # doctest: +SKIP
    >>> SPSA(pc.objective(reduce=sum), theta0)  # doctest: +SKIP
    """

    def __init__(
        self,
        init_function: Callable[[Any], Any],
        init_data: Sequence[Any],
        process_function: Callable[[Any, Any], Any],
        n_cores: int | None = None,
        *,
        client: distributed.Client | None = None,
        security: Security | None = None,
        timeout: float | None = None,
        rebuild_timeout: float | None = REBUILD_TIMEOUT,
        name: str | None = None,
        reduce: Callable[[list[Any]], Any] | None = None,
        visible: bool = False,
    ) -> None:
        check_callable("init_function", init_function)
        if reduce is not None:
            check_callable("reduce", reduce)
        check_callable("process_function", process_function)
        if isinstance(init_data, str | bytes) or not isinstance(init_data, Sequence):
            msg = (
                "init_data must be a sequence (a list, a tuple) of the elements to "
                f"load, got {type(init_data).__name__}"
            )
            raise TypeError(msg)
        if len(init_data) == 0:
            msg = "init_data is empty; give at least one element to load"
            raise ValueError(msg)
        check_int("n_cores", n_cores, 1, optional=True)
        check_timeout(timeout)
        check_timeout(rebuild_timeout, "rebuild_timeout")
        self.client = get_client(client, security=security)
        self.init_function, self.process_function = init_function, process_function
        self.data = list(init_data)
        self.timeout = timeout
        self.rebuild_timeout = rebuild_timeout
        self.reduce = reduce
        self.visible = bool(visible)
        self.name = name or func_name(init_function)
        n = min(n_cores or capacity(self.client), len(self.data))
        self.shards: list[tuple[int, int]] = []  # (start, stop) per shard
        start = 0
        for size in split_sizes(len(self.data), n):
            self.shards.append((start, start + size))
            start += size
        # one actor per worker holds that worker's shards: a call is one round
        # trip per worker, and the worker's threads run its shards in parallel
        workers = sorted(self.client.nthreads()) or [None]
        groups: dict[Any, list[int]] = {}
        for i in range(n):
            groups.setdefault(workers[i % len(workers)], []).append(i)
        self.groups = list(groups.values())
        self._homes = list(groups)
        self._futures: list[distributed.Future | None] = [None] * len(self.groups)
        self._actors: list[Any] = [None] * len(self.groups)
        self.rebuilds = 0
        self._closed = False
        self._cancelling: asyncio.Future[Any] | None = None
        try:
            self._build(list(range(len(self.groups))))
        except BaseException:
            self.close()
            raise

    # -- shards ------------------------------------------------------------------

    def _build(self, indices: list[int], *, rebuild: bool = False) -> None:
        """Create (or re-create, ``rebuild``) the actors ``indices``, and wait
        for them, within ``timeout`` (a rebuild: ``rebuild_timeout`` too).

        Each actor is pinned, loosely, to a live worker. One whose worker
        leaves before the actor is made is sent again to a live worker: Dask
        keeps a task restricted to a worker that is gone in ``no-worker`` when
        no other worker runs, and does not give it to the workers that join
        later, so that it would wait for ever.
        """
        started = time.monotonic()
        limits = [("timeout", self.timeout)]
        if rebuild:
            limits.append(("rebuild_timeout", self.rebuild_timeout))
        name, bound = min(
            [(n, b) for n, b in limits if b is not None],
            key=lambda limit: limit[1],
            default=("timeout", None),
        )
        deadline = None if bound is None else started + bound
        what = (
            f"rebuilding {len(indices)} of the {len(self.groups)} shard groups of "
            f"{self!r} after a lost worker"
            if rebuild
            else f"loading the data of {self!r}"
        )

        def expired(alive: int, done: int) -> TimeoutError:
            msg = (
                f"{what} timed out after {time.monotonic() - started:.3g} s "
                f"({name}={bound} s): {done} of {len(indices)} shard groups "
                f"loaded, {alive} workers alive; raise {name}, or check on the "
                "dashboard that the cluster has workers and that they are busy "
                "with it"
            )
            return TimeoutError(msg)

        alive = sorted(self.client.nthreads())
        if rebuild and not alive:
            # submitted now, an actor would wait in no-worker (which Dask does
            # not support for actors): wait for a worker first
            try:
                self.client.wait_for_workers(1, timeout=_left(deadline))
            except TimeoutError:
                raise expired(0, 0) from None
            alive = sorted(self.client.nthreads())
        token = uuid.uuid4().hex[:8]
        self._submit(indices, alive, token)
        pending = list(indices)
        try:
            while True:
                step = _BUILD_LOOK_SECONDS
                left = _left(deadline)
                if left is not None:
                    step = min(step, left)
                futures = [self._futures[g] for g in pending]
                with contextlib.suppress(TimeoutError):
                    distributed.wait(futures, timeout=step)
                pending = [g for g in pending if not _done(self._futures[g])]
                if not pending:
                    break
                alive = sorted(self.client.nthreads())
                if deadline is not None and time.monotonic() >= deadline:
                    raise expired(len(alive), len(indices) - len(pending))
                gone = [
                    g
                    for g in pending
                    if self._homes[g] is not None and self._homes[g] not in alive
                ]
                if gone and alive:  # made nowhere yet: on a live worker now
                    self.client.cancel([self._futures[g] for g in gone])
                    self._submit(gone, alive, uuid.uuid4().hex[:8])
        except BaseException:
            if rebuild:  # the next call starts them again
                left_over = [self._futures[g] for g in pending]
                for g in pending:
                    self._futures[g] = None
                self.client.cancel([f for f in left_over if f is not None])
            raise
        for g in indices:
            future = self._futures[g]
            assert future is not None
            if future.status == "error":
                future.result()  # raises init_function's error, with its note
            self._actors[g] = future.result()

    def _submit(self, indices: list[int], alive: list[str], token: str) -> None:
        """Send the actors ``indices`` to be made, each on its home worker if
        that one lives, else on a live one (any, if none is known)."""
        for g in indices:
            home = self._homes[g]
            if home not in alive and alive:  # its worker is gone: another one
                home = self._homes[g] = alive[g % len(alive)]
            shards = [
                (self.shards[i][0], self.data[slice(*self.shards[i])])
                for i in self.groups[g]
            ]
            options: dict[str, Any] = {}
            if home is not None:
                options = {"workers": [home], "allow_other_workers": True}
            self._futures[g] = self.client.submit(
                _Holder,
                self.init_function,
                self.process_function,
                _Payload(shards),
                PROCESS,
                actor=True,
                key=f"pc-load-{key_part(self.name)}-{g}-{token}",
                **options,
            )

    def _ensure(self, after_error: bool = False) -> None:
        if self._closed:
            msg = "this ProducerConsumer is closed; create a new one"
            raise RuntimeError(msg)
        lost = [
            i
            for i, f in enumerate(self._futures)
            if f is None or _is_lost(f, self.client, ask=after_error)
        ]
        if lost:
            self.rebuilds += len(lost)
            self._build(lost, rebuild=True)

    # -- evaluation ----------------------------------------------------------------

    def _call(
        self, batch: list[Any], reduce: Callable[[list[Any]], Any] | None
    ) -> list[Any]:
        """Every shard on ``batch``: per shard, one entry per parameter set."""
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        for attempt in range(_REBUILD_ATTEMPTS + 1):
            self._ensure(after_error=attempt > 0)
            payload = _Payload(batch)
            with self.client.as_current():
                try:
                    if self.visible:
                        per_group = self._as_tasks(payload, reduce, deadline)
                    else:
                        calls = [a.evaluate(payload, reduce) for a in self._actors]
                        per_group = [
                            c.result(timeout=_left(deadline)).value for c in calls
                        ]
                except TimeoutError as err:
                    msg = (
                        f"ProducerConsumer {self.name!r}: no result within "
                        f"timeout={self.timeout} s"
                    )
                    raise TimeoutError(msg) from err
                except Exception as err:
                    # a lost worker is rebuilt and the call retried; anything
                    # else is the process function's error
                    if attempt == _REBUILD_ATTEMPTS or not self._lost_one(
                        err, deadline
                    ):
                        raise
                    continue
            by_shard: list[Any] = [None] * len(self.shards)
            for group, parts in zip(self.groups, per_group, strict=True):
                for i, part in zip(group, parts, strict=True):
                    by_shard[i] = part
            return by_shard
        raise AssertionError("unreachable")  # pragma: no cover

    def _lost_one(self, err: Exception, deadline: float | None) -> bool:
        """Whether a shard's worker is gone after ``err``. A connection error
        (the actor's worker unreachable) can come before the scheduler has
        noticed the loss: then wait for it to, a few seconds at most."""
        from_user = any(
            note.startswith("ProducerConsumer: ")
            for note in getattr(err, "__notes__", ())
        )
        patience = (
            _LOSS_WAIT_SECONDS if isinstance(err, OSError) and not from_user else 0
        )
        end = time.monotonic() + patience
        if deadline is not None:
            end = min(end, deadline)
        while True:
            if any(
                _is_lost(f, self.client, ask=True)
                for f in self._futures
                if f is not None
            ):
                return True
            if time.monotonic() >= end:
                return False
            time.sleep(0.1)

    def _as_tasks(
        self,
        payload: _Payload,
        reduce: Callable[[list[Any]], Any] | None,
        deadline: float | None,
    ) -> list[Any]:
        """One named task per worker, pinned where its actor lives."""
        actors = [f for f in self._futures if f is not None]
        where = self.client.who_has(actors)
        token = uuid.uuid4().hex[:8]
        holders: list[Sequence[str] | None] = []
        for actor in actors:
            holders.append(where.get(actor.key) or None)
            if holders[-1] is None:
                raise _LostShard(actor.key)
        with Window[int](self.client) as flying:
            flying.map(
                partial(_evaluate_in_place, batch=payload, reduce=reduce),
                [actor.key for actor in actors],
                range(len(actors)),
                keys=[
                    f"pc-run-{key_part(self.name)}-{g}-{token}"
                    for g in range(len(actors))
                ],
                workers=holders,
                allow_other_workers=False,
            )
            while True:
                step = _LOSS_CHECK_SECONDS
                left = _left(deadline)
                if left is not None:
                    step = min(step, left)
                if flying.wait(step):
                    break
                # a task pinned to a dead worker would wait for it forever
                if any(_is_lost(f, self.client, ask=True) for f in actors):
                    raise _LostShard(self.name) from None
                if left is not None and left <= step:
                    raise TimeoutError
            parts: list[Any] = [None] * len(actors)
            while len(flying):
                for future, result, g in flying.next_batch():
                    raise_failed(future, result, "ProducerConsumer")
                    parts[g] = result.value
            return parts

    def run(self, params: Any, reduce: Callable[[list[Any]], Any] | None = None) -> Any:
        """``process_function(params, loaded)`` for every element.

        Parameters
        ----------
        params : any
        reduce : callable, optional
            Takes a list and satisfies ``reduce([reduce(a), reduce(b)]) ==
            reduce(a + b)`` (``sum``, ``min``, ``max``; not ``len`` or a mean).
            Applied on each worker first, then across shards: one value per shard
            travels. Default: the ``reduce`` given at construction.

        Returns
        -------
        list or value
            The values in ``init_data`` order, or their reduction.

        Raises
        ------
        Exception
            What ``process_function`` raised, with a note naming the element's
            index in ``init_data``; the object stays usable.
        TimeoutError
            After ``timeout`` seconds.
        """
        return self.map([params], reduce=reduce)[0]

    def map(
        self,
        params_list: Sequence[Any],
        reduce: Callable[[list[Any]], Any] | None = None,
    ) -> list[Any]:
        """:meth:`run` for many parameter sets, in one round trip per shard.

        Returns one entry per parameter set: a list in ``init_data`` order, or the
        reduced value.
        """
        if reduce is None:
            reduce = self.reduce
        elif not callable(reduce):
            check_callable("reduce", reduce)
        batch = list(params_list)
        if not batch:
            return []
        per_shard = self._call(batch, reduce)
        out = []
        for j in range(len(batch)):
            parts = [shard[j] for shard in per_shard]
            if reduce is not None:
                out.append(reduce(parts))
            else:
                out.append([value for part in parts for value in part])
        return out

    def evaluate_batch(self, params: Sequence[Any]) -> list[Any]:
        """The batch-objective protocol: ``map(params)`` with ``self.reduce``."""
        if self.reduce is None:
            msg = (
                "a ProducerConsumer used as an objective needs a reduction: "
                "ProducerConsumer(..., reduce=sum) or pc.objective(reduce=sum)"
            )
            raise TypeError(msg)
        return self.map(params, reduce=self.reduce)

    def objective(self, reduce: Callable[[list[Any]], Any] = sum) -> _ReducedObjective:
        """A batch objective for ``SPSA``, ``minimize`` and ``Search``.

        Each batch of parameter sets the optimizer asks is evaluated in one round
        trip per shard; the value of a parameter set is ``reduce`` over the
        elements (``sum`` by default: a log-likelihood summed over shards).
        """
        check_callable("reduce", reduce)
        return _ReducedObjective(self, reduce)

    # -- lifetime ----------------------------------------------------------------------

    def close(self) -> None:
        """Release the actors and the memory they hold on the workers."""
        self._closed = True
        futures = [f for f in self._futures if f is not None]
        self._actors = [None] * len(self._actors)
        self._futures = [None] * len(self._futures)
        if futures:
            cancelled = self.client.cancel(futures)
            if inspect.isawaitable(cancelled):
                # an asynchronous client on its own event loop hands back the
                # coroutine: run it there rather than drop it un-awaited
                self._cancelling = asyncio.ensure_future(cancelled)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"ProducerConsumer({self.name!r}, {len(self.data)} elements in "
            f"{len(self.shards)} shards)"
        )


class _ReducedObjective:
    """``ProducerConsumer.map`` with a reduction, as the driver's batch objective."""

    def __init__(self, pc: ProducerConsumer, reduce: Callable[[list[Any]], Any]):
        self.pc, self.reduce = pc, reduce
        self.__name__ = f"ProducerConsumer-{pc.name}"
        self.process_function = pc.process_function

    def evaluate_batch(self, params: Sequence[Any]) -> list[Any]:
        """One value per parameter set; one round trip per shard for them all."""
        return self.pc.map(params, reduce=self.reduce)


def _done(future: distributed.Future | None) -> bool:
    return future is None or future.done()


def _left(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    return max(0.0, deadline - time.monotonic())
