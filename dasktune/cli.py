"""The ``dasktune`` command: ``demo``, ``run``, ``show``, ``serve`` and ``export``.

- ``dasktune demo``: the README's main job — shards of synthetic data loaded once
  with ``ProducerConsumer``, a likelihood fitted with ``SPSA`` and with
  ``minimize``, and a grid search recorded in a SQLite file; a second
  run reuses the stored trials.
- ``dasktune run FILE.py``: a search defined in a Python file, on a local
  cluster, a remote scheduler or a dask-jobqueue cluster.
- ``dasktune show STORE``: the searches of a store, or one search's best trials.
- ``dasktune serve STORE``: optuna-dashboard on the store's searches, live (127.0.0.1).
- ``dasktune export STORE [--name NAME] --to optuna-journal FILE``: a search as an
  Optuna study.

Errors print one line and exit with status 1 (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import itertools
import json
import math
import os
import runpy
import select
import shlex
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from dasktune._checks import sqlite_file, store_url
from dasktune._quiet import WORKER_LOG_LEVEL, ignoring_sigint, quiet_dask
from dasktune.records import error_line

__all__ = ["main"]

JOBQUEUE_CLUSTERS = {
    "slurm": "SLURMCluster",
    "pbs": "PBSCluster",
    "sge": "SGECluster",
    "lsf": "LSFCluster",
    "htcondor": "HTCondorCluster",
}


class CLIError(Exception):
    """A problem the user can fix, reported in one line."""


# -- clusters ------------------------------------------------------------------


def _import_jobqueue() -> Any:
    """``dask_jobqueue``, leaving Ctrl-C as it was.

    Importing it sets a SIGINT handler that calls ``sys.exit()`` (its
    ``runner`` module): Ctrl-C would then end the command as a clean exit,
    status 0, instead of stopping it with a KeyboardInterrupt (status 130).
    """
    previous = signal.getsignal(signal.SIGINT)
    try:
        import dask_jobqueue
    except ImportError as err:
        msg = (
            "--cluster needs dask-jobqueue: pip install dask-jobqueue (or "
            "dasktune's extra, from its clone: pip install -e '.[jobqueue]')"
        )
        raise CLIError(msg) from err
    finally:
        if (
            threading.current_thread() is threading.main_thread()
            and previous is not None
            and signal.getsignal(signal.SIGINT) is not previous
        ):
            signal.signal(signal.SIGINT, previous)
    return dask_jobqueue


def jobqueue_cluster(kind: str, jobs: int, security: Any = None) -> Any:
    """A dask-jobqueue cluster from the user's configuration, scaled to ``jobs``.

    The scheduler and its dashboard listen on the interface the configuration
    names (``jobqueue.<kind>.interface``, or ``scheduler-options`` ``host`` or
    ``interface``); a configuration naming none, which dask-jobqueue would bind
    to every interface (0.0.0.0), is refused. ``security`` (a
    ``distributed.security.Security``) makes the scheduler, the workers and
    the client speak TLS.

    The jobs are submitted before this returns: a submit command that fails
    (``sbatch: error: Invalid partition name specified``, no ``qsub``) raises
    :class:`CLIError` with the batch system's own message, and so does a
    configuration dask-jobqueue refuses, shown whole.
    """
    dask_jobqueue = _import_jobqueue()
    options = _scheduler_options(kind)
    try:
        cluster = getattr(dask_jobqueue, JOBQUEUE_CLUSTERS[kind])(
            scheduler_options=options, security=security
        )
    except (ValueError, TypeError, KeyError) as err:
        msg = (
            f"dask-jobqueue cannot build a {kind} cluster from your configuration "
            f"(jobqueue.{kind} in ~/.config/dask/jobqueue.yaml):\n{err}"
        )
        raise CLIError(msg) from err
    try:
        cluster.scale(jobs=jobs)
        _submit_jobs(cluster, kind)
    except BaseException as err:
        _close_cluster(cluster, err)
        raise
    return cluster


def _scheduler_options(kind: str) -> dict[str, Any]:
    """The configuration's ``scheduler-options`` for a ``kind`` cluster, bound
    to the interface it names, the dashboard too; refused when it names none."""
    import dask
    from distributed.utils import get_ip_interface

    key = f"jobqueue.{kind}"
    options = dict(dask.config.get(f"{key}.scheduler-options", None) or {})
    interface = dask.config.get(f"{key}.interface", None)
    if not (options.get("host") or options.get("interface") or interface):
        msg = (
            f"--cluster {kind}: your configuration names no network interface for "
            "the scheduler, and dask-jobqueue would then listen on every "
            "interface (0.0.0.0), its dashboard too; name the network the "
            f"workers reach it on: {key}.interface (such as ib0 or eth0) in "
            "~/.config/dask/jobqueue.yaml, or an address of this machine in "
            f"{key}.scheduler-options.host ('0.0.0.0' to listen everywhere on "
            "purpose)"
        )
        raise CLIError(msg)
    if not (options.get("host") or options.get("interface")):
        options["interface"] = interface
    if "dashboard_address" not in options:
        # dask-jobqueue's default (":8787") listens on every interface
        host = options.get("host")
        if not host:
            try:
                host = get_ip_interface(options["interface"])
            except ValueError as err:
                msg = f"--cluster {kind}: {err}"
                raise CLIError(msg) from err
        options["dashboard_address"] = f"{host}:8787"
    return options


def _close_cluster(cluster: Any, err: BaseException) -> None:
    """Close a cluster whose jobs failed; the jobs never submitted have nothing
    to cancel (and distributed refuses to close them), so they are dropped. A
    failure to close becomes a note on ``err``, the error that matters."""
    from distributed.core import Status

    for name, job in list(cluster.workers.items()):
        if job.status == Status.created:
            del cluster.workers[name]
            cluster.worker_spec.pop(name, None)
            job.status = Status.closed  # never submitted: nothing to cancel
    try:
        close_jobqueue_cluster(cluster)
    except Exception as close_err:
        err.add_note(f"closing the {type(cluster).__name__} failed too: {close_err!r}")


#: seconds the batch system's submit command (sbatch, qsub, ...) may take
_SUBMIT_SECONDS = 300.0


def close_jobqueue_cluster(cluster: Any) -> None:
    """Close a dask-jobqueue cluster, once.

    dask-jobqueue's ``Job.close`` cancels its job but leaves the job's status
    ``running``; ``SpecCluster``'s close then fails its last check (every job
    it created closing or closed) half-way, the cluster stays ``closing``, and
    distributed's atexit hook closes it again, waiting 10 s on it. The jobs
    are marked closing first, as the cluster's close is about to make them.
    """
    from distributed.core import Status

    jobs = {*getattr(cluster, "_created", ()), *cluster.workers.values()}
    for job in jobs:
        if job.status not in (Status.closed, Status.closing):
            job.status = Status.closing
    cluster.close()


def _submit_jobs(cluster: Any, kind: str) -> None:
    """Wait until the batch system has taken (or refused) the jobs just scaled.

    dask-jobqueue submits jobs in the background and leaves a refused submission
    in an unretrieved task; a job never submitted is still ``created`` once the
    cluster's state is corrected, and submitting it once more in the foreground
    raises the batch system's own error.
    """
    from distributed.core import Status

    try:
        cluster.sync(cluster._correct_state, callback_timeout=_SUBMIT_SECONDS)
        refused = [j for j in cluster.workers.values() if j.status == Status.created]
        if refused:
            cluster.sync(refused[0].start, callback_timeout=_SUBMIT_SECONDS)
    except TimeoutError as err:
        msg = (
            f"the batch system did not take the {kind} jobs within "
            f"{_SUBMIT_SECONDS:g} s: check that its submit command answers "
            "(run it by hand with the job script dask-jobqueue prints with --debug)"
        )
        raise CLIError(msg) from err
    except (RuntimeError, OSError) as err:
        msg = f"the batch system refused the {kind} jobs:\n{str(err).strip()}"
        raise CLIError(msg) from err


def _wait_for_workers(client: Any, timeout: float, where: str) -> None:
    """Wait for the first worker, at most ``timeout`` seconds."""
    try:
        client.wait_for_workers(1, timeout=timeout)
    except TimeoutError as err:
        msg = (
            f"no worker joined {where} within {timeout:g} s (--worker-timeout); "
            "the jobs may be queued or failing: check the batch system's queue "
            "and the jobs' output files, or raise --worker-timeout"
        )
        raise CLIError(msg) from err


@contextlib.contextmanager
def _client(args: argparse.Namespace) -> Iterator[Any]:
    """The client the command runs on; what it starts, it closes."""
    from dasktune.run.cluster import _get_client, close_owned, connect

    security = _security(args)
    cluster = None
    if getattr(args, "cluster", None):
        cluster = jobqueue_cluster(args.cluster, args.jobs, security)
        client = connect(cluster)
        tls = "TLS" if security is not None else "plain TCP: not encrypted"
        print(f"scheduler: {cluster.scheduler_address} ({tls})", flush=True)
        print(f"dashboard: {client.dashboard_link}", flush=True)
        try:
            _wait_for_workers(client, args.worker_timeout, f"the {args.cluster} jobs")
        except BaseException as err:
            client.close()
            _close_cluster(cluster, err)
            raise
    elif args.scheduler:
        try:
            client = connect(
                args.scheduler, security=security, timeout=args.connect_timeout
            )
        except (OSError, TimeoutError, TypeError) as err:
            notes = "".join(f"; {note}" for note in getattr(err, "__notes__", []))
            msg = f"cannot reach the scheduler at {args.scheduler}: {err}{notes}"
            raise CLIError(msg) from err
        print(f"dashboard: {client.dashboard_link}", flush=True)
        try:
            _wait_for_workers(client, args.worker_timeout, args.scheduler)
        except BaseException:
            client.close()
            raise
    else:
        options: dict[str, Any] = (
            {"n_workers": args.n_workers} if args.n_workers else {}
        )
        if not args.debug:  # the workers' warnings on closing (see _quiet)
            options["silence_logs"] = WORKER_LOG_LEVEL
        # the link is printed once, here, whichever client runs the command;
        # the workers ignore Ctrl-C: the command closes them
        with ignoring_sigint():
            client = _get_client(None, options, announce=False)
        print(f"dashboard: {client.dashboard_link}", flush=True)
    try:
        yield client
    finally:
        if cluster is not None or args.scheduler:
            client.close()
        if cluster is not None:
            close_jobqueue_cluster(cluster)
        close_owned()


def _security(args: argparse.Namespace) -> Any:
    """The ``Security`` of the ``--tls-*`` options, or ``None`` (then Dask's own
    TLS configuration applies)."""
    files = (args.tls_ca_file, args.tls_cert, args.tls_key)
    if not any(files):
        return None
    cluster = getattr(args, "cluster", None)
    if not args.scheduler and not cluster:
        msg = (
            "--tls-ca-file, --tls-cert and --tls-key apply to a --scheduler "
            "address or a --cluster"
        )
        raise CLIError(msg)
    if cluster and not all(files):
        msg = (
            "--cluster with TLS needs --tls-ca-file, --tls-cert and --tls-key: "
            "the scheduler and the workers present that certificate"
        )
        raise CLIError(msg)
    for flag, path in zip(
        ("--tls-ca-file", "--tls-cert", "--tls-key"), files, strict=True
    ):
        if path is not None and not os.path.isfile(path):
            msg = f"{flag} {path}: no such file"
            raise CLIError(msg)
    from distributed.security import Security

    # a cluster dasktune starts: its scheduler and workers present the same
    # certificate (as Security.temporary() does)
    started = (
        {
            "tls_scheduler_cert": args.tls_cert, "tls_scheduler_key": args.tls_key,
            "tls_worker_cert": args.tls_cert, "tls_worker_key": args.tls_key,
        }
        if cluster
        else {}
    )  # fmt: skip
    return Security(
        tls_ca_file=args.tls_ca_file,
        tls_client_cert=args.tls_cert,
        tls_client_key=args.tls_key,
        require_encryption=True,
        **started,
    )


def _at_least_one(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"must be an integer >= 1, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _seconds(text: str) -> float:
    """An argparse type: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        msg = f"must be a positive, finite number of seconds, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


# -- demo ----------------------------------------------------------------------


def _make_shard(seed: int) -> np.ndarray:
    """Synthetic data: one shard of draws from N(1.5, 0.7^2)."""
    return np.random.default_rng(seed).normal(1.5, 0.7, size=50_000)


def _neg_loglike(theta: Any, data: np.ndarray) -> float:
    """Gaussian negative log-likelihood of ``(mu, log_sigma)``, vector or dict."""
    if isinstance(theta, dict):
        mu, log_sigma = theta["mu"], theta["log_sigma"]
    else:
        mu, log_sigma = theta
    z = (data - mu) / np.exp(log_sigma)
    return float(0.5 * np.sum(z * z) + data.size * log_sigma)


def _grid(values: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the value lists, as parameter dicts (the demo needs
    only dasktune's own dependencies, not scikit-learn's ``ParameterGrid``).

    >>> _grid({"a": [1, 2], "b": ["x"]})
    [{'a': 1, 'b': 'x'}, {'a': 2, 'b': 'x'}]
    """
    names = list(values)
    return [
        dict(zip(names, combination, strict=True))
        for combination in itertools.product(*(values[name] for name in names))
    ]


def _demo(args: argparse.Namespace) -> int:
    from dasktune import SPSA, ProducerConsumer, Search, minimize
    from dasktune.store.sql import TrialStore

    rows = []
    with (
        # opened before the cluster starts (a bad store fails first), and once
        contextlib.closing(TrialStore(store_url(args.store))) as store,
        _client(args) as client,
        ProducerConsumer(
            _make_shard, list(range(8)), _neg_loglike, client=client, reduce=sum,
            name="demo-data",
        ) as data,
    ):  # fmt: skip
        print(f"data: 8 files of draws loaded once on the workers ({data})", flush=True)
        started = time.perf_counter()
        fit = SPSA(data, [0.0, 0.0], a_par=2e-6, c_par=0.05, maxiter=80,
                   n_perturbations=2, seed=0, client=client, print_iters=None,
                   progress=True)  # fmt: skip
        rows.append(("SPSA", fit.x, fit.fun, fit.nfev, time.perf_counter() - started))
        started = time.perf_counter()
        de = minimize(data, [(-5.0, 5.0), (-3.0, 3.0)], seed=0, maxiter=20, popsize=8,
                      client=client, store=store, name="demo-de", progress=True)  # fmt: skip
        rows.append(("minimize (DE)", de.x, de.fun, de.nfev_evaluated,
                     time.perf_counter() - started))  # fmt: skip
        grid = _grid(
            {"mu": np.round(np.linspace(0.5, 2.5, 9), 3).tolist(),
             "log_sigma": np.round(np.linspace(-1.0, 0.5, 7), 3).tolist()}
        )  # fmt: skip
        started = time.perf_counter()
        with Search("demo-grid", data, store, client=client) as search:
            report = search.run(grid)
            best = search.best
        x = np.array([best.params["mu"], best.params["log_sigma"]])
        rows.append(("Search (grid)", x, best.value, report.evaluated,
                     time.perf_counter() - started))  # fmt: skip
    print()
    print(
        f"{'method':<15} {'mu':>8} {'sigma':>8} {'-loglike':>12} {'evaluated':>10} {'s':>6}"
    )
    for method, x, value, n, seconds in rows:
        print(f"{method:<15} {x[0]:8.4f} {np.exp(x[1]):8.4f} {value:12.1f} {n:10d} "
              f"{seconds:6.2f}")  # fmt: skip
    print(f"\ntruth: mu 1.5, sigma 0.7; trials recorded in {store.display_url}")
    if report.reused:
        print(f"(the grid search reused {report.reused} stored trials)")
    return 0


# -- run -----------------------------------------------------------------------


def _run(args: argparse.Namespace) -> int:
    from dasktune import Search
    from dasktune.optim.base import AskTell
    from dasktune.store.sql import TrialStore

    if not os.path.isfile(args.file):
        msg = f"no such file: {args.file}"
        raise CLIError(msg)
    try:
        namespace = _run_file(args.file)
    except Exception as err:
        msg = f"running {args.file} failed: {type(err).__name__}: {err}"
        if isinstance(err, ModuleNotFoundError) and err.name:
            msg += (
                f" (install the package that provides {err.name.split('.')[0]}, "
                "here and where the workers run; --debug shows the traceback)"
            )
        raise CLIError(msg) from err
    objective = namespace.get("objective")
    if objective is None:
        msg = f"{args.file} defines no `objective` (a function of a parameter dict)"
        raise CLIError(msg)
    if not callable(objective):
        msg = (
            f"{args.file}: `objective` must be a function of a parameter dict, "
            f"got {type(objective).__name__}: {objective!r}"
        )
        raise CLIError(msg)
    source = namespace.get("optimizer", namespace.get("source"))
    if callable(source) and not isinstance(source, AskTell):
        source = source()
    space = namespace.get("space")
    if source is None and space is None:
        msg = f"{args.file} defines none of `source`, `optimizer` or `space`"
        raise CLIError(msg)
    if source is None and args.n_trials is None:
        msg = (
            f"{args.file} defines a `space` and no source: give --n-trials N to "
            "sample it at random"
        )
        raise CLIError(msg)
    name = (
        args.name
        or namespace.get("name")
        or os.path.splitext(os.path.basename(args.file))[0]
    )
    with (
        # opened before the cluster starts: a bad store fails first
        contextlib.closing(TrialStore(store_url(args.store))) as store,
        _client(args) as client,
        Search(
            name,
            objective,
            store,
            client=client,
            space=space,
            direction=namespace.get("direction", "minimize"),
            directions=namespace.get("directions"),
            metric_names=namespace.get("metric_names"),
        ) as search,
    ):
        with warnings.catch_warnings():
            # the command says so itself, with the search's counts, and exits 1
            warnings.filterwarnings(
                "ignore", "every trial of this run", category=RuntimeWarning
            )
            report = search.run(
                source, n_trials=args.n_trials, seed=namespace.get("seed")
            )
        print(
            f"{name}: {report.evaluated} evaluated, {report.failed} failed, "
            f"{report.reused} reused in {report.elapsed:.1f} s ({report.stopped})"
        )
        done = search.trials(status="done")
        front = search.best_trials
        if len(search.directions) > 1 and front:
            print(f"Pareto front: {len(front)} trials")
            for t in front[:10]:
                print(f"  {', '.join(f'{v:.6g}' for v in t.values)} at {t.params}")
        elif front:
            print(f"best: {front[0].value:.6g} at {front[0].params}")
        elif len(done):
            print(f"{name}: no done trial satisfies its constraints"
                  + (" or has every objective's value" if len(search.directions) > 1
                     else ""), file=sys.stderr)  # fmt: skip
            return 1
        else:
            # a file as typed; a URL with its password hidden
            shown = search.store.display_url if "://" in args.store else args.store
            print(_no_success(name, search.trials(), shown), file=sys.stderr)
            return 1
    if report.failed and not report.evaluated and not report.pruned:
        print(f"dasktune: every trial of this run failed ({report.failed})",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


def _no_success(name: str, trials: Any, store: str) -> str:
    """Why a search has no result: its counts and the last failure's error."""
    failed = trials[trials["status"] == "failed"]
    text = f"search {name!r} has no successful trial yet ({len(trials)} trials"
    text += f", {len(failed)} failed)" if len(failed) else ")"
    if len(failed):
        last = error_line(failed.sort_values("number")["error"].iloc[-1])
        text += f"; the last failure: {last or '(no message)'}"
        text += (
            f"\n(dasktune show {shlex.quote(store)} --name {shlex.quote(name)} "
            "--status failed lists them with their errors"
            + ("; the URL's password is hidden)" if "***" in store else ")")
        )
    return text


def _run_file(path: str) -> dict[str, Any]:
    """Run ``path`` as ``python FILE.py`` would and ship its local modules.

    The file's directory goes first on ``sys.path`` (and stays there). Modules
    that the file imported from that directory (a ``helper.py`` beside it, a
    local package) are registered with cloudpickle to be pickled by value: the
    objective's functions travel to the workers with the code they call, so
    workers started anywhere, without those files, can run them, and an edited
    helper is shipped afresh by the next run.
    """
    import cloudpickle

    directory = os.path.dirname(os.path.abspath(path))
    if directory not in sys.path:
        sys.path.insert(0, directory)
    before = set(sys.modules)
    namespace = runpy.run_path(path, run_name="__dasktune_run__")
    for name in sorted(set(sys.modules) - before):
        if "." not in name and _is_local(sys.modules[name], directory):
            cloudpickle.register_pickle_by_value(sys.modules[name])
    return namespace


def _is_local(module: Any, directory: str) -> bool:
    """Whether ``module`` was loaded from ``directory`` (not an installed one)."""
    origin = getattr(module, "__file__", None)
    if not origin:
        return False
    origin = os.path.abspath(origin)
    installed = {os.path.abspath(p) for p in (sys.prefix, sys.base_prefix)}
    return origin.startswith(directory + os.sep) and not any(
        origin.startswith(p + os.sep) for p in installed
    )


# -- show ----------------------------------------------------------------------


def _show(args: argparse.Namespace) -> int:
    import pandas as pd

    from dasktune.store.sql import search_directions, search_metric_names

    store = _open_store_readonly(args.store)  # show never writes
    try:
        if args.name is None:
            searches = store.list_searches()
            for entry in searches:  # every objective's direction
                entry["direction"] = ", ".join(search_directions(entry))
            frame = pd.DataFrame(searches)
            if not frame.empty:
                frame["created"] = pd.to_datetime(frame["created"], unit="s").dt.round(
                    "s"
                )
                frame = frame[["name", "direction", "created", "done", "pruned",
                               "failed", "running", "queued"]]  # fmt: skip
        else:
            row = store.find_search(args.name)
            if row is None:
                names = [s["name"] for s in store.list_searches()]
                msg = (
                    f"no search named {args.name!r} in {store.display_url}; "
                    f"it has {names}"
                )
                raise CLIError(msg)
            trials = store.trials(row["id"])
            directions = search_directions(row)
            names = search_metric_names(row) or _default_names(len(directions))
            if args.status == "done":
                frame = _best_trials(trials, directions, args.top, names)
            else:
                frame = _trials_by_status(trials, args.status, args.top, names)
            if args.format == "table":
                _summary(args.name, trials)
                _heading(frame, trials, args, len(directions))
        _print(frame, args.format)
    finally:
        store.close()
    return 0


def _heading(
    frame: Any, trials: list[dict[str, Any]], args: argparse.Namespace, n_obj: int
) -> None:
    """What the table below lists (or why it is empty), for ``show``'s table."""
    if args.status != "done":
        shown = "trials" if args.status == "all" else f"{args.status} trials"
        print(f"{shown}, newest first:")
    elif not frame.empty:
        print("Pareto front, by the first objective:" if n_obj > 1 else "best trials:")
    elif any(t["status"] == "failed" for t in trials):
        print("(no done trial yet; --status failed lists the failed ones with their "
              "errors)")  # fmt: skip


def _trials_by_status(
    trials: list[dict[str, Any]], status: str, top: int, names: list[str]
) -> Any:
    """The newest ``top`` trials with ``status`` (``"all"``: any), with one
    column per objective, and failed ones with their error."""
    chosen = [t for t in trials if status == "all" or t["status"] == status]
    chosen.sort(key=lambda t: t["number"], reverse=True)
    records = [
        {"number": t["number"], **({"status": t["status"]} if status == "all" else {}),
         **_values(t, names), **t["params"], "duration": t["duration"],
         **({"error": error_line(t["error"])} if status in ("failed", "all") else {})}
        for t in chosen[:top]
    ]  # fmt: skip
    return _frame(records)


def _default_names(n_objectives: int) -> list[str]:
    """The value columns of a search without metric names: ``value``, or
    ``values_0``, ``values_1``, ... for several objectives."""
    return (
        ["value"] if n_objectives == 1 else [f"values_{i}" for i in range(n_objectives)]
    )


def _values(t: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """A trial's value, or one column per objective (``None`` where unknown),
    under the objectives' names."""
    if len(names) == 1:
        return {names[0]: t["value"]}
    got = t["objectives"] or [None] * len(names)
    return dict(zip(names, got, strict=False))


def _frame(records: list[dict[str, Any]]) -> Any:
    """``records`` as a DataFrame whose columns mixing ints and floats stay as
    given: a parameter ``1`` shows as ``1``, not ``1.0`` (a different key),
    also beside floats or where some trials lack it."""
    import pandas as pd

    frame = pd.DataFrame.from_records(records)
    for column in frame.columns:
        kinds = {type(r.get(column)) for r in records}
        if int in kinds and kinds != {int}:  # beside floats, or missing in some
            frame[column] = pd.Series([r.get(column) for r in records], dtype=object)
    return frame


def _best_trials(
    trials: list[dict[str, Any]], directions: list[str], top: int, names: list[str]
) -> Any:
    """The best feasible done trials; for several objectives, the Pareto front
    (by first objective) with one column per objective."""
    import numpy as np

    from dasktune._pareto import pareto_front
    from dasktune._values import feasible

    done = [t for t in trials if t["status"] == "done" and feasible(t["constraints"])]
    if len(directions) > 1:
        done = [t for t in done if t["objectives"] is not None]
        if not done:
            return _frame([])
        points = np.array([t["objectives"] for t in done], dtype=float)
        done = [
            done[i] for i in pareto_front(points.reshape(len(done), -1), directions)
        ]
        first = -1.0 if directions[0] == "maximize" else 1.0
        done.sort(key=lambda t: first * t["objectives"][0])
    else:
        done.sort(key=lambda t: t["value"], reverse=directions[0] == "maximize")
    records = [
        {"number": t["number"], **_values(t, names), **t["params"],
         "duration": t["duration"]}
        for t in done[:top]
    ]  # fmt: skip
    return _frame(records)


def _summary(name: str, trials: list[dict[str, Any]]) -> None:
    counts: dict[str, int] = {}
    for t in trials:
        counts[t["status"]] = counts.get(t["status"], 0) + 1
    durations = [t["duration"] for t in trials if t["duration"] is not None]
    print(f"search {name!r}: {len(trials)} trials, " + ", ".join(
        f"{n} {status}" for status, n in sorted(counts.items())))  # fmt: skip
    started = [t["started"] for t in trials if t["started"] is not None]
    finished = [t["finished"] for t in trials if t["finished"] is not None]
    if durations and started and finished:
        span = max(finished) - min(started)
        print(f"evaluation time: mean {np.mean(durations):.3g} s, total "
              f"{np.sum(durations):.3g} s, over {span:.3g} s of wall time")  # fmt: skip


def _print(frame: Any, fmt: str) -> None:
    if fmt == "csv":
        print(frame.to_csv(index=False), end="")
    elif fmt == "json":
        print(
            json.dumps(
                json.loads(frame.to_json(orient="records", date_format="iso")), indent=2
            )
        )
    elif frame.empty:
        print("(nothing)")
    else:
        print(frame.to_string(index=False))


# -- export --------------------------------------------------------------------

EXPORT_TARGETS = ("optuna-journal", "optuna-storage")


def _open_store_readonly(store: str) -> Any:
    from dasktune.store.sql import TrialStore

    url = store_url(store)
    path = sqlite_file(url)
    if path is not None and not os.path.exists(path):
        msg = f"no store at {store}"
        raise CLIError(msg)
    return TrialStore(url, readonly=True)


def _export(args: argparse.Namespace) -> int:
    from dasktune.export import to_optuna
    from dasktune.optim.optuna import import_optuna

    kind, target = args.to
    if kind not in EXPORT_TARGETS:
        msg = f"--to takes one of {list(EXPORT_TARGETS)} and a target, got {kind!r}"
        raise CLIError(msg)
    try:
        optuna = import_optuna()
    except ImportError as err:
        raise CLIError(str(err)) from err
    store = _open_store_readonly(args.store)  # export never writes the store
    created = kind == "optuna-journal" and not os.path.exists(target)
    try:
        if args.name is None:  # the store's only search
            names = [s["name"] for s in store.list_searches()]
            if not names:
                msg = f"{store.display_url} holds no search to export"
                raise CLIError(msg)
            if len(names) > 1:
                msg = (
                    f"{store.display_url} holds {len(names)} searches "
                    f"{names[:10]}: name the one to export with --name"
                )
                raise CLIError(msg)
            args.name = names[0]
        if kind == "optuna-journal":
            journal = optuna.storages.journal
            storage = optuna.storages.JournalStorage(journal.JournalFileBackend(target))
        else:
            storage = target
        study = to_optuna(store, args.name, storage, study_name=args.study_name)
    except BaseException:
        if created and os.path.exists(target) and os.path.getsize(target) == 0:
            os.remove(target)  # a journal this call made and wrote nothing to
        raise
    finally:
        store.close()
    print(
        f"exported {len(study.trials)} trials of {args.name!r} to {kind} {target} "
        f"as study {study.study_name!r}"
    )
    if kind == "optuna-journal":
        print(f"view it with: optuna-dashboard {target}")
    return 0


def _add_export(commands: Any, debug: argparse.ArgumentParser) -> None:
    export = commands.add_parser(
        "export",
        parents=[debug],
        help="write a search as an Optuna study (read-only on the store)",
    )
    export.add_argument("store", help="store URL or SQLite file")
    export.add_argument(
        "--name", help="the search to export (default: the store's only search)"
    )
    export.add_argument(
        "--to",
        nargs=2,
        required=True,
        metavar=("KIND", "TARGET"),
        help="optuna-journal FILE, or optuna-storage URL (e.g. sqlite:///optuna.db)",
    )
    export.add_argument("--study-name", help="the study's name (default: the search's)")
    export.set_defaults(handler=_export)


# -- serve ---------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    from dasktune.serve import make_server

    store = _open_store_readonly(args.store)  # fails early on a bad store
    try:
        try:
            server = make_server(store, args.port, quiet=not args.debug)
        except OSError as err:
            if err.errno != errno.EADDRINUSE:
                raise
            msg = f"port {args.port} on 127.0.0.1 is in use: give another with --port"
            raise CLIError(msg) from err
        with server:
            print(f"dasktune serve: optuna-dashboard on {server.url} "
                  "(Ctrl-C stops)", flush=True)  # fmt: skip
            server.serve_forever()  # until Ctrl-C
    finally:
        store.close()
    return 0


def _add_serve(commands: Any, debug: argparse.ArgumentParser) -> None:
    serve = commands.add_parser(
        "serve",
        parents=[debug],
        help="optuna-dashboard on every search of a store, live (127.0.0.1)",
    )
    serve.add_argument("store", help="store URL or SQLite file")
    serve.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    serve.set_defaults(handler=_serve)


# -- the parser ------------------------------------------------------------------


def _cluster_options(parser: argparse.ArgumentParser, *, jobqueue: bool) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--scheduler", help="a scheduler address (default: a LocalCluster)"
    )
    if jobqueue:
        where.add_argument("--cluster", choices=sorted(JOBQUEUE_CLUSTERS),
                           help="a dask-jobqueue cluster from your jobqueue.yaml")  # fmt: skip
        parser.add_argument(
            "--jobs", type=_at_least_one, default=1, help="batch jobs (--cluster)"
        )
    parser.add_argument("--n-workers", type=_at_least_one,
                        help="workers of the LocalCluster")  # fmt: skip
    parser.add_argument("--connect-timeout", type=_seconds, default=10.0,
                        help="seconds to reach --scheduler")  # fmt: skip
    parser.add_argument("--worker-timeout", type=_seconds, default=300.0,
                        help="seconds to wait for the first worker of --scheduler "
                        "or --cluster (default 300)")  # fmt: skip
    tls = parser.add_argument_group(
        "TLS (a tls:// --scheduler, or a --cluster; default: Dask's config)"
    )
    tls.add_argument("--tls-ca-file", help="CA certificate(s) file")
    tls.add_argument("--tls-cert", help="client certificate file")
    tls.add_argument("--tls-key", help="client private key file")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dasktune",
        description="Run functions, optimizers and searches as Dask futures.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True)
    # --debug after the command too (SUPPRESS: absent there, the one before stays)
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show tracebacks")  # fmt: skip

    demo = commands.add_parser(
        "demo", parents=[debug], help="a short end-to-end fit on a LocalCluster"
    )
    demo.add_argument("--store", default="dasktune-demo.db",
                      help="store URL or file (default dasktune-demo.db)")  # fmt: skip
    _cluster_options(demo, jobqueue=False)
    demo.set_defaults(handler=_demo)

    run = commands.add_parser(
        "run", parents=[debug], help="run a search defined in a Python file"
    )
    run.add_argument("file", help="defines objective, and space/source/optimizer")
    run.add_argument("--store", default="dasktune.db",
                     help="store URL or file (default dasktune.db)")  # fmt: skip
    run.add_argument("--name", help="the search's name (default: the file's)")
    run.add_argument("--n-trials", type=_at_least_one,
                     help="at most this many new trials")  # fmt: skip
    _cluster_options(run, jobqueue=True)
    run.set_defaults(handler=_run)

    show = commands.add_parser(
        "show", parents=[debug], help="list searches, or a search's best trials"
    )
    show.add_argument("store", help="store URL or SQLite file")
    show.add_argument("--name", help="one search")
    show.add_argument("--top", type=_at_least_one, default=10,
                      help="trials to show (default 10)")  # fmt: skip
    show.add_argument(
        "--status", choices=["done", "failed", "pruned", "running", "queued", "all"],
        default="done", help="the best done trials (default), or the newest with "
        "this status; failed ones with their error",
    )  # fmt: skip
    show.add_argument("--format", choices=["table", "csv", "json"], default="table",
                      help="default table")  # fmt: skip
    show.set_defaults(handler=_show)
    _add_export(commands, debug)
    _add_serve(commands, debug)
    return parser


def _reader_gone() -> bool:
    """Whether stdout is a pipe whose reader has gone (not another EPIPE): its
    descriptor polls as an error (Python drops what it had buffered for it,
    so a second flush would not tell)."""
    poll = getattr(select, "poll", None)
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    if poll is None:  # no poll() (Windows): as any other error
        return False
    poller = poll()
    poller.register(fd, select.POLLOUT)
    return any(events & select.POLLERR for _, events in poller.poll(0))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``dasktune`` command; return its exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if getattr(args, "jobs", 1) != 1 and not getattr(args, "cluster", None):
        parser.error("--jobs needs --cluster (the batch system to submit them to)")
    if getattr(args, "status", "done") != "done" and not args.name:
        parser.error("--status needs --name (the search whose trials to list)")
    try:
        with quiet_dask(not args.debug):  # Dask's noise: shown with --debug
            return int(args.handler(args))
    except KeyboardInterrupt:
        print("dasktune: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if isinstance(err, BrokenPipeError) and _reader_gone():
            # the reader of the output went away (`dasktune show ... | head`):
            # as a pipe's writer, stop quietly; stdout goes nowhere, so that
            # the interpreter's own flush at exit does not complain again
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            return 1
        if args.debug:
            raise
        text = str(err).strip()
        if not isinstance(err, CLIError) and text:  # a CLIError is shown whole
            text = text.splitlines()[0]
        label = "" if isinstance(err, CLIError) else f"{type(err).__name__}: "
        print(f"dasktune: error: {label}{text}", file=sys.stderr)
        return 1
