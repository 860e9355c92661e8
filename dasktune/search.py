"""A named, durable search: generator → filters → de-duplication → futures → store.

:class:`Search` is optomatic on Dask. A source proposes parameter sets (any
iterable of dicts — a scikit-learn ``ParameterGrid`` or ``ParameterSampler``, a
list, a generator — or an ask/tell optimizer), filters drop some, the driver
evaluates the rest as Dask futures, and the trial store keeps every trial. A
parameter set already done in the search is never evaluated again: its stored
value is reused (and told to the optimizer that proposed it). Running the same
script again after a crash or Ctrl-C resumes: done trials are skipped,
interrupted ones re-run.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Self

import distributed
import pandas as pd
from distributed.security import Security

from dasktune._checks import (
    check_bool,
    func_name,
    short_repr,
)
from dasktune.direction import Direction
from dasktune.exceptions import DasktuneError, SearchMismatchError, StoreError
from dasktune.optim.base import (
    AskTell,
)
from dasktune.optim.pruners import Pruner
from dasktune.provenance import provenance
from dasktune.records import TrialStatus, error_line
from dasktune.resume import requeue, restore, warm_start
from dasktune.run import entry
from dasktune.run.cluster import get_client
from dasktune.run.driver import (
    BatchObjective,
    check_execution,
    check_trial_timeout,
)
from dasktune.run.here import HereWindow, runs_here, search_policy
from dasktune.run.options import RunOptions
from dasktune.run.report import wants_trial
from dasktune.run.summary import RunReport
from dasktune.search_checks import (
    RESERVED,
    RESERVED_COLUMNS,
    check_directions,
    check_filters,
    check_metric_names,
    check_objective,
    check_objectives,
    check_pruner,
    check_reserved,
    check_runnable,
    check_stale_after,
)
from dasktune.search_source import length, optimizer_of, space_size
from dasktune.space import Space
from dasktune.store.recorder import StoreRecorder
from dasktune.store.rows import DECODING_ERRORS, damaged_trial
from dasktune.store.sql import (
    STALE_AFTER_SECONDS,
    TrialStore,
    check_store,
    search_directions,
    search_metric_names,
)
from dasktune.store.table import TrialTable

__all__ = ["RESERVED_COLUMNS", "BestTrial", "Search", "provenance"]

DEFAULT_MAX_FAILURES = 1000
#: rows a search's table reads before it is kept as the store's snapshot (and
#: at least a tenth of the table): a new reader of fewer rows reads them fast
SNAPSHOT_ROWS = 10_000


@dataclass(frozen=True)
class BestTrial:
    """The best done trial of a search, or one trial of its Pareto front.

    ``value`` is the (first) objective's value; ``values`` holds every
    objective's; ``constraints`` the constraint values the trial returned
    (``None`` when it returned none).
    """

    number: int
    params: dict[str, Any]
    value: float
    aux: dict[str, Any] = field(default_factory=dict)
    values: tuple[float, ...] = ()
    constraints: tuple[float, ...] | None = None


class Search:
    """A named, durable search (see the module notes).

    Parameters
    ----------
    name : str
        The search's name in the store; re-opening it by name continues it.
    objective : callable or BatchObjective
        Called as ``objective(params)`` with a parameter dict; returns a number,
        ``(number, dict)`` or a dict with a ``"loss"`` key (the rest of a dict is
        kept as auxiliary data). With several ``directions`` it returns that
        many numbers in their place (a tuple, list or 1-D array). Constraint
        values go under the dict's ``"constraints"`` key (one number or a
        sequence; ``c <= 0`` is satisfied): they are stored, passed to
        samplers that use them, and a trial violating one is never the best.
        A ``ProducerConsumer`` with a reduction evaluates whole batches where
        its data lives. ``None`` opens an existing search to read it (trials,
        best, plots); :meth:`run` then raises.
    store : str, path-like or TrialStore, default "sqlite:///dasktune.db"
        A SQLAlchemy URL (``"postgresql://user@host/db"`` for a search shared by
        several machines), the path of a SQLite file (``"trials.db"``), or an
        open store.
    client : distributed.Client, optional
        See :func:`dasktune.get_client`.
    security : distributed.security.Security, optional
        TLS certificates for a ``tls://`` address; see :func:`dasktune.get_client`.
    space : Space or dict, optional
        The named parameter space: needed for vector optimizers (``SPSA``,
        ``HyperScipySampler`` over a space) and for ``run()`` with no source
        (random sampling); stored with the search. Re-opening a search
        without one takes the stored space (its names in sorted order).
    direction : {"minimize", "maximize"}, optional
        Default: a re-opened search's own direction(s), else ``"minimize"``.
    directions : sequence of {"minimize", "maximize"}, optional
        One per objective, for a search of several objectives
        (``["minimize", "maximize"]``): the objective returns that many values,
        :attr:`best` is the Pareto front and :meth:`trials` has a column per
        objective (``values_0``, ``values_1``, ...). Give ``direction`` or
        ``directions``, not both; neither re-opens a search with its own.
    stale_after : float, default 30
        Seconds after which a trial left running by a silent driver is taken
        over (drivers beat every 5 s), by the database's clock: drivers on
        several hosts need no synchronised clocks.
    metric_names : sequence of str, optional
        A name per objective (``["error", "latency"]``), stored with the
        search: ``dasktune show``, :meth:`plot`, ``dasktune export`` and
        :func:`dasktune.optuna_storage` (Optuna's ``study.metric_names``) use
        them. Re-opening a search without them takes the stored ones.

    Raises
    ------
    SearchMismatchError
        If the store holds a search of that name with another space, direction
        or metric names.
    SchemaVersionError
        If the store was written by a newer dasktune.

    Examples
    --------
    >>> from sklearn.model_selection import ParameterGrid
    >>> search = Search("svm", fit_and_score)  # doctest: +SKIP
    >>> search.run(ParameterGrid({"C": [0.1, 1, 10], "kernel": ["rbf"]}))  # doctest: +SKIP
    >>> search.trials().sort_values("value").head()  # doctest: +SKIP
    """

    def __init__(
        self,
        name: str,
        objective: Callable[[dict[str, Any]], Any] | BatchObjective | None,
        store: str | os.PathLike[str] | TrialStore = "sqlite:///dasktune.db",
        *,
        client: distributed.Client | None = None,
        security: Security | None = None,
        space: Space | Mapping[str, Any] | None = None,
        direction: str | None = None,
        directions: Sequence[str] | None = None,
        stale_after: float = STALE_AFTER_SECONDS,
        metric_names: Sequence[str] | None = None,
    ) -> None:
        check_objective(name, objective)
        # neither given: the stored search's, or "minimize" for a new one
        stored_directions = direction is None and directions is None
        direction = Direction.parse(
            Direction.MINIMIZE if direction is None else direction
        )
        self.directions = check_directions(directions, direction)
        direction = self.directions[0]
        stale_after = check_stale_after(stale_after)
        self.name = name
        self.objective = objective
        self.space = None if space is None else Space(space)
        if self.space is not None:
            check_reserved(self.space.names)
        self.direction = direction
        self.stale_after = stale_after
        self._client_arg, self._security = client, security
        check_store(store)
        self._owns_store = not isinstance(store, TrialStore)
        self.store = store if isinstance(store, TrialStore) else TrialStore(store)
        self._table: TrialTable | None = None
        self._unsaved = 0  # rows read into the table since the store's snapshot
        # provenance (git, package versions) is kept when the search is made:
        # not worked out again by each reader of an existing one
        try:
            found = self.store.find_search(name)
            made = found is not None
            if objective is None and not made:
                msg = (
                    f"no search named {name!r} in {self.store.display_url} to read: "
                    "a new search needs an objective (a function of a parameter dict)"
                )
                raise ValueError(msg)
            if self.space is None and found is not None and found.get("space"):
                # re-opened without a space (to read it, to run it on): its own
                try:
                    self.space = Space.from_json(json.loads(found["space"]))
                except (ValueError, TypeError, KeyError) as err:
                    msg = (
                        f"the store {self.store.display_url} holds a damaged space "
                        f"for search {name!r}: {type(err).__name__}: {err}; repair "
                        "that row, or pass space= to use the search as it was made"
                    )
                    raise StoreError(msg) from err
            if stored_directions and found is not None:  # and its own directions
                self.directions = search_directions(found)
                self.direction = direction = self.directions[0]
            if metric_names is not None:  # one per direction, the stored ones too
                metric_names = check_metric_names(metric_names, self.directions)
            info = {} if made else provenance(objective)
            if metric_names is not None and not made:
                info["metric_names"] = metric_names
            self.search_id = self.store.open_search(
                name,
                space=None if self.space is None else self.space.to_json(),
                direction=direction,
                metadata=info,
                directions=self.directions if len(self.directions) > 1 else None,
            )
            stored_names = search_metric_names(found)
            if found is not None and metric_names not in (None, stored_names):
                msg = (
                    f"search {name!r} in {self.store.display_url} has the metric "
                    f"names {stored_names} but is re-opened with {metric_names}; "
                    "give the same (or none: the stored ones are taken), or use "
                    "a new search name"
                )
                raise SearchMismatchError(msg)
        except BaseException:
            if self._owns_store:  # a store this search opened: closed again
                self.store.close()
            raise
        #: a name per objective, or ``None`` (given, or stored with the search)
        self.metric_names: list[str] | None = (
            metric_names if found is None else stored_names
        )

    # -- running ---------------------------------------------------------------

    def run(
        self,
        source: Iterable[Mapping[str, Any]] | AskTell | None = None,
        *,
        filters: Sequence[Callable[[dict[str, Any], pd.DataFrame], bool]]
        | Callable[[dict[str, Any], pd.DataFrame], bool] = (),
        n_trials: int | None = None,
        max_in_flight: int | None = None,
        timeout: float | None = None,
        retries: int = 0,
        max_failures: int | None = DEFAULT_MAX_FAILURES,
        retry_failed: bool = False,
        progress: bool = True,
        seed: int | None = None,
        pruner: Pruner | None = None,
        resources: Mapping[str, float] | None = None,
        execution: str = "auto",
        trial_timeout: float | None = None,
    ) -> RunReport:
        """Evaluate what ``source`` proposes, recording every trial.

        Parameters
        ----------
        source : iterable of dicts, ask/tell optimizer, or None
            A ``ParameterGrid``, ``ParameterSampler``, list or generator of
            parameter dicts; or an optimizer (``SPSA``, ``HyperScipySampler``,
            ``LCBSelector``, ...). ``None`` samples the search's ``space`` at
            random (``seed``, and ``n_trials`` required).
        filters : callable or sequence of callables
            ``f(params, trials) -> bool``, applied before a trial is claimed; a
            trial is kept when every filter returns true. ``trials`` is the
            search's DataFrame, refreshed once per batch of results. One
            function is taken as a list of it.
        n_trials : int, optional
            Evaluate at most this many new trials in this run (reused results do
            not count).
        max_in_flight : int, optional
            Trials in flight at once (default: the cluster's thread count plus a
            margin, times the number of trials grouped per task).
        timeout : float, optional
            Seconds; then no new trial starts, running ones are cancelled and put
            back as queued (a later run takes them), and ``run`` returns.
        retries : int, default 0
            Re-run a trial whose objective raised, up to this many times, before it
            is recorded as failed.
        max_failures : int or None, default 1000
            Stop with ``TooManyFailuresError`` (quoting the last traceback) after
            this many failed trials in this run; ``None`` never stops.
        retry_failed : bool, default False
            Evaluate again the trials that failed in earlier runs.
        progress : bool, default True
            A ``tqdm.auto`` bar with the best value so far.
        seed : int, optional
            For ``source=None``.
        pruner : Pruner, optional
            Stops bad trials early from the values they report
            (``dasktune.optim.pruners``); the objective must take a ``trial``
            argument. A resumed search rebuilds the pruner's state from the
            curves of its done and pruned trials.
        resources : mapping, optional
            Dask worker resources each trial holds while it runs
            (``{"GPU": 1}``): a trial runs only on a worker that declared them,
            and one trial per task.
        execution : {"auto", "local", "tasks", "feed"}, default "auto"
            Where trials run and how they reach the workers. With no client
            given and none current, ``"auto"`` first runs them in this
            process, timed: a cheap objective's run stays here, starting no
            cluster; an expensive one moves to the cluster started meanwhile
            (``dasktune.run.here``); ``"local"`` keeps it here. What needs a
            worker (``resources``, ``trial_timeout``, a ``ProducerConsumer``,
            a pruner or an objective taking ``trial``) runs on the cluster.
            ``"tasks"``: one Dask task per trial
            (or per group of fast trials), each on the dashboard's task
            stream. ``"feed"``: one long-lived task per worker thread takes
            trials from a worker-pinned actor, with no task per trial — for a
            sequential sampler (Optuna's TPE) asking one trial per result this
            saves Dask's per-task latency, but it holds every worker thread
            while the run lasts (``dasktune.run.feed``). ``"auto"`` feeds
            the trials of a sequential sampler (one that learns from results
            and asks one trial at a time: Optuna, Nevergrad, ``LCBSelector``)
            when its first trials, sent as tasks and timed, are short
            (``dasktune.run.policy.FeedChoice``), unless ``resources`` are
            given or the cluster scales (adaptive, dask-jobqueue), and so
            the short trials of a batch-synchronous method; everything
            else (grids, random sources, longer trials) goes as tasks. The
            report's
            ``execution`` and ``execution_reason`` say which and why. Lost
            workers, retries, timeouts and pruning work the same either way.
        trial_timeout : float, optional
            Seconds one trial may run. Past it the trial is interrupted on its
            worker and recorded as failed, "timed out after N s" (not retried),
            and the run goes on; a trial blocked in C code that does not stop
            within 2 s more is left in its thread and its worker restarted,
            with a ``RuntimeWarning`` (a worker without a nanny,
            ``processes=False``, cannot be: the warning says so). Not for a
            ``ProducerConsumer`` objective.

        Returns
        -------
        RunReport
            Counts of this run's asks: ``evaluated``, ``failed``, ``pruned``;
            ``reused`` (answered from the store; a point asked twice counts
            twice), ``joined`` (a repeat of a trial in flight, told its result)
            and ``skipped`` (refused by a filter); the elapsed time, why it
            stopped (``stopped``), the best value and parameters of this run,
            and, for several objectives, its Pareto front (``front``).
        """
        check_runnable(self.objective, self.name)
        check_pruner(pruner, self.objective, self.name, self.directions)
        if pruner is not None:
            pruner.for_search(self.name, self.directions[0])
        optimizer = optimizer_of(source, self.space, self.name, n_trials, seed)
        check_objectives(optimizer, self.space, self.directions, self.name)
        batch = isinstance(self.objective, BatchObjective)
        policy = search_policy(
            execution, name=self.name, client=self._client_arg, resources=resources,
            batch=batch, trial_timeout=trial_timeout, n_trials=n_trials,
            reports=pruner is not None
            or (not batch and wants_trial(self.objective)),  # type: ignore[arg-type]
        )  # fmt: skip
        # checked here, before any work; the filters' keeper is added below
        options = RunOptions(
            name=self.name,
            n_trials=n_trials,
            max_in_flight=max_in_flight,
            timeout=timeout,
            retries=retries,
            max_failures=max_failures,
            progress=progress,
            to_call=self._params,
            to_record=self._params,
            sign=Direction(self.direction).sign,
            signs=self._signs,
            pruner=pruner,
            resources=resources,
            execution=policy.driver_execution,
            trial_timeout=trial_timeout,
            space_size=space_size(self.space, source),
            total=length(source),
            metric_names=self.metric_names,
        )
        check_execution(policy.driver_execution, batch=batch, resources=resources)
        check_bool("retry_failed", retry_failed)
        filters = check_filters(filters)
        check_trial_timeout(trial_timeout, batch=batch)
        self._resume(optimizer, pruner)
        here = None  # the caller's process first, when the policy says so
        if runs_here(policy):
            here = HereWindow[Any](
                policy, name=self.name, timeout=timeout, security=self._security
            )
        client = None
        if here is None:
            client = get_client(self._client_arg, security=self._security)
        recorder = self._recorder(optimizer, client, options, seed, retry_failed)
        if filters:
            options = replace(options, keep=self._keeper(filters, recorder))
        owned = source is None or not isinstance(source, AskTell)
        report = self._drive(optimizer, recorder, options, client, owned, here)
        if self._table is not None:  # the filters kept it: a snapshot is cheap
            self._refresh(save=True)
        self._warn_all_failed(report)
        return report

    @property
    def _signs(self) -> tuple[float, ...]:
        return tuple(Direction(d).sign for d in self.directions)

    def _resume(self, optimizer: AskTell, pruner: Pruner | None) -> None:
        """Hand the optimizer and the pruner what the store holds
        (:mod:`dasktune.resume`)."""
        warm_start(optimizer, self.store, self.search_id, self._signs, self.name)
        requeue(optimizer, self.store, self.search_id, self.stale_after, self.name)
        if pruner is not None:
            restore(pruner, self.store, self.search_id)

    def _recorder(
        self,
        optimizer: AskTell,
        client: distributed.Client | None,
        options: RunOptions,
        seed: int | None,
        retry_failed: bool,
    ) -> StoreRecorder:
        """Register this run as a driver of the search; its recorder."""
        pruner, resources = options.pruner, options.resources
        driver_id = self.store.register_driver(
            self.search_id,
            {
                "optimizer": optimizer.describe(),
                "seed": optimizer.seed if optimizer.seed is not None else seed,
                "n_trials": options.n_trials,
                "retries": options.retries,
                "pruner": None if pruner is None else pruner.describe(),
                "resources": None if resources is None else dict(resources),
                "scheduler": None
                if client is None  # the caller's process first
                else getattr(client.scheduler, "address", None),
            },
        )
        return StoreRecorder(
            self.store, self.search_id, driver_id, retry_failed, self.stale_after
        )

    def _drive(
        self,
        optimizer: AskTell,
        recorder: StoreRecorder,
        options: RunOptions,
        client: distributed.Client | None,
        owned: bool,
        here: HereWindow[Any] | None = None,
    ) -> RunReport:
        """Run through :func:`dasktune.run.entry.run`; close the optimizer
        when the search made it (``owned``), also when the run raises."""
        assert self.objective is not None  # check_runnable
        try:
            report = entry.run(
                optimizer, self.objective, recorder, options, client=client, here=here
            )
        except BaseException as err:
            # the run's error wins; closing the optimizer's goes in a note
            if owned:
                try:
                    optimizer.close()
                except Exception as late:
                    err.add_note(
                        f"dasktune: {self.name}: while cleaning up after this "
                        f"error, {type(late).__qualname__}: {late}"
                    )
            raise
        if owned:
            optimizer.close()
        return report

    def _warn_all_failed(self, report: RunReport) -> None:
        """Warn when every trial of this run failed (none evaluated or pruned)."""
        if report.failed and not report.evaluated and not report.pruned:
            first = report.first_failure
            error = error_line(first.error) if first is not None else None
            warnings.warn(
                f"every trial of this run of search {self.name!r} failed "
                f"({report.failed}); the first: {error or '(no message)'}; "
                "search.trials(status='failed') has their tracebacks",
                RuntimeWarning,
                stacklevel=3,
            )

    def _params(self, params: Any) -> dict[str, Any]:
        if type(params) is dict or isinstance(params, Mapping):  # the cheap test first
            if not RESERVED.isdisjoint(params):  # per trial: the cheap test first
                check_reserved(params)
            return dict(params)
        if self.space is None:
            msg = (
                f"the optimizer proposed a vector ({params!r}); give the search a "
                "space (Search(..., space=...)) to decode it into named parameters"
            )
            raise ValueError(msg)
        return self.space.decode(params)

    def _keeper(
        self,
        filters: Sequence[Callable[[dict[str, Any], pd.DataFrame], bool]],
        recorder: StoreRecorder,
    ) -> Callable[[dict[str, Any]], bool]:
        # the filters see the search's table, brought up to date once per batch
        # of results from the rows written since it last looked
        state: dict[str, Any] = {"version": -1, "frame": None}

        def keep(record: dict[str, Any]) -> bool:
            if state["version"] != recorder.version:
                state["frame"] = None  # release the view before the arrays change
                state["frame"] = self._refresh().frame(copy=False)
                state["version"] = recorder.version
            frame = state["frame"]
            for f in filters:
                try:
                    if not f(record, frame):
                        return False
                except Exception as err:
                    err.add_note(
                        f"dasktune: raised by the filter {func_name(f)!r} on "
                        f"{short_repr(record)}"
                    )
                    raise
            return True

        return keep

    def _refresh(self, *, save: bool = False) -> TrialTable:
        """The search's trials table, updated with the rows written since the
        last look (the first look starts from the store's snapshot, if any).

        With ``save``, the table is kept as the store's snapshot once
        :data:`SNAPSHOT_ROWS` rows (and a tenth of the table) were read since
        the last one, so that the next new reader loads it.
        """
        table = self._table
        if table is None:
            table = self._table = TrialTable.from_store(
                self.store,
                self.search_id,
                self.space.names if self.space is not None else (),
                objectives=len(self.directions),
            )
        since = table.seq
        try:
            seq, columns = self.store.read_columns(self.search_id, since=since)
            table.update_columns(columns)
        except DECODING_ERRORS as err:
            # a row damaged or written by hand: the table may hold part of the
            # batch, so it is read again next time; the error names the row
            self._table = None
            _, rows = self.store.read_trials(self.search_id, since=since)
            raise damaged_trial(
                self.store.display_url, rows, err, repr(self.name)
            ) from err
        table.seq = max(table.seq, seq)
        self._unsaved += len(columns["number"])
        if save and self._unsaved >= max(SNAPSHOT_ROWS, table.n // 10):
            try:
                self.store.write_snapshot(
                    self.search_id, table.seq, table.n, table.dumps()
                )
            except StoreError as err:  # a cache: the table read is not lost
                warnings.warn(
                    f"dasktune: {self.name}: the trials table was not kept as "
                    f"the store's snapshot: {err}",
                    RuntimeWarning,
                    stacklevel=3,
                )
            self._unsaved = 0  # written, or the store holds a later one
        return table

    # -- reading ---------------------------------------------------------------

    def trials(self, status: str | Sequence[str] | None = None) -> pd.DataFrame:
        """Every trial as a DataFrame: one row each, one column per parameter.

        Columns: ``number``, the parameters under their own names, ``value``,
        ``status`` (queued, running, done, failed), ``duration`` (s), ``worker``,
        ``host``, ``attempts``, ``started`` and ``finished`` (UTC timestamps),
        ``error`` (the traceback of a failed trial) and ``aux`` (a dict).

        A search of several objectives has ``values_0``, ``values_1``, ...
        after ``value`` (which repeats the first objective's); once a trial
        returned constraints, ``constraints`` (a tuple) and ``feasible``
        follow them.

        The table is kept between calls and brought up to date from the rows
        written since the last one, so calling it again during a long search
        costs the new rows, not the whole table. A new ``Search`` starts from
        the store's snapshot of the table, if any, and reads the rows written
        after it; once 10,000 rows (and a tenth of the table) were read since
        the last snapshot, this call keeps the table as the next one.

        Parameters
        ----------
        status : str or sequence of str, optional
            Only the trials with this status (or these).

        Raises
        ------
        ValueError
            For a status that is not one of :class:`~dasktune.records.TrialStatus`.
        """
        wanted = None
        if status is not None:
            wanted = [status] if isinstance(status, str) else list(status)
            known = [s.value for s in TrialStatus]
            unknown = [s for s in wanted if s not in known]
            if unknown:
                msg = f"status must be among {known}, got {unknown}"
                raise ValueError(msg)
        frame = self._refresh(save=True).frame(copy=True)
        if wanted is None:
            return frame
        return frame[frame["status"].isin(wanted)].reset_index(drop=True)

    @property
    def best(self) -> Any:
        """The best done trial (lowest value, or highest when maximising); for a
        search of several objectives, its Pareto front (a list of
        :class:`BestTrial`, by first objective). A trial that violates a
        constraint is never among them.

        Returns
        -------
        BestTrial, or list of BestTrial for several objectives

        Raises
        ------
        DasktuneError
            If no feasible trial is done yet.
        """
        if len(self.directions) > 1:
            front = self.best_trials
            if not front:
                raise DasktuneError(self._nothing_done())
            return front
        row = self.store.best(self.search_id, self.direction)
        if row is None:
            raise DasktuneError(self._nothing_done())
        return BestTrial(**row)

    @property
    def best_trials(self) -> list[BestTrial]:
        """The Pareto front: the done feasible trials no other beats on every
        objective (Optuna's ``study.best_trials``); for one objective, the
        best trial alone. Empty before any feasible trial is done."""
        if len(self.directions) == 1:
            row = self.store.best(self.search_id, self.direction)
            return [] if row is None else [BestTrial(**row)]
        return [
            BestTrial(**row)
            for row in self.store.front(self.search_id, self.directions)
        ]

    def _nothing_done(self) -> str:
        """Why no trial can be best (an error's path: reads the trials)."""
        counts = self.trials()["status"].value_counts()
        done, failed = int(counts.get("done", 0)), int(counts.get("failed", 0))
        head = f"search {self.name!r} has no done feasible trial"
        if done:
            return (
                f"{head}: its {done} done trial(s) all violate their constraints "
                "(a value c > 0), so none can be best; trials() shows each one's "
                "constraints and violation"
            )
        others = ", ".join(
            f"{int(counts[s])} {s}"
            for s in ("failed", "pruned", "running", "queued")
            if counts.get(s, 0)
        )
        if not others:
            return f"{head} yet; run() it first"
        hint = (
            "; trials(status='failed') shows their errors"
            if failed
            else "; run() it again to finish the interrupted ones"
            if counts.get("queued", 0) or counts.get("running", 0)
            else ""
        )
        return f"{head} yet: its trials are {others}{hint}"

    def plot(self, path: str | os.PathLike[str] | None = None) -> Any:
        """Best value so far against trials and time, the learning curves of
        trials that reported (pruned ones dashed, ending in a cross), and value
        per parameter.

        Needs matplotlib. Returns the ``Figure``; saves it to ``path`` if given.
        """
        from dasktune.plot import plot_trials

        frame = self.trials()
        names = self._refresh().names
        return plot_trials(
            frame,
            names,
            direction=self.direction,
            directions=self.directions,
            title=self.name,
            path=path,
            curves=self.store.curves(self.search_id),
            metric_names=self.metric_names,
        )

    def close(self) -> None:
        """Release the store (when the search opened it)."""
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Search({self.name!r}, store={self.store.display_url!r})"
