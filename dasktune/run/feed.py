"""Trials fed to long-lived tasks: no Dask task per trial.

A sequential ask/tell source (Optuna's TPE, a Gaussian process, Nevergrad)
asks one trial for each result it is told. Sent as one Dask task each, every
trial pays the scheduler's work and its batched streams: 17-56 ms between
submit, start, finish and harvest on a 2-core machine, and 3-8 ms of the
driver's CPU, under the GIL its asks also need. :class:`FedWindow` sends the
same payloads without a task each:

- on every worker, one :class:`Feed` actor (pinned there) and one long-lived
  *server* task per worker thread (pinned there too) that takes payloads from
  the actor's in-process queue, runs them, and hands the results back to it;
- the driver puts payloads with one actor call per turn and per worker (not
  waited for), and a pump per worker, on the client's event loop, keeps one
  :meth:`Feed.take` call waiting for results and passes them on to the
  driver's thread;
- results are pickled by the server thread that made them, so a result that
  cannot be pickled fails its own trials, not the feed;
- a worker in the driver's own process (``LocalCluster(processes=False)``)
  needs no actor and no call: its servers find a feed the driver made, the
  driver puts payloads (pickled, as a call would carry them) straight into
  its queue, and results come back through a listener; the servers are still
  tasks, so the scheduler knows the threads are taken.

It keeps :class:`~dasktune.run.submit.Window`'s interface (``map``,
``next_batch``, ``cancel``), so the driver's loop is the same for both.

What a task per trial gave for free, the window does itself:

- **a lost worker**: its actor's pump raises; every payload that worker held
  is put to the other workers (or, once it joins, to a worker that replaces
  it), up to ``distributed.scheduler.allowed-failures`` times, as Dask re-runs
  a task; after that its trials fail with the reason;
- **new workers** are fed from the next turn that looks (every couple of
  seconds at most);
- **the timeout** counts from the window's creation, as ``Window``'s does;
- **closing** stops the servers (an idle one returns at once; one running a
  trial returns after it) and releases the actors. A server whose actor is
  gone (its driver died), or whose worker is closing (a restart), returns
  within a quarter of a second.

The price: the server tasks hold every worker thread while the run lasts, so
other work on the cluster waits for the run, and a worker holding an actor
cannot be retired (``dask-jobqueue`` ``--lifetime`` and adaptive scaling then
wait for the run's end). ``execution="tasks"`` keeps one task per trial.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import pickle
import queue
import threading
import time
import traceback
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from types import TracebackType
from typing import Any, Generic, Self, TypeVar, cast

import cloudpickle
import dask.config
import distributed
from distributed import get_worker
from distributed.core import Status
from distributed.protocol import to_serialize

from dasktune.run.keys import key_part
from dasktune.run.lost import NoWorkersClock
from dasktune.run.submit import check_map

__all__ = ["Feed", "FedWindow", "Finished", "serve"]

Tag = TypeVar("Tag")

_POLL_SECONDS = 0.25  # how often an idle server looks whether its feed is gone
_ACTOR_WAIT_SECONDS = 30.0  # a server waits this long for its feed to be made
_TAKE_SECONDS = 1.0  # how long one take() waits on the worker before returning
_MADE_WAIT_SECONDS = 10.0  # closing waits this long for an actor being made
_LAYOUT_MAX_AGE = 2.0  # seconds a read of the workers is trusted
_ERROR = "error"
_SERVING = (Status.running, Status.paused)  # a worker's states that run tasks
#: reach a worker of the driver's own process without calls (off: the tests
#: of the calls' path on in-process workers)
IN_PROCESS = True


#: the feeds made in this process, by key, for their servers to find (the
#: worker keeps the actor too; this only spares the servers a polling loop)
_FEEDS: weakref.WeakValueDictionary[str, Feed] = weakref.WeakValueDictionary()
_MADE = threading.Condition()  # notified when a feed is made


class Feed:
    """The worker's end (a Dask actor, pinned to its worker): payloads in,
    pickled results out.

    The server tasks on its worker reach it in-process
    (``get_worker().state.actors[key]``); the driver through actor calls.
    """

    def __init__(self, key: str | None = None, *, local: bool = False) -> None:
        self.inbox: queue.SimpleQueue[tuple[int, Any] | None] = queue.SimpleQueue()
        #: made by a driver in the worker's process (no actor: gone once closed)
        self.local = local
        self.closed = False
        self._results: list[tuple[int, bytes]] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Event | None = None
        self._listener: Callable[[list[tuple[int, bytes]]], None] | None = None
        if key is not None:  # its servers wait for it (without polling)
            with _MADE:
                _FEEDS[key] = self
                _MADE.notify_all()

    def listen(self, listener: Callable[[list[tuple[int, bytes]]], None]) -> None:
        """Hand every result to ``listener`` (called from the server's
        thread) instead of keeping it for :meth:`take`: a driver in the
        worker's own process, which needs no call to reach it."""
        with self._lock:
            self._listener = listener
            waiting, self._results = self._results, []
        if waiting:
            listener(waiting)

    async def put(self, items: bytes) -> int:
        """Queue ``(number, payload)`` items, pickled as one list, for the
        servers (pickled by the driver: Dask's serialization of a list of
        objects costs it more than one ``cloudpickle.dumps``)."""
        unpacked: list[tuple[int, Any]] = pickle.loads(items)
        for item in unpacked:
            self.inbox.put(item)
        return len(unpacked)

    async def take(self, wait: float) -> bytes:
        """The results ready, pickled as one list of ``(number, result)``,
        waiting up to ``wait`` seconds for the first."""
        if self._ready is None:
            self._loop = asyncio.get_running_loop()
            self._ready = asyncio.Event()
        if not self._results:
            self._ready.clear()
            if not self._results:  # a result may have come between the looks
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._ready.wait(), wait)
        with self._lock:
            out, self._results = self._results, []
        return pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL)

    async def stop(self, servers: int) -> None:
        """Let the servers return: idle ones at once, busy ones after their
        current payload; the payloads still queued are dropped, never run
        (the run is over: a timeout, an interruption, or no more trials)."""
        self.closed = True
        with contextlib.suppress(queue.Empty):
            while True:
                self.inbox.get_nowait()
        for _ in range(servers):
            self.inbox.put(None)

    def done(self, number: int, blob: bytes) -> None:
        """A server's result (called in the worker's process, from its thread)."""
        with self._lock:
            listener = self._listener
            if listener is None:
                self._results.append((number, blob))
        if listener is not None:
            listener([(number, blob)])
            return
        loop = self._loop
        if loop is not None:
            # a closed loop (the worker leaving) has nobody to take
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        if self._ready is not None:
            self._ready.set()


@dataclass
class _Packed:
    """A payload put in-process, pickled as a call would have carried it (so
    that the runner cannot change the driver's own copy)."""

    blob: bytes


@dataclass
class Finished:
    """What the driver gets for a payload that did not give a result: its
    ``status`` (``"error"``), as a future's, and a ``key`` naming it."""

    key: str
    status: str = _ERROR


def _in_process(address: str) -> bool:
    """Whether the worker at ``address`` runs in this process (and
    :data:`IN_PROCESS` is on)."""
    return IN_PROCESS and any(
        worker.status == Status.running and worker.address == address
        for worker in list(distributed.Worker._instances)
    )


def _actor(station: _Station) -> list[distributed.Future]:
    return [] if station.actor_future is None else [station.actor_future]


def _put_in_process(feed: Feed, items: list[tuple[int, Any]]) -> None:
    """Queue payloads straight into an in-process feed, each pickled."""
    for number, payload in items:
        feed.inbox.put((number, _Packed(cloudpickle.dumps(payload))))


def _pickled(number: int, result: Any) -> bytes:
    try:
        return cloudpickle.dumps((True, result))
    except Exception as err:
        text = "".join(traceback.format_exception(err))
        msg = f"the result of payload {number} could not be pickled:\n{text}"
        return pickle.dumps((False, msg))


def _pickled_error(err: BaseException) -> bytes:
    """The runner's error and its traceback here, pickled (the text alone if
    the error does not pickle), as :class:`FedWindow` gives it back."""
    text = "".join(traceback.format_exception(err))
    try:
        return cloudpickle.dumps((False, (err, text)))
    except Exception:
        return pickle.dumps((False, text))


def serve(key: str, runner: Any) -> int:
    """A server task: run the payloads the worker's :class:`Feed` ``key``
    queues until told to stop (or the feed is gone); return how many ran."""
    worker = get_worker()
    started = time.monotonic()
    with _MADE:
        while (feed := _FEEDS.get(key)) is None:
            # sent with its actor, which is made on the worker's actor thread;
            # an actor this worker does not know of (a second in) was released
            # before it was made (a run over at once), or never came: nothing
            # to serve
            waited = time.monotonic() - started
            if waited > _ACTOR_WAIT_SECONDS or (
                waited > 1.0 and key not in worker.state.tasks
            ):
                return 0
            _MADE.wait(0.1)
    ran = 0
    # waiting for payloads is not computing: the worker's profiler (and the
    # dashboard's profile) sees the thread only while it runs one
    ident = threading.get_ident()
    task = worker.active_threads.get(ident)
    try:
        while True:
            _profiled(worker, ident, None)
            try:
                item = feed.inbox.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                # gone: told to stop, an actor its worker released, or a
                # worker closing (its process then exits without waiting
                # for this thread: a restart needs no kill)
                if (
                    feed.closed
                    or (not feed.local and key not in worker.state.actors)
                    or worker.status not in _SERVING
                ):
                    return ran
                continue
            if item is None or feed.closed:  # a payload taken as it stopped
                return ran
            _profiled(worker, ident, task)
            number, payload = item
            try:
                if isinstance(payload, _Packed):
                    payload = pickle.loads(payload.blob)
                result = runner(payload)
            except BaseException as err:
                blob = _pickled_error(err)
            else:
                blob = _pickled(number, result)
            ran += 1
            feed.done(number, blob)
    finally:
        _profiled(worker, ident, task)  # as the worker left it: it removes it


def _profiled(worker: Any, ident: int, task: Any) -> None:
    """Show the thread ``ident`` to the worker's profiler as running ``task``,
    or hide it (``None``)."""
    if task is None:
        if ident in worker.active_threads:
            with worker.active_threads_lock:
                worker.active_threads.pop(ident, None)
    elif worker.active_threads.get(ident) != task:
        with worker.active_threads_lock:
            worker.active_threads[ident] = task


@dataclass
class _Station:
    """One worker's feed: its actor, its servers, and what it holds."""

    worker: str
    threads: int
    actor_future: distributed.Future | None  # None: an in-process feed
    servers: list[distributed.Future] = field(default_factory=list)
    ready: bool = False  # the actor exists
    outbox: list[tuple[int, Any]] = field(default_factory=list)  # until ready
    pump: concurrent.futures.Future[None] | None = None
    #: what it holds: payload number -> the order it was sent in (its servers
    #: take them first in, first out)
    holding: dict[int, int] = field(default_factory=dict)
    lost: bool = False
    direct: bool = True  # calls go straight to the worker
    reached: bool = False  # a call has reached it
    #: the feed the driver made for a worker in its own process (no actor):
    #: payloads go straight into its queue, results come through a listener
    feed: Feed | None = None


@dataclass
class _Payload(Generic[Tag]):
    payload: Any
    tag: Tag
    key: str
    station: str | None = None
    attempts: int = 0


class FedWindow(Generic[Tag]):
    """Payloads in flight on long-lived tasks fed through worker-pinned
    actors; see the module notes. ``Window``'s interface and meaning.

    Parameters
    ----------
    client : distributed.Client
    runner : callable
        What the servers call on each payload (shipped once per server task).
    timeout : float, optional
        Seconds from the window's creation after which :meth:`next_batch`
        raises ``TimeoutError``.
    name : str
        Names the server tasks on the dashboard (``feed-<name>-...``).
    """

    def __init__(
        self,
        client: distributed.Client,
        runner: Any,
        timeout: float | None = None,
        *,
        name: str = "dasktune",
    ) -> None:
        self.client = client
        self.runner = runner
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.timeout = timeout
        self.name = key_part(name)
        self.token = uuid.uuid4().hex[:8]
        self.allowed_failures = int(
            dask.config.get("distributed.scheduler.allowed-failures", 3)
        )
        self._stations: dict[str, _Station] = {}
        self._flying: dict[int, _Payload[Tag]] = {}
        self._homeless: list[int] = []  # waiting for a worker
        # (kind, station, body) from the pumps and the calls, to the driver
        self._events: queue.SimpleQueue[tuple[str, _Station, Any]] = queue.SimpleQueue()
        self._looked = -1e9
        self._counter = 0
        self._sent = 0
        self._members_looked = time.monotonic()
        self._no_workers = NoWorkersClock()
        self._closed = False
        self._lock = threading.Lock()  # stations' outboxes and servers
        self._closing: list[concurrent.futures.Future[None]] = []

    def __len__(self) -> int:
        return len(self._flying)

    def start(self) -> None:
        """Start feeding the workers now (not waited for), so that the first
        payloads find their servers running; the first send does it
        otherwise."""
        self._look(force=True)

    # -- the workers ---------------------------------------------------------

    def _look(self, force: bool = False) -> None:
        """Feed the workers that have no station yet (at most every couple
        of seconds unless forced). Nothing here waits: each station starts on
        the client's loop (:meth:`_pump`), and what is sent to it meanwhile
        waits in its outbox."""
        now = time.monotonic()
        if not force and now - self._looked < _LAYOUT_MAX_AGE:
            return
        self._looked = now
        nthreads = self.client.nthreads()
        loop = self.client.loop
        assert loop is not None  # a connected client
        for worker, threads in nthreads.items():
            known = self._stations.get(worker)
            # a lost worker's address may come back (a fixed port): fed anew
            if known is not None and not known.lost:
                continue
            key = f"feed-{self.name}-actor-{self.token}-{uuid.uuid4().hex[:6]}"
            if _in_process(worker):
                # a worker of this process: its servers find the feed made
                # here (no actor, nothing to wait for), payloads go straight
                # into its queue and results come back through a listener
                station = _Station(worker, threads, None, ready=True)
                station.feed = Feed(key, local=True)
                station.feed.listen(partial(self._listened, station))
            else:
                # made on the worker's actor thread, not one of the threads
                # the servers hold: they are sent at once, and wait for it there
                with dask.annotate(executor="actor"):
                    actor = self.client.submit(
                        Feed, key, actor=True, workers=[worker],
                        allow_other_workers=False, key=key,
                    )  # fmt: skip
                station = _Station(worker, threads, actor)
            # one graph for the worker's servers (one message to the scheduler)
            station.servers = self.client.map(
                serve, [key] * threads, [self.runner] * threads,
                key=[
                    f"feed-{self.name}-{i}-{self.token}-{uuid.uuid4().hex[:6]}"
                    for i in range(threads)
                ],
                workers=[worker], allow_other_workers=False, pure=False,
            )  # fmt: skip
            station.pump = asyncio.run_coroutine_threadsafe(
                self._pump(station),
                loop.asyncio_loop,  # type: ignore[attr-defined]
            )
            self._stations[worker] = station

    async def _start(self, station: _Station) -> None:
        """Once the station's actor exists: what waited for it."""
        if station.actor_future is None:
            return  # an in-process feed, ready when made
        await station.actor_future  # the actor is made on its worker
        with self._lock:
            if station.lost:
                return
            station.ready = True
            waiting, station.outbox = station.outbox, []
        if waiting:
            await self._call(station, "put", cloudpickle.dumps(waiting))

    def _listened(self, station: _Station, out: list[tuple[int, bytes]]) -> None:
        """An in-process station's results (from its server's thread)."""
        self._events.put(("results", station, out))

    async def _pump(self, station: _Station) -> None:
        """On the client's loop: start the station, then keep a take()
        waiting and pass results on."""
        try:
            await self._start(station)
        except asyncio.CancelledError:
            raise
        except BaseException as err:
            self._events.put(("lost", station, err))
            return
        while not self._closed:
            if station.feed is not None:
                # its results come through its listener: only watch its servers
                await asyncio.sleep(_POLL_SECONDS)
                out = None
            else:
                try:
                    out = pickle.loads(await self._call(station, "take", _TAKE_SECONDS))
                except asyncio.CancelledError:
                    raise
                except BaseException as err:
                    self._events.put(("lost", station, err))
                    return
            if out:
                self._events.put(("results", station, out))
            # a server that ended while the feed runs (looked at once per take,
            # without a callback thread of Dask's per future)
            ended = [f for f in station.servers if f.status != "pending"]
            if ended and not self._closed:
                self._events.put(("ended", station, ended[0]))
                return

    async def _call(self, station: _Station, function: str, *args: Any) -> Any:
        """Call the station's actor: straight to its worker (as Dask's actors do
        with ``direct_to_workers``), or through the scheduler when the worker
        cannot be reached directly. A lost worker raises ``OSError`` either
        way (an ``Actor`` handle would instead wait for its pinned actor to
        come back, which it never does)."""
        msg: dict[str, Any] = {
            "actor": cast("distributed.Future", station.actor_future).key,
            "function": function,
            # bytes travel as they are (msgpack's own), not through Dask's
            # serializers
            "args": [
                arg if isinstance(arg, bytes) else to_serialize(arg) for arg in args
            ],
            "kwargs": {},
        }
        if station.direct:
            try:
                result = await self.client.rpc(station.worker).actor_execute(**msg)
            except OSError:
                if station.reached:
                    raise
                station.direct = False  # never reached: try the scheduler's way
                return await self._call(station, function, *args)
        else:
            scheduler = self.client.scheduler
            assert scheduler is not None  # a connected client
            result = await scheduler.proxy(
                msg={"op": "actor_execute", **msg}, worker=station.worker
            )
        station.reached = True
        if result["status"] != "OK":
            raise result["exception"]
        return result["result"]

    def _fire(self, station: _Station, function: str, *args: Any) -> None:
        """Call the station's actor from the driver's thread, not waiting; a
        failure is the station's loss."""
        loop = self.client.loop
        assert loop is not None  # a connected client
        call = asyncio.run_coroutine_threadsafe(
            self._call(station, function, *args),
            loop.asyncio_loop,  # type: ignore[attr-defined]
        )

        def failed(call: concurrent.futures.Future[Any]) -> None:
            if call.cancelled() or call.exception() is None:
                return
            self._events.put(("lost", station, call.exception()))

        call.add_done_callback(failed)

    def _left(self, cap: float) -> float:
        if self.deadline is None:
            return cap
        return max(0.0, min(cap, self.deadline - time.monotonic()))

    # -- sending -------------------------------------------------------------

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
    ) -> None:
        """Send each payload to be run by the window's ``runner``.

        ``runner`` must be the window's own; ``workers`` and ``resources``
        are refused (they need a task each: use ``Window``).
        """
        if runner is not self.runner or workers is not None or resources:
            msg = (
                "a FedWindow runs its own runner, on any worker, without "
                "resources; use Window for pinned or resource-holding tasks"
            )
            raise ValueError(msg)
        tags = check_map(payloads, tags, keys)
        numbers = []
        for payload, tag, key in zip(payloads, tags, keys, strict=True):
            self._counter += 1
            self._flying[self._counter] = _Payload(payload, tag, key)
            numbers.append(self._counter)
        self._send(numbers)

    def _send(self, numbers: list[int]) -> None:
        """Put payloads to the stations with the most room (one call each)."""
        self._look(force=not self._live())
        live = self._live()
        if not live:
            self._homeless.extend(numbers)
            return
        batches: dict[str, list[tuple[int, Any]]] = {}
        for number in numbers:
            station = min(live, key=lambda s: len(s.holding) / s.threads)
            self._sent += 1
            station.holding[number] = self._sent
            item = self._flying[number]
            item.station = station.worker
            batches.setdefault(station.worker, []).append((number, item.payload))
        for worker, items in batches.items():
            station = self._stations[worker]
            with self._lock:
                if not station.ready:  # its actor is on its way: sent once made
                    station.outbox.extend(items)
                    continue
            if station.feed is not None:
                _put_in_process(station.feed, items)
            else:
                self._fire(station, "put", cloudpickle.dumps(items))

    def _live(self) -> list[_Station]:
        return [s for s in self._stations.values() if not s.lost]

    # -- harvesting ----------------------------------------------------------

    def next_batch(self, block: bool = True) -> list[tuple[Any, Any, Tag]]:
        """Block until at least one payload is done; return every one done
        (``block=False``: those done now, perhaps none).

        Each entry is ``(finished, result, tag)``: ``finished.status`` is
        ``"finished"`` with the runner's result, or ``"error"`` with a
        ``(type, exception, None)`` result. Raises ``TimeoutError`` past the
        timeout.
        """
        done: list[tuple[Any, Any, Tag]] = []
        while not done:
            if self._homeless:
                homeless, self._homeless = self._homeless, []
                self._send(homeless)
            try:
                if block:
                    event = self._events.get(timeout=self._left(_POLL_SECONDS))
                else:
                    event = self._events.get_nowait()
            except queue.Empty:
                if not block:
                    return done
                if self.deadline is not None and time.monotonic() >= self.deadline:
                    msg = f"the window's timeout ({self.timeout} s) passed"
                    raise TimeoutError(msg) from None
                done.extend(self._check_members())
                continue
            events = [event]
            while True:
                try:
                    events.append(self._events.get_nowait())
                except queue.Empty:
                    break
            for kind, station, body in events:
                done.extend(self._handle(kind, station, body))
        return done

    def arrived(self) -> bool:
        """Whether something came in that :meth:`next_batch` would handle now
        (results, a lost worker)."""
        return not self._events.empty() or bool(self._homeless)

    def _handle(
        self, kind: str, station: _Station, body: Any
    ) -> list[tuple[Any, Any, Tag]]:
        if kind == "results":
            out = []
            for number, blob in body:
                item = self._flying.pop(number, None)
                if item is None:  # a late repeat of a payload re-sent elsewhere
                    continue
                holder = self._stations.get(item.station or "")
                if holder is not None:
                    holder.holding.pop(number, None)
                try:
                    ok, result = pickle.loads(blob)
                except Exception as err:
                    ok = False
                    text = "".join(traceback.format_exception(err))
                    result = f"the result of {item.key} could not be read:\n{text}"
                if ok:
                    out.append((Finished(item.key, "finished"), result, item.tag))
                elif isinstance(result, tuple):  # the runner's own error
                    raised, text = result
                    raised.add_note(f"dasktune: its traceback on the worker:\n{text}")
                    out.append(
                        (Finished(item.key), (type(raised), raised, None), item.tag)
                    )
                else:
                    out.append((Finished(item.key), self._error(result), item.tag))
            return out
        if kind == "ended":
            if station.lost or self._closed:
                return []
            future: distributed.Future = body
            if future.status == "error":
                # a server itself failed: not a trial's error, a broken feed
                future.result()
            return self._lose(station, f"its server {future.key} ended {future.status}")
        return self._lose(station, f"{type(body).__name__}: {body}")

    def _check_members(self) -> list[tuple[Any, Any, Tag]]:
        """Lose the stations whose worker left the cluster (looked at every
        couple of seconds while waiting: a call to a worker that froze may
        not fail for a long time)."""
        now = time.monotonic()
        if now - self._members_looked < _LAYOUT_MAX_AGE:
            return []
        self._members_looked = now
        members = self.client.nthreads()
        self._no_workers.look(
            len(members), lambda: f"the {len(self._flying)} trial(s) fed by {self.name}"
        )
        out: list[tuple[Any, Any, Tag]] = []
        for station in list(self._stations.values()):
            if not station.lost and station.worker not in members:
                out.extend(self._lose(station, "it left the cluster"))
        return out

    def _error(self, text: str) -> tuple[type[BaseException], BaseException, None]:
        exc = RuntimeError(text)
        return RuntimeError, exc, None

    def _lose(self, station: _Station, why: str) -> list[tuple[Any, Any, Tag]]:
        """A worker is gone: re-send what it held, or fail it past the
        allowed failures."""
        if station.lost:
            return []
        station.lost = True
        self._release(station)
        failed: list[tuple[Any, Any, Tag]] = []
        again: list[int] = []
        # the first sent are those its servers were running: only they count a
        # failure (as the scheduler counts only the tasks processing on a lost
        # worker); the others were queued, and go again as they are
        order = sorted(station.holding, key=station.holding.__getitem__)
        running = set(order[: station.threads]) if station.ready else set()
        for number in order:
            item = self._flying.get(number)
            if item is None:
                continue
            item.attempts += number in running
            if item.attempts > self.allowed_failures:
                del self._flying[number]
                msg = (
                    f"{item.key}: the worker running it was lost "
                    f"{item.attempts} times (distributed.scheduler."
                    f"allowed-failures={self.allowed_failures}); last: "
                    f"{station.worker}: {why}"
                )
                failed.append((Finished(item.key), self._error(msg), item.tag))
            else:
                again.append(number)
        station.holding.clear()
        if again:
            self._send(again)
        return failed

    # -- closing -------------------------------------------------------------

    def _release(self, station: _Station) -> None:
        with self._lock:  # no servers are sent for it from now on
            station.lost = True
            futures = [*station.servers, *_actor(station)]
        if station.pump is not None:
            station.pump.cancel()
        self.client.cancel(futures)

    def cancel(self) -> None:
        """Stop the servers and release the actors; payloads in flight are
        dropped. The stops and releases go out on the client's loop."""
        self._closed = True
        self._flying.clear()
        self._homeless.clear()
        loop = self.client.loop
        closing = []
        for station in self._stations.values():
            if station.lost:
                continue  # released when lost
            with self._lock:
                station.lost = True
                ready = station.ready
            if station.pump is not None:
                station.pump.cancel()
            if loop is not None:
                closing.append(
                    asyncio.run_coroutine_threadsafe(
                        self._stop(station, ready),
                        loop.asyncio_loop,  # type: ignore[attr-defined]
                    )
                )
            else:
                self._release(station)
        self._stations.clear()
        # not waited for: each stop is a round trip, and the releases follow
        self._closing = closing

    async def _stop(self, station: _Station, ready: bool = True) -> None:
        """Tell the servers to stop, then release the actor (released first,
        the actor would be gone when the stop arrives): idle servers return at
        once, a busy one after its payload (or within _POLL_SECONDS of
        finding its actor gone). An actor still being made (a run over before
        its first trial went out) is waited for first: one cancelled while
        its worker makes it can stay in the scheduler's books."""
        try:
            if not ready and station.actor_future is not None:
                await asyncio.wait_for(station.actor_future, _MADE_WAIT_SECONDS)
            if station.feed is not None:
                await station.feed.stop(station.threads)
            else:
                await asyncio.wait_for(
                    self._call(station, "stop", station.threads), _TAKE_SECONDS
                )
        except Exception:
            pass
        finally:
            for future in [*station.servers, *_actor(station)]:
                future.release()

    def interrupt(self) -> str | None:
        """Nothing to wait for: :meth:`cancel` stops the servers (a busy one
        after its payload)."""
        return None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cancel()
