"""Report -> stop latency: how soon a running trial learns the pruner stopped it.

Run: ``python benchmarks/bench_stop_latency.py`` (about a minute).

Every measure is taken twice in the same run: through the direct line
(:mod:`dasktune.run.line`: reports and scores on a TCP connection from the
trial's thread to the driver, stops back on it) and, the peer, through Dask
alone (``dask.config.set({"dasktune.report-line": False})``: reports and
scores as events, worker -> scheduler -> the driver's client, stops by
``run`` on the worker, as every report travelled before the line).

(a) dasktune's ``Search`` with ASHA (``SuccessiveHalvingPruner(1, 3,
    max_resource=27)``) on a 2-process ``LocalCluster`` (2 threads each): 60
    trials whose loss curves ``a + (1 - a) * exp(-r * t)`` differ, each epoch
    lasting 2 ms, then 20 ms. During an epoch the objective asks
    ``trial.should_prune()`` every 0.2 ms, and stops before its next report
    once it is told. Printed, over the pruned trials: the time from the report
    that triggered the stop (the worker's clock when it reported) to the
    moment the trial learned it (median, p90, in ms), the part of it after the
    driver's decision, and how many steps trials reported past the step their
    stop was decided at. The issue's target: median <= 10 ms, and no step past
    the decision with epochs >= 20 ms.
(b) ``HyperbandSearchCV`` (``SGDClassifier`` on ``load_digits``, ``max_iter=27``)
    on the same cluster: a model's step is a task the driver sends only once
    the previous score is decided, so a stopped model runs no step past its
    decision by construction. Printed: the time from the end of the scoring
    task that triggered a stop (the worker's clock, from Dask's task stream)
    to the driver's decision, and, for a model promoted, to the start of its
    next step on a worker (which includes waiting for a free thread). The
    score task pushes its score as an event (as ``Search``'s reports travel:
    worker -> scheduler -> the driver's client), and the driver decides on
    it; the task's end and result, which ``as_completed`` waited for before,
    come later. With ``partial_fit`` busy in the worker's threads, the
    worker's event loop waits for the GIL and a core before an event leaves;
    the line's frame leaves from the task's own thread.

Both clocks are this machine's (``time.time()`` in every process).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import dask.config
import numpy as np
from distributed import Client, LocalCluster, get_task_stream

import dasktune
from dasktune.optim.pruners import HyperbandPruner, SuccessiveHalvingPruner, Verdict

N_TRIALS = 60
STEPS = 27
POLL = 0.0002


def objective(params: dict, trial) -> float:
    """Epochs of ``params["epoch"]`` s, asking whether to stop every 0.2 ms."""
    epoch, a, r = params["epoch"], params["a"], params["r"]
    reported: dict[int, float] = {}
    value = math.nan
    for step in range(1, STEPS + 1):
        end = time.time() + epoch
        while time.time() < end:
            if trial.should_prune():
                _log(trial.number, reported, time.time(), step - 1)
                raise dasktune.TrialPruned
            time.sleep(POLL)
        value = a + (1 - a) * math.exp(-r * step)
        reported[step] = time.time()
        trial.report(step, value)
    _log(trial.number, reported, None, STEPS)
    return value


def _log(number: int, reported: dict[int, float], learned, last: int) -> None:
    line = {"number": number, "reported": reported, "learned": learned, "last": last}
    with open(os.environ["STOP_LOG"], "a") as f:
        f.write(json.dumps(line) + "\n")


class TimedASHA(SuccessiveHalvingPruner):
    """ASHA that notes when and at which step it stopped each trial."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.stopped: dict[int, tuple[int, float]] = {}

    def report(self, number: int, step: int, value: float) -> Verdict:
        verdict = super().report(number, step, value)
        if verdict:
            self.stopped[number] = (step, time.time())
        return verdict


class TimedHyperband(HyperbandPruner):
    """Hyperband that notes when it decided on each (model, calls)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.decided: dict[tuple[int, int], tuple[bool, float]] = {}

    def report(self, number: int, step: int, value: float) -> Verdict:
        verdict = super().report(number, step, value)
        self.decided[number, step] = (bool(verdict), time.time())
        return verdict


def _ms(values: list[float]) -> str:
    if not values:
        return "  (none)"
    p90 = float(np.percentile(values, 90))
    return f"median {statistics.median(values) * 1e3:7.2f} ms, p90 {p90 * 1e3:7.2f} ms"


def search_latency(client: Client, epoch: float) -> None:
    rng = np.random.default_rng(0)
    grid = [
        {"i": i, "epoch": epoch, "a": float(a), "r": float(r)}
        for i, (a, r) in enumerate(
            zip(
                rng.uniform(0.05, 0.5, N_TRIALS),
                np.exp(rng.uniform(math.log(0.02), math.log(0.5), N_TRIALS)),
                strict=True,
            )
        )
    ]
    log = Path(os.environ["STOP_LOG"])
    log.write_text("")
    pruner = TimedASHA(1, 3, max_resource=STEPS)
    with dasktune.Search("latency", objective, "sqlite://", client=client) as search:
        search.run(grid, pruner=pruner, progress=False)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    after_report, after_decision, past = [], [], []
    for line in lines:
        number = line["number"]
        if number not in pruner.stopped:
            continue
        step, decided = pruner.stopped[number]
        past.append(line["last"] - step)
        if line["learned"] is not None:
            after_report.append(line["learned"] - line["reported"][str(step)])
            after_decision.append(line["learned"] - decided)
    return after_report, after_decision, past


def _print(label: str, measured) -> None:
    after_report, after_decision, past = measured
    on_time = sum(p == 0 for p in past)
    print(f"(a) {label}: {len(past)} of {N_TRIALS} trials stopped")
    print(f"    report -> trial knows:   {_ms(after_report)}")
    print(f"    decision -> trial knows: {_ms(after_decision)}")
    print(
        f"    steps reported past the decision: {on_time} trials 0, max "
        f"{max(past, default=0)}, mean {np.mean(past) if past else 0:.2f}"
    )


def hyperband_latency(client: Client, label: str) -> list[float]:
    from sklearn.datasets import load_digits
    from sklearn.linear_model import SGDClassifier

    from dasktune.sklearn import HyperbandSearchCV

    class Timed(HyperbandSearchCV):
        def _pruner(self) -> HyperbandPruner:
            plain = super()._pruner()
            self.timed = TimedHyperband(
                1, self.max_iter, self.aggressiveness, seed=plain.seed,
                direction="maximize",
            )  # fmt: skip
            return self.timed

    X, y = load_digits(return_X_y=True)
    params = {"alpha": np.logspace(-6, 0, 30).tolist(), "penalty": ["l2", "l1"]}
    search = Timed(
        SGDClassifier(tol=None, random_state=0), params, max_iter=STEPS,
        random_state=0, client=client,
    )  # fmt: skip
    with get_task_stream(client) as stream:
        search.fit(X, y)
    ends: dict[tuple[int, int], float] = {}
    starts: dict[tuple[int, int], float] = {}
    for task in stream.data:
        prefix, _, number, calls, _ = str(task["key"]).rsplit("-", 4)
        compute = [s for s in task["startstops"] if s["action"] == "compute"]
        if not compute or not calls.isdigit():
            continue
        where = (int(number), int(calls))
        if prefix.startswith("score"):
            ends[where] = compute[-1]["stop"]
        elif prefix.startswith("partial_fit"):
            starts[where] = compute[0]["start"]
    stops, next_steps, decisions = [], [], []
    for (number, calls), (prune, decided) in search.timed.decided.items():
        if (number, calls) not in ends:
            continue
        decisions.append(decided - ends[number, calls])
        if prune:
            stops.append(decided - ends[number, calls])
        else:
            later = [c for (n, c) in starts if n == number and c > calls]
            if later:
                next_steps.append(starts[number, min(later)] - ends[number, calls])
    history = search.cv_results_["partial_fit_calls"]
    print(
        f"(b) HyperbandSearchCV, {label}: {len(history)} models, "
        f"{search.n_partial_fit_calls_} partial_fit calls: {len(stops)} stopped"
    )
    print(f"    score ends -> decided (all):    {_ms(decisions)}")
    print(f"    score ends -> stop decided:     {_ms(stops)}")
    print(
        f"    score ends -> next step starts: {_ms(next_steps)} (with the wait "
        "for a free thread)"
    )
    print("    steps past the decision: 0 by construction (sent after it)")
    return decisions


#: the two ways reports travel, measured in turn in the same run
LINE, EVENTS = "the line", "events (the peer)"
PATHS = {LINE: True, EVENTS: False}


def _ratio(what: str, peer: list[float], line: list[float]) -> None:
    if peer and line:
        ratio = statistics.median(peer) / statistics.median(line)
        print(f"    {what}, events / line: {ratio:.2f}x at the median")


def main() -> None:
    print(f"load average before: {os.getloadavg()}")
    measured: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        os.environ["STOP_LOG"] = str(Path(folder) / "stops.jsonl")
        with (
            LocalCluster(
                n_workers=2, threads_per_worker=2, host="127.0.0.1",
                dashboard_address=None,
            ) as cluster,
            Client(cluster) as client,
        ):  # fmt: skip
            for epoch in (0.002, 0.02):
                for path, line in PATHS.items():
                    with dask.config.set({"dasktune.report-line": line}):
                        found = search_latency(client, epoch)
                    _print(f"Search + ASHA, {epoch * 1e3:g} ms epochs, {path}", found)
                    measured[f"{epoch * 1e3:g} ms", path] = found[0]
                ms = f"{epoch * 1e3:g} ms"
                _ratio(
                    f"report -> trial knows ({ms})",
                    measured[ms, EVENTS],
                    measured[ms, LINE],
                )
            for path, line in PATHS.items():
                with dask.config.set({"dasktune.report-line": line}):
                    measured["hyperband", path] = hyperband_latency(client, path)
            _ratio(
                "score ends -> decided (Hyperband)",
                measured["hyperband", EVENTS],
                measured["hyperband", LINE],
            )
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
