"""A search's trials in the caller's process, while the policy keeps them there.

:class:`HereWindow` is a :class:`~dasktune.run.submit.Submitter`: the driver
sends it its tasks' payloads as it would to the cluster, and it runs each one
here, in order, when the driver asks for the next results, timing its trials
for the :class:`~dasktune.run.policy.ExecutionPolicy`. So ``Search.run`` keeps
everything the driver does (claims and records in the store, filters, reuse,
the progress bar) and starts no cluster for a cheap objective.

When the policy moves the run to the cluster (its trials are worth a task
each), the window starts dasktune's ``LocalCluster`` in the background
(:class:`~dasktune.run.startup.BackgroundStart`; with a client current, that
client) and goes on running trials here until it is up; then what is still
queued, and everything sent after, goes as tasks through a
:class:`~dasktune.run.submit.Window`, and the driver is told the client
(``on_move``). No trial is lost or run twice by the move.
"""

from __future__ import annotations

import collections
import logging
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Generic, NamedTuple, Self, TypeVar

from dasktune.run.policy import ExecutionDecision, ExecutionPolicy, ended_while_timing
from dasktune.run.startup import BackgroundStart, Overlap
from dasktune.run.submit import Window, check_map

__all__ = ["HereWindow"]

Tag = TypeVar("Tag")
logger = logging.getLogger("dasktune")


class _Ran(NamedTuple):
    """What stands for a task's future for a payload run here."""

    key: str
    status: str  # "finished", or "error" with (type, exception, traceback)


class HereWindow(Generic[Tag]):
    """Payloads run in this process (see the module notes).

    Parameters
    ----------
    policy : ExecutionPolicy
        Decides, from the trials' durations, whether the run stays here; its
        ``forced`` decision (``execution="local"``) keeps it here.
    name : str
        The run, for messages.
    timeout : float, optional
        Seconds from the window's creation after which :meth:`next_batch`
        raises ``TimeoutError``.
    on_move : callable, optional
        ``on_move(client)``, called once the run moved to the cluster.
    security : distributed.security.Security, optional
        For the cluster started (see :func:`dasktune.get_client`).

    Attributes
    ----------
    decision : ExecutionDecision or None
        Where the run's trials go, and why; ``None`` while they are timed.
    """

    def __init__(
        self,
        policy: ExecutionPolicy,
        *,
        name: str,
        timeout: float | None = None,
        on_move: Callable[[Any], None] | None = None,
        security: Any = None,
    ) -> None:
        self.policy = policy
        self.name = name
        self.decision: ExecutionDecision | None = policy.forced
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._timeout = timeout
        self.on_move = on_move
        self._security = security
        self._queue: collections.deque[tuple[Any, Any, Tag, str]] = collections.deque()
        self._durations: list[float] = []
        self._done = 0  # trials run here
        self._starting: BackgroundStart | None = None
        self._overlap = Overlap()  # the trials run here while it starts
        self._window: Window[Tag] | None = None
        #: trials run here after the move was decided, while the cluster started
        self.overlapped = 0

    def __len__(self) -> int:
        return len(self._queue) + (0 if self._window is None else len(self._window))

    @property
    def client(self) -> Any:
        """The cluster's client once the run moved there, else ``None``."""
        return None if self._window is None else self._window.client

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
        """Queue ``runner(payload)`` for each payload, run here by
        :meth:`next_batch`; once moved, sent as tasks (see ``Window.map``)."""
        tags = check_map(payloads, tags, keys)
        if self._window is not None:
            self._window.map(
                runner, payloads, tags, keys=keys, workers=workers,
                allow_other_workers=allow_other_workers, resources=resources,
            )  # fmt: skip
            return
        self._queue.extend(zip([runner] * len(tags), payloads, tags, keys, strict=True))

    def arrived(self) -> bool:
        """Whether :meth:`next_batch` returns something now (a payload queued
        here is run by it at once)."""
        if self._window is not None and self._window.arrived():
            return True
        return bool(self._queue) and self._window is None

    def next_batch(self, block: bool = True) -> list[tuple[Any, Any, Tag]]:
        """Run the next queued payload here and return it; once moved, the
        tasks' results (see ``Window.next_batch``).

        Raises
        ------
        TimeoutError
            Past the window's timeout.
        """
        if self._window is None and self._ready():
            self._move()
        if self._window is not None:
            return self._window.next_batch(block)
        if not self._queue:
            return []
        if self._deadline is not None and time.monotonic() > self._deadline:
            msg = (
                f"{self.name}: the timeout of {self._timeout} s passed with "
                f"{len(self._queue)} group(s) of trials still queued (in the "
                "caller's process)"
            )
            raise TimeoutError(msg)
        runner, payload, tag, key = self._queue.popleft()
        mark = None if self._starting is None else self._overlap.mark()
        try:
            result = runner(payload)
        except Exception:  # the runner's own failure, as a task's error
            return [(_Ran(key, "error"), sys.exc_info(), tag)]
        if mark is not None:  # made while the cluster starts
            self._overlap.add(mark)
        self._timed(result)
        return [(_Ran(key, "finished"), result, tag)]

    def _timed(self, result: Any) -> None:
        """Take the durations of the trials of ``result`` (a ``GroupResult``;
        anything else times nothing) run here to the policy, while it has not
        decided or keeps them here."""
        outcomes = getattr(result, "outcomes", None)
        if outcomes is None:
            return
        durations = [o.duration for o in outcomes if o.duration is not None]
        self._done += len(outcomes)
        if self.decision is None:
            self._durations.extend(durations)
            if self._durations:
                self._decide(self.policy.after_probe(self._durations, self._done))
        elif self.decision.where == "local" and durations:
            self._decide(
                self.policy.revisit(len(durations), sum(durations), self._done)
            )
        else:
            self.overlapped += len(outcomes)

    def _decide(self, decision: ExecutionDecision | None) -> None:
        if decision is None:
            return
        self.decision = decision
        logger.debug("%s: execution %s: %s", self.name, decision.where, decision.reason)

    def _ready(self) -> bool:
        """Whether the run moves to the cluster now: decided so, and the
        cluster up (a start begun at the first look)."""
        if self.decision is None or self.decision.where == "local":
            return False
        if self.policy.startup == 0.0:  # a client current: no start to wait for
            return True
        if self._starting is None:
            self._starting = BackgroundStart(self._security)
        if not self._starting.ready and self._overlap.starves:
            self._starting.client()  # waits, bounded; raises the start's error
        return self._starting.ready

    def _move(self) -> None:
        """Send what is queued, and all from now, as tasks on the cluster."""
        from dasktune.run.cluster import get_client

        if self._starting is not None:
            client = self._starting.client()
        else:
            client = get_client(None, security=self._security)
        left = None
        if self._deadline is not None:
            left = max(self._deadline - time.monotonic(), 1e-3)
        self._window = Window[Tag](client, left, what=self.name)
        queued, self._queue = list(self._queue), collections.deque()
        if self.on_move is not None:
            self.on_move(client)
        if queued:
            runners = {id(r): r for r, _, _, _ in queued}
            for runner in runners.values():  # one map per runner (one here)
                mine = [q for q in queued if q[0] is runner]
                self._window.map(
                    runner, [q[1] for q in mine], [q[2] for q in mine],
                    keys=[q[3] for q in mine],
                )  # fmt: skip

    def execution(self) -> tuple[str, str]:
        """Where the run's trials went, and why: ``("local", reason)``, or
        ``("tasks", reason)`` once moved to the cluster."""
        decision = self.decision
        if decision is None:
            decision = ended_while_timing(self._durations, timed="trials")
        if decision.where == "local":
            return "local", decision.reason
        if self._window is None:
            return "local", (
                f"{decision.reason}; the run ended in the caller's process "
                f"({self.overlapped} trial(s) more) while the cluster started"
            )
        reason = f"{decision.reason}; a task per trial or group from then on"
        if self.overlapped:
            reason += (
                f" ({self.overlapped} trial(s) ran in the caller's process while "
                "the cluster started)"
            )
        return "tasks", reason

    def interrupt(self) -> str | None:
        """Drop what is queued here; stop the tasks on the cluster, if moved."""
        self._queue.clear()
        return None if self._window is None else self._window.interrupt()

    def cancel(self) -> None:
        """Drop what is queued here, and the tasks in flight (idempotent)."""
        self._queue.clear()
        if self._window is not None:
            self._window.cancel()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cancel()


def search_policy(
    execution: object,
    *,
    name: str,
    client: Any,
    resources: Mapping[str, float] | None,
    batch: bool,
    trial_timeout: float | None,
    reports: bool,
    n_trials: int | None,
) -> ExecutionPolicy:
    """The execution policy of a run of search ``name`` (see
    :func:`runs_here`); ``reports``: its objective takes a ``trial`` (or a
    pruner is given), whose reports travel through the cluster.

    Raises
    ------
    ValueError
        For an ``execution`` not among the policy's choices, or ``"local"``
        with what needs a worker.
    """
    needs = (
        "an objective taking a trial argument, or a pruner (its reports "
        "travel through the cluster)"
        if reports
        else None
    )
    return ExecutionPolicy(
        execution, what=f"Search({name!r}).run", client=client, resources=resources,
        batch=batch, trial_timeout=trial_timeout, cluster_only=needs,
        expected=n_trials,
    )  # fmt: skip


def runs_here(policy: ExecutionPolicy) -> bool:
    """Whether a search's run begins in the caller's process: asked for
    (``execution="local"``), or ``"auto"`` with nothing that needs a worker,
    no client given and none current (with one current, its cluster runs
    the search, on its dashboard)."""
    if policy.forced is not None:
        return policy.forced.where == "local"
    return policy.startup > 0
