"""How one run of the driver goes: :class:`RunOptions`, checked once when made.

``Search.run``, ``minimize`` and ``SPSA`` each build one and hand it to the
:class:`~dasktune.run.driver.Driver`, which takes it as it is. Every value
that can be checked without the objective or the cluster is checked here, in
the order ``Search.run`` has always raised in, before any work is submitted;
what needs the objective or the cluster (a pruner's ``trial`` argument,
``resources`` no worker declared, ``execution="feed"`` or ``trial_timeout``
with a batch objective) the driver checks when it is made.

This module imports neither Dask nor the store: the options can be made (and
their errors raised) before a cluster is started.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dasktune._checks import check_bool, check_int, check_timeout

if TYPE_CHECKING:
    from dasktune.optim.pruners import Pruner

#: how trials reach the workers, as the driver is told
EXECUTIONS = ("auto", "tasks", "feed")


def check_execution(
    execution: object,
    *,
    batch: bool = False,
    vectorized: bool = False,
    resources: Mapping[str, float] | None = None,
) -> str:
    """Check ``execution`` (how trials reach the workers) against the run;
    return it.

    Raises
    ------
    ValueError
        For a name other than ``"auto"``, ``"tasks"`` and ``"feed"``, or
        ``"feed"`` with what needs a task per call (``resources``, a
        vectorized or a batch objective).
    """
    if execution not in EXECUTIONS:
        msg = (
            f"execution must be one of {', '.join(map(repr, EXECUTIONS))}; got "
            f"{execution!r}"
        )
        raise ValueError(msg)
    if execution == "feed":
        why = (
            "resources" if resources else
            "a vectorized objective" if vectorized else
            "a batch objective (a ProducerConsumer)" if batch else None
        )  # fmt: skip
        if why is not None:
            msg = (
                f"execution='feed' cannot run {why}: each call must be a task of "
                "its own; use execution='tasks' (or 'auto')"
            )
            raise ValueError(msg)
    return str(execution)


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """Everything a run of the driver is told besides its optimizer, objective,
    client and recorder; frozen, and checked when made.

    Parameters
    ----------
    name : str
        Names the tasks on the dashboard (``trial-<name>-<number>-...``).
    n_trials : int, optional
        Trials to run at most (``>= 1``).
    max_in_flight : int, optional
        Trials in flight at most (``>= 1``; default: the cluster's threads).
    timeout : float, optional
        Seconds the run may take (positive, finite).
    retries : int, default 0
        Times a raising trial is re-run on its worker.
    max_failures : int, optional
        Failed trials after which the run stops (``>= 1``).
    progress : bool, default False
        Show a progress bar.
    to_call, to_record : callable, optional
        Map an asked ``params`` to what the objective receives, and to the JSON
        dict that is recorded and hashed (default: both the identity).
    sign : float, default 1.0
        ``1`` to minimise, ``-1`` to maximise (the optimizer always minimises).
    signs : sequence of float, optional
        For several objectives: each one's sign, as ``sign``. The objective
        then returns that many values, the optimizer is told them as a tuple
        (each minimised), and the report's best stays unset (a search's best is
        its Pareto front). Fewer than two is one objective (``None``).
    keep : callable, optional
        ``keep(record) -> bool``; a trial for which it is false is skipped.
    heartbeat_seconds : float, default 5.0
        How often the run tells its recorder it is alive.
    vectorized : bool, default False
        The objective takes a task's points at once, as the columns of one
        ``(N, S)`` array, and returns their ``S`` values (scipy's
        ``vectorized=True``): one call per task, each point recorded on its own.
    raise_if_all_failed : bool, default False
        Raise the first failed trial's own exception (its traceback text in a
        note) when the run ends, or stops on an error, with trials failed and
        none evaluated: ``minimize`` and ``SPSA`` never return a silent ``inf``.
    pruner : Pruner, optional
        Stops trials early from what they report; needs an objective taking
        ``trial``.
    resources : mapping, optional
        Dask worker resources each trial holds while it runs (one task each).
    space_size : int, optional
        How many distinct parameter sets the source can propose (an
        all-discrete space's size): once that many are done, the run stops.
    total : int, optional
        How many trials the source proposes (a grid's length): the progress
        bar's total when ``n_trials`` is not given.
    execution : {"auto", "tasks", "feed"}, default "auto"
        How trials reach the workers.
    trial_timeout : float, optional
        Seconds one evaluation may run (positive, finite). Not for a batch
        objective (the driver raises ``ValueError``).
    metric_names : sequence of str, optional
        The objectives' names, for several objectives.
    cost : float, optional
        Seconds one evaluation took where it was timed before the run (in the
        caller's process, by the execution policy): with ``execution="auto"``
        whether trials are fed is then decided at once
        (:class:`~dasktune.run.policy.FeedChoice`).
    expected : int, optional
        How many evaluations the run makes at most, when known (DE's
        population times its generations): a batch-synchronous run with few
        batches left is not fed (:class:`~dasktune.run.policy.FeedChoice`).

    Raises
    ------
    ValueError
        For a count, a timeout or an ``execution`` out of its range, each
        naming the argument and the value given; for ``execution="feed"``
        with ``resources`` or ``vectorized``.
    TypeError
        For a ``progress`` other than ``True`` or ``False``.

    Examples
    --------
    >>> RunOptions(name="f", n_trials=0)
    Traceback (most recent call last):
    ...
    ValueError: n_trials must be an integer >= 1, got 0
    >>> RunOptions(name="f", signs=[1.0]).signs is None
    True
    """

    name: str
    n_trials: int | None = None
    max_in_flight: int | None = None
    timeout: float | None = None
    retries: int = 0
    max_failures: int | None = None
    progress: bool = False
    to_call: Callable[[Any], Any] | None = None
    to_record: Callable[[Any], dict[str, Any]] | None = None
    sign: float = 1.0
    signs: Sequence[float] | None = None
    keep: Callable[[dict[str, Any]], bool] | None = None
    heartbeat_seconds: float = 5.0
    vectorized: bool = False
    raise_if_all_failed: bool = False
    pruner: Pruner | None = None
    resources: Mapping[str, float] | None = field(default=None, hash=False)
    space_size: int | None = None
    total: int | None = None
    execution: str = "auto"
    trial_timeout: float | None = None
    metric_names: Sequence[str] | None = None
    cost: float | None = None
    expected: int | None = None

    def __post_init__(self) -> None:
        # the order Search.run has always raised in
        check_int("n_trials", self.n_trials, 1, optional=True)
        check_int("max_in_flight", self.max_in_flight, 1, optional=True)
        check_int("retries", self.retries, 0)
        check_int("max_failures", self.max_failures, 1, optional=True)
        check_timeout(self.timeout)
        check_execution(
            self.execution, vectorized=self.vectorized, resources=self.resources
        )
        check_bool("progress", self.progress)
        check_timeout(self.trial_timeout, "trial_timeout")
        check_timeout(self.heartbeat_seconds, "heartbeat_seconds")
        # stored as the driver reads them, and not changed by the caller after
        signs = self.signs
        one = signs is None or len(signs) < 2
        object.__setattr__(self, "signs", None if one else tuple(signs))  # type: ignore[arg-type]
        if self.metric_names is not None:
            object.__setattr__(self, "metric_names", tuple(self.metric_names))
        resources = dict(self.resources) if self.resources else None
        object.__setattr__(self, "resources", resources)
