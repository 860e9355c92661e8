"""The one windowed submitter: futures in flight, harvested, cancelled on exit.

``async_map``, the :class:`~dasktune.run.driver.Driver` and ``ProducerConsumer``
(its visible, task-based calls) all send work the same way:

- :class:`Submitter` is what a run sends its work through, whatever carries
  it: :class:`Window` (a task each) and
  :class:`~dasktune.run.feed.FedWindow` (long-lived tasks fed through
  actors) implement it, and one contract suite
  (``tests/test_submitter_contract.py``) runs on each;
- :class:`Window` keeps the futures in flight with a tag each (what they
  carry), harvests them with ``distributed.as_completed(..., with_results=True)``
  (never by polling), raises ``TimeoutError`` once the ``timeout`` given at its
  creation has passed, and cancels whatever is still in flight when it is left
  (also when an exception flies);
- :func:`split_sizes` splits ``n`` elements into near-equal parts, and
  :func:`per_worker` spreads them over the cluster's workers in proportion to
  their threads;
- :class:`ChunkSizer` sizes the chunks of work whose cost is not known ahead,
  from the time their calls took on the workers.

``retries`` means one thing everywhere: how many times one call that raised is
run again, on its worker, before its error counts (work lost with a dying worker
is re-run by Dask, within ``distributed.scheduler.allowed-failures``).

A task sent to one worker (a batch's share, ``allow_other_workers=True``) that
Dask cannot place once every worker it knew is gone stays ``no-worker`` even
when new workers join (Dask places such a task only on the workers it names).
:class:`Window` re-sends it, under a new key, to the workers alive; while no
worker is alive it waits for one at most ``dasktune.no-workers-timeout``
seconds (Dask configuration; :mod:`dasktune.run.lost`), then raises
``NoWorkersError`` saying what it waited for. Left by an exception (Ctrl-C,
an error), it stops its tasks (:func:`dasktune.run.stop.stop_tasks`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, Protocol, Self, TypeVar, runtime_checkable

import distributed

from dasktune.run.lost import NoWorkersClock
from dasktune.run.stop import stop_tasks

__all__ = [
    "ChunkSizer",
    "Submitter",
    "Window",
    "check_map",
    "per_worker",
    "raise_failed",
    "split_sizes",
]

Tag = TypeVar("Tag")
logger = logging.getLogger("dasktune")

#: how often a window blocked on pinned tasks looks for workers that left
_LOST_CHECK_SECONDS = 1.0


@dataclass
class _Pinned:
    """How a task sent to one worker was made: enough to send it again."""

    runner: Any
    payload: Any
    key: str
    worker: str
    resources: dict[str, float] | None
    sends: int = 1


@runtime_checkable
class Submitter(Protocol[Tag]):
    """What a run sends its work through: payloads in flight, one tag each,
    harvested as they finish, stopped when it is left.

    The contract, for every implementation:

    - ``map(runner, payloads, tags, keys=...)`` sends ``runner(payload)`` for
      each payload; payloads, tags and keys of different lengths raise
      ``ValueError`` before anything is sent;
    - ``len(window)`` is how many are in flight, not yet harvested;
    - ``next_batch()`` blocks until at least one finished and returns every
      finished one as ``(finished, result, tag)``: ``finished.status`` is
      ``"finished"`` with the runner's result, or ``"error"`` with a
      ``(type, exception, traceback)`` result, the exception the runner's own;
      ``next_batch(block=False)`` returns those finished now, perhaps none.
      Each tag comes back once. Past the ``timeout`` the window was made with,
      it raises ``TimeoutError``;
    - ``arrived()`` says whether ``next_batch`` would return something now;
    - ``interrupt()`` (a run ended by an error or Ctrl-C) makes the work
      running stop, and returns ``None`` or a sentence naming what still runs;
    - ``cancel()``, and leaving a ``with`` block, drops what is in flight and
      stops it (idempotent).
    """

    def __len__(self) -> int: ...

    def map(
        self,
        runner: Any,
        payloads: Sequence[Any],
        tags: Iterable[Tag],
        *,
        keys: Sequence[str],
        workers: Sequence[Any] | None = None,
        allow_other_workers: bool = True,
        resources: Mapping[str, float] | None = None,
    ) -> None: ...

    def next_batch(self, block: bool = True) -> list[tuple[Any, Any, Tag]]: ...

    def arrived(self) -> bool: ...

    def interrupt(self) -> str | None: ...

    def cancel(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


def check_map(
    payloads: Sequence[Any], tags: Iterable[Tag], keys: Sequence[str]
) -> list[Tag]:
    """``tags`` as a list, once payloads, tags and keys are as many each
    (:meth:`Submitter.map`'s check, before anything is sent).

    >>> check_map([1, 2], "ab", ["k1", "k2"])
    ['a', 'b']
    >>> check_map([1, 2], ["a"], ["k1", "k2"])
    Traceback (most recent call last):
    ...
    ValueError: map() takes one tag and one key per payload, got 2 payloads, 1 tags and 2 keys
    """
    tags = list(tags)
    if not len(payloads) == len(tags) == len(keys):
        msg = (
            f"map() takes one tag and one key per payload, got {len(payloads)} "
            f"payloads, {len(tags)} tags and {len(keys)} keys"
        )
        raise ValueError(msg)
    return tags


def split_sizes(n: int, parts: int) -> list[int]:
    """Sizes of at most ``parts`` parts covering ``n`` elements, differing by <= 1.

    >>> split_sizes(10, 3)
    [4, 3, 3]
    >>> split_sizes(2, 5)
    [1, 1]
    >>> split_sizes(0, 4)
    []
    """
    if n <= 0:
        return []
    parts = max(1, min(parts, n))
    base, extra = divmod(n, parts)
    return [base + (i < extra) for i in range(parts)]


def per_worker(n: int, nthreads: Mapping[str, int]) -> list[tuple[str, int]]:
    """``n`` elements spread over workers in proportion to their threads.

    Returns ``(worker, count)`` pairs, workers with nothing left out: the
    elements are split in near-equal parts, one per thread of the cluster, and
    each worker gets its threads' parts.

    >>> per_worker(10, {"a": 1, "b": 3})
    [('a', 3), ('b', 7)]
    >>> per_worker(1, {"a": 2, "b": 2})
    [('a', 1)]
    """
    sizes = split_sizes(n, sum(nthreads.values()))
    out = []
    slot = 0
    for worker in sorted(nthreads):
        count = sum(sizes[slot : slot + nthreads[worker]])
        slot += nthreads[worker]
        if count:
            out.append((worker, count))
    return out


class ChunkSizer:
    """How many elements the next chunk of work holds, learned from its cost.

    Starts at one element per chunk; each finished chunk reports the seconds
    its calls took on the worker, and later chunks are sized to take about
    ``target`` seconds (a running mean of the cost per element), growing at
    most ``growth``-fold from one chunk to the next and never above ``limit``.

    >>> sizer = ChunkSizer(target=0.1)
    >>> sizer.observe(0.001, 1)
    >>> sizer.size
    8
    >>> sizer.observe(0.008, 8)
    >>> sizer.size
    64
    """

    def __init__(
        self, target: float, *, growth: int = 8, limit: int | None = None
    ) -> None:
        self.target = target
        self.growth = growth
        self.limit = limit
        self.size = 1
        self.per_element: float | None = None

    def observe(self, seconds: float, count: int) -> None:
        """A chunk of ``count`` elements took ``seconds`` on its worker."""
        if count <= 0:
            return
        cost = seconds / count
        self.per_element = (
            cost if self.per_element is None else 0.5 * (self.per_element + cost)
        )
        wanted = int(self.target / max(self.per_element, 1e-9))
        size = min(wanted, self.size * self.growth)
        if self.limit is not None:
            size = min(size, self.limit)
        self.size = max(1, size)


class Window(Generic[Tag]):
    """Futures in flight, each with a tag, harvested as they complete.

    Parameters
    ----------
    client : distributed.Client
    timeout : float, optional
        Seconds from the window's creation after which :meth:`next_batch`
        raises ``TimeoutError``.

    Use it as a context manager: leaving it cancels the futures still in
    flight, whether the block ended normally or by an exception.
    """

    def __init__(
        self,
        client: distributed.Client,
        timeout: float | None = None,
        *,
        what: str = "the work",
    ):
        self.client = client
        self.what = what
        self._harvest = distributed.as_completed(
            loop=client.loop, with_results=True, raise_errors=False, timeout=timeout
        )
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._tags: dict[distributed.Future, Tag] = {}
        # tasks sent to one worker, that others may take: sent again when their
        # worker is gone and Dask left them unplaced
        self._pinned: dict[distributed.Future, _Pinned] = {}
        self._no_workers = NoWorkersClock()
        self.harvested = 0
        #: how many tasks were sent again because their worker was gone
        self.resent = 0

    def __len__(self) -> int:
        return len(self._tags)

    @property
    def futures(self) -> list[distributed.Future]:
        """The futures in flight (not yet harvested)."""
        return list(self._tags)

    def add(self, futures: Iterable[distributed.Future], tags: Iterable[Tag]) -> None:
        """Put futures in flight, one tag each."""
        pairs = list(zip(futures, tags, strict=True))
        self._tags.update(pairs)
        self._harvest.update([f for f, _ in pairs])

    def map(
        self,
        runner: Any,
        payloads: Sequence[Any],
        tags: Iterable[Tag],
        *,
        keys: Sequence[str],
        workers: Sequence[str | Sequence[str] | None] | None = None,
        allow_other_workers: bool = True,
        resources: Mapping[str, float] | None = None,
    ) -> None:
        """Submit ``runner(payload)`` for each payload, named by ``keys``.

        With ``workers``, payload ``i`` goes to ``workers[i]`` (an address or
        several; others may take it if they leave, unless
        ``allow_other_workers`` is false: then it is sent again, to the workers
        alive, if Dask cannot place it); otherwise one ``client.map`` sends
        them all. ``resources`` (Dask worker resources, ``{"GPU": 1}``) are
        held by each task while it runs.
        """
        tags = check_map(payloads, tags, keys)
        resources = None if resources is None else dict(resources)
        if workers is None:
            futures = self.client.map(
                runner, payloads, key=list(keys), pure=False, resources=resources
            )
        else:
            futures = [
                self.client.submit(
                    runner,
                    payload,
                    key=key,
                    pure=False,
                    workers=[worker] if isinstance(worker, str) else worker,
                    allow_other_workers=allow_other_workers,
                    resources=resources,
                )
                for payload, key, worker in zip(payloads, keys, workers, strict=True)
            ]
            if allow_other_workers:
                for future, payload, key, worker in zip(
                    futures, payloads, keys, workers, strict=True
                ):
                    if isinstance(worker, str):
                        self._pinned[future] = _Pinned(
                            runner, payload, key, worker, resources
                        )
        self.add(futures, tags)

    def wait(self, timeout: float | None) -> bool:
        """Block until every future in flight is done, or ``timeout`` seconds
        pass; return whether they are all done (then :meth:`next_batch` has
        them)."""
        try:
            distributed.wait(list(self._tags), timeout=timeout)
        except TimeoutError:
            return False
        return True

    def arrived(self) -> bool:
        """Whether a future completed that :meth:`next_batch` would give now."""
        return bool(self._harvest.has_ready())

    def next_batch(
        self, block: bool = True, *, until: Callable[[], bool] | None = None
    ) -> list[tuple[distributed.Future, Any, Tag]]:
        """Block until at least one future completes; return every completed one
        (``block=False``: those completed now, perhaps none).

        Each entry is ``(future, result, tag)``; for a future that did not
        finish, ``result`` is what ``as_completed`` gives (``(type, exception,
        traceback)`` for an error). Raises ``TimeoutError`` past the timeout,
        and :class:`~dasktune.exceptions.NoWorkersError` once no worker was
        alive for ``dasktune.no-workers-timeout`` seconds.

        With ``until``, a blocking call also returns, perhaps with nothing,
        once ``until()`` is true: news from elsewhere the caller waits for as
        well (whoever makes it true calls :meth:`wake`).
        """
        while True:
            woken = block and self._await_arrival(until)
            batch = self._harvest.next_batch(block=block and not woken)
            # a task sent again: its first future's cancellation is not news
            taken = [(f, r, self._tags.pop(f)) for f, r in batch if f in self._tags]
            for future, _, _ in taken:
                self._pinned.pop(future, None)
            self.harvested += len(taken)
            if taken or not block or woken:
                return taken

    def wake(self) -> None:
        """Wake a :meth:`next_batch` blocked in another thread, to look at its
        ``until`` again (from any thread, the client's event loop's too)."""
        condition = self._harvest.thread_condition
        with condition:
            condition.notify_all()

    def _await_arrival(self, until: Callable[[], bool] | None = None) -> bool:
        """Wait until a future completed or the timeout passed (False), or
        ``until()`` is true (True), looking every second or so for workers
        that left (:meth:`_check_workers`)."""
        check = time.monotonic() + _LOST_CHECK_SECONDS
        condition = self._harvest.thread_condition
        while not self._harvest.has_ready():
            now = time.monotonic()
            if self._deadline is not None and now >= self._deadline:
                return False  # as_completed raises the TimeoutError
            with condition:  # wake() notifies under it: no wake-up is lost
                if until is not None and until():
                    return True
                condition.wait(timeout=0.1)
            if time.monotonic() >= check and not self._harvest.has_ready():
                self._check_workers()
                check = time.monotonic() + _LOST_CHECK_SECONDS
        return False

    def _check_workers(self) -> None:
        """Send again the pinned tasks Dask cannot place (their worker gone),
        to the workers alive; raise once none was alive for too long."""
        alive = sorted(self.client.nthreads())
        self._no_workers.look(len(alive), self._waiting)
        if not alive:
            return
        lost = [f for f, pin in self._pinned.items() if pin.worker not in alive]
        if not lost:
            return
        scheduler = self.client.scheduler
        assert scheduler is not None  # a connected client
        states = self.client.sync(scheduler.get_task_status, keys=[f.key for f in lost])
        stuck = [f for f in lost if states.get(f.key) == "no-worker"]
        for i, old in enumerate(stuck):
            self._send_again(old, alive[i % len(alive)])
        if stuck:
            logger.warning(
                "dasktune: %s: sent %d task(s) again, to the workers alive: the "
                "workers they were sent to are gone",
                self.what,
                len(stuck),
            )

    def _send_again(self, old: distributed.Future, worker: str) -> None:
        """``old``'s task under a new key, to ``worker`` (or any other)."""
        pin = self._pinned.pop(old)
        tag = self._tags.pop(old)
        pin.sends += 1
        pin.worker = worker
        future = self.client.submit(
            pin.runner,
            pin.payload,
            key=f"{pin.key}-sent-{pin.sends}",
            pure=False,
            workers=[worker],
            allow_other_workers=True,
            resources=pin.resources,
        )
        self._pinned[future] = pin
        self.add([future], [tag])
        self.client.cancel([old])
        self.resent += 1

    def _waiting(self) -> str:
        return (
            f"the {len(self._tags)} task(s) in flight of {self.what} "
            f"({self.harvested} finished before)"
        )

    def cancel(self) -> None:
        """Cancel the futures still in flight, and drop every reference to them:
        ``as_completed`` keeps those completed and not yet harvested (a window
        kept alive by an error's traceback would keep them alive)."""
        self._harvest.clear()
        self._pinned.clear()
        if self._tags:
            futures = list(self._tags)
            self._tags.clear()
            self.client.cancel(futures)

    def interrupt(self) -> str | None:
        """Stop the tasks in flight, waiting a moment until none runs (an
        error or Ctrl-C ended the run); ``None``, or a sentence naming those
        still running."""
        if not self._tags:
            return None
        return stop_tasks(self.client, self.futures, self.what)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None and self._tags:
            # interrupted, or an error: none of its tasks runs on once it is left
            late = self.interrupt()
            self._tags.clear()
            if late is not None and exc is not None:
                exc.add_note(f"dasktune: {late}")
        self.cancel()


def raise_failed(future: distributed.Future, result: Any, what: str) -> None:
    """Re-raise a harvested future's error (with its own type and traceback)."""
    if future.status == "error":
        _, exc, tb = result
        raise exc.with_traceback(tb)
    if future.status == "cancelled":
        raise distributed.client.FutureCancelledError(
            future.key, reason=f"cancelled before {what} harvested it"
        )
