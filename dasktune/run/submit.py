"""The one windowed submitter: futures in flight, harvested, cancelled on exit.

``async_map``, the :class:`~dasktune.run.driver.Driver` and ``ProducerConsumer``
(its visible, task-based calls) all send work the same way:

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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Generic, Self, TypeVar

import distributed

__all__ = ["ChunkSizer", "Window", "per_worker", "raise_failed", "split_sizes"]

Tag = TypeVar("Tag")


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

    def __init__(self, client: distributed.Client, timeout: float | None = None):
        self.client = client
        self._harvest = distributed.as_completed(
            loop=client.loop, with_results=True, raise_errors=False, timeout=timeout
        )
        self._tags: dict[distributed.Future, Tag] = {}

    def __len__(self) -> int:
        return len(self._tags)

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
        ``allow_other_workers`` is false); otherwise one ``client.map`` sends
        them all. ``resources`` (Dask worker resources, ``{"GPU": 1}``) are
        held by each task while it runs.
        """
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
        self, block: bool = True
    ) -> list[tuple[distributed.Future, Any, Tag]]:
        """Block until at least one future completes; return every completed one
        (``block=False``: those completed now, perhaps none).

        Each entry is ``(future, result, tag)``; for a future that did not
        finish, ``result`` is what ``as_completed`` gives (``(type, exception,
        traceback)`` for an error). Raises ``TimeoutError`` past the timeout.
        """
        batch = self._harvest.next_batch(block=block)
        return [(f, result, self._tags.pop(f)) for f, result in batch]

    def cancel(self) -> None:
        """Cancel the futures still in flight, and drop every reference to them:
        ``as_completed`` keeps those completed and not yet harvested (a window
        kept alive by an error's traceback would keep them alive)."""
        self._harvest.clear()
        if self._tags:
            futures = list(self._tags)
            self._tags.clear()
            self.client.cancel(futures)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
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
