"""How the driver's trials become tasks, and what a task brings back.

:class:`Sender` cuts the trials a turn of the driver's loop claimed into
tasks and sends them into the run's window (a
:class:`~dasktune.run.submit.Submitter`); it turns each harvested task back
into one :class:`~dasktune.records.Outcome` per trial.

- A batch-synchronous optimizer's batch (its size known: a DE generation, an
  SPSA iteration) goes as one task per worker, each running its share on that
  worker's threads (a vectorized objective's: one call per thread).
- With ``resources`` each trial is a task of its own, holding them while it
  runs.
- Other trials go in whole rounds of the cluster's threads, each task about
  the :class:`~dasktune.run.submit.ChunkSizer`'s size, which the trials'
  measured durations keep near 50 ms of work.
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import distributed

from dasktune.records import Outcome, TrialStatus
from dasktune.run.evaluate import Group, GroupResult
from dasktune.run.keys import key_part
from dasktune.run.line import Line
from dasktune.run.lost import explain_killed
from dasktune.run.submit import ChunkSizer, Submitter, per_worker, split_sizes

__all__ = ["Sender"]

_LAYOUT_MAX_AGE = 2.0  # seconds a read of the workers' threads is trusted


class Claimed(Protocol):
    """A trial claimed by the driver, as a task carries it."""

    param_hash: str
    call: Any
    number: int


class Sender:
    """Send a run's claimed trials as tasks; read back their outcomes.

    Parameters
    ----------
    client : distributed.Client or None
        ``None`` while the run's trials run in the caller's process
        (``dasktune.run.here``): one at a time, in groups as for one thread;
        the driver sets it when the run moves to the cluster.
    name, token : str
        Name the tasks ``trial-<name>-<number>-<token>`` on the dashboard.
    runner : callable
        What a task runs on its :class:`~dasktune.run.evaluate.Group`.
    sizer : ChunkSizer
        Trials per task, from the durations measured (shared with the driver,
        whose window counts in tasks of that size).
    threads, task_window : int
        The cluster's threads, and the tasks the driver keeps in flight.
    max_in_flight : int, optional
        A window fixed by the user: the sizer then learns nothing.
    resources : mapping, optional
        Held by each trial's task: one trial per task.
    vectorized : bool
        The objective takes a task's points at once.
    retries, objectives, trial_timeout
        Carried to the worker with each group.
    """

    def __init__(
        self,
        client: distributed.Client | None,
        *,
        name: str,
        token: str,
        runner: Any,
        sizer: ChunkSizer,
        threads: int,
        task_window: int,
        max_in_flight: int | None,
        resources: Mapping[str, float] | None,
        vectorized: bool,
        retries: int,
        objectives: int,
        trial_timeout: float | None,
    ) -> None:
        self.client = client
        self.name, self.token, self.runner = name, token, runner
        self.sizer, self.threads, self.task_window = sizer, threads, task_window
        self.max_in_flight = max_in_flight
        self.resources, self.vectorized = resources, vectorized
        self.retries, self.objectives = retries, objectives
        self.trial_timeout = trial_timeout
        self._layout: tuple[float, dict[str, int]] | None = None

    def submit(
        self,
        flying: Submitter[Any],
        to_run: Sequence[Claimed],
        *,
        whole_batch: bool,
        channel: str | Line | None,
    ) -> None:
        """Send ``to_run`` as tasks into ``flying``.

        With ``whole_batch`` (a batch-synchronous optimizer's batch, not
        fed), one task per worker, each running its share on that worker's
        threads (a vectorized objective's: one call per thread). Other trials
        go in whole rounds of the cluster's threads, each task about
        ``sizer.size`` trials (rounded: a task may run up to 1.5 times the
        target, which beats a second round of tasks that would each pay
        Dask's overhead again). ``channel``: where the run's reports go
        (:attr:`ReportChannel.route`), for objectives that report.
        """
        n = len(to_run)
        workers: list[str | None] | None = None
        threads_of: list[int]
        if self.resources:
            # each trial holds the resources while it runs: one task each
            sizes = [1] * n
            threads_of = sizes
        elif whole_batch and not self.vectorized:
            layout = per_worker(n, self.nthreads())
            sizes = [count for _, count in layout]
            workers = [w or None for w, _ in layout]
            threads_of = [self.nthreads()[w] for w, _ in layout]
        elif whole_batch:
            # one vectorized call per thread
            sizes = split_sizes(n, self.threads)
            threads_of = [1] * len(sizes)
        else:
            size = self.sizer.size
            rounds = max(1, math.floor(n / (self.threads * size) + 0.5))
            # more claimed than the window holds (the end of a re-run over
            # done trials): no more tasks than two windows
            sizes = split_sizes(n, min(rounds * self.threads, 2 * self.task_window))
            threads_of = [1] * len(sizes)
        groups: list[Sequence[Claimed]] = []
        start = 0
        for size in sizes:
            groups.append(to_run[start : start + size])
            start += size
        keys = [
            f"trial-{key_part(self.name)}-{g[0].number}-{self.token}" for g in groups
        ]
        payloads = [
            Group(
                [(p.param_hash, p.call) for p in g],
                self.retries,
                threads,
                numbers=None if channel is None else [p.number for p in g],
                channel=channel,
                objectives=self.objectives,
                limit=self.trial_timeout,
            )
            for g, threads in zip(groups, threads_of, strict=True)
        ]
        flying.map(
            self.runner,
            payloads,
            groups,
            keys=keys,
            workers=workers,
            resources=self.resources,
        )

    def nthreads(self) -> dict[str, int]:
        """The workers and their threads, read at most every couple of seconds."""
        if self.client is None:  # run in the caller's process, one at a time
            return {"": 1}
        now = time.monotonic()
        if self._layout is None or now - self._layout[0] > _LAYOUT_MAX_AGE:
            nthreads = dict(self.client.nthreads()) or {"": self.threads}
            self._layout = (now, nthreads)
        return self._layout[1]

    def outcomes(
        self, future: distributed.Future, result: Any, group: Sequence[Claimed]
    ) -> list[Outcome]:
        """One outcome per trial of ``group``, from its task's ``result``."""
        if future.status != "finished":
            # the task itself failed (its workers lost beyond allowed-failures):
            # every trial in it failed with that error
            exc: BaseException | None = None
            if isinstance(result, tuple) and len(result) == 3:
                _, exc, tb = result
                if self.client is not None:  # a worker's: memory, if it was that
                    explain_killed(self.client, exc)
                text = "".join(traceback.format_exception(type(exc), exc, tb))
            else:
                text = f"task {future.key} ended as {future.status}: {result!r}"
            return [
                Outcome(p.param_hash, TrialStatus.FAILED, error=text, exception=exc)
                for p in group
            ]
        assert isinstance(result, GroupResult)
        if self.max_in_flight is None:
            durations = sum(o.duration or 0.0 for o in result.outcomes)
            self.sizer.observe(durations, len(result.outcomes))
        for outcome in result.outcomes:
            outcome.worker, outcome.host = result.worker, result.host
        return result.outcomes
