"""The loop of a ``partial_fit`` search: models stepped to their rungs on Dask.

Each model stays on a worker between steps: a step is a task that takes the
model's future and trains a copy of it (so a task run again gives the same
model) up to the model's next rung, then a task scores it on the held-out
part; only the score travels to the driver, where the pruner decides whether
the model trains on. The score task pushes its score to the driver as an
event the moment it has it (:mod:`dasktune.sklearn.pushed`), and the driver
decides and sends the next step at once; the task's result, which comes
later through Dask, is judged only if its score was not pushed (each ``(model,
calls)`` is judged once). Every score and every end is recorded in the search's
:class:`~dasktune.sklearn.ledger.Ledger`; a fit run again replays what was
recorded (see there) and trains only what was not decided.
"""

from __future__ import annotations

import copy
import math
import time
import uuid
from collections.abc import Iterator
from typing import Any

import distributed
import numpy as np
from sklearn.base import clone
from sklearn.utils import _safe_indexing
from sklearn.utils.validation import _check_method_params

from dasktune.optim.pruners import HyperbandPruner, Pruner, SuccessiveHalvingPruner
from dasktune.records import DecisionKind, Outcome
from dasktune.run.line import Line
from dasktune.run.submit import Window, raise_failed
from dasktune.sklearn.ledger import Ledger
from dasktune.sklearn.placement import Resident
from dasktune.sklearn.pushed import Pushed, push

__all__ = ["Run", "Scoring", "fetch", "plateau"]


class _Trained:
    """A model on a worker, with the ``partial_fit`` calls and time it took."""

    __slots__ = ("calls", "fit_time", "model")

    def __init__(self, model: Any, calls: int, fit_time: float) -> None:
        self.model, self.calls, self.fit_time = model, calls, fit_time

    def __getstate__(self) -> tuple[Any, int, float]:
        return self.model, self.calls, self.fit_time

    def __setstate__(self, state: tuple[Any, int, float]) -> None:
        self.model, self.calls, self.fit_time = state


def _part(data: Resident, which: int) -> tuple[Any, Any]:
    index = data.splits[0][which]
    y = None if data.y is None else _safe_indexing(data.y, index)
    return _safe_indexing(data.X, index), y


def _train(previous: Any, data: Resident, calls: int) -> _Trained:
    """``calls`` more ``partial_fit`` calls on the training part, on a copy
    of the previous model (an unfitted estimator, or a :class:`_Trained`)."""
    done = previous.calls if isinstance(previous, _Trained) else 0
    model = copy.deepcopy(
        previous.model if isinstance(previous, _Trained) else previous
    )
    X, y = _part(data, 0)
    # sample-aligned parameters (sample_weight) indexed as X; others as given
    params = _check_method_params(data.X, data.fit_params, data.splits[0][0])
    start = time.perf_counter()
    for _ in range(calls):
        model.partial_fit(X, y, **params)
    return _Trained(model, done + calls, time.perf_counter() - start)


class Scoring:
    """The search's scorer on a worker: the score models are ranked and
    pruned by, and with several scorers each one's (scikit-learn's
    ``_MultimetricScorer`` computes them from one prediction).

    Parameters
    ----------
    scorer : callable
        scikit-learn's scorer (several: a ``_MultimetricScorer``).
    primary : str or None
        With several scorers, the one that ranks (``refit``).
    """

    def __init__(self, scorer: Any, primary: str | None) -> None:
        self.scorer, self.primary = scorer, primary

    def __call__(
        self, model: Any, X: Any, y: Any
    ) -> tuple[float, dict[str, float] | None]:
        value = self.scorer(model, X, y)
        if self.primary is None:
            return float(value), None
        scores = {str(k): float(v) for k, v in value.items()}
        return scores[self.primary], scores


def _score(
    trained: _Trained,
    data: Resident,
    scoring: Scoring,
    key: str | Line | None = None,
    number: int = 0,
) -> dict[str, Any]:
    """The score of ``trained`` on the held-out part, and what it cost; with
    ``key``, pushed to the driver as model ``number``'s at once."""
    X, y = _part(data, 1)
    start = time.perf_counter()
    score, scores = scoring(trained.model, X, y)
    out: dict[str, Any] = {
        "score": score,
        "partial_fit_calls": trained.calls,
        "partial_fit_time": trained.fit_time,
        "score_time": time.perf_counter() - start,
    }
    if scores is not None:
        out["scores"] = scores
    if key is not None:
        push(key, number, out)
    return out


def fetch(client: distributed.Client, future: distributed.Future, what: str) -> Any:
    """``future``'s result, waited for as the steps are: past
    ``dasktune.no-workers-timeout`` with no worker alive, ``NoWorkersError``
    naming ``what``; the task's error raised as it is."""
    with Window[int](client, what=what) as window:
        window.add([future], [0])
        ((done, result, _),) = window.next_batch()
    raise_failed(done, result, what)
    return result


def _next_target(pruner: Pruner, number: int, calls: int, max_iter: int) -> int:
    """The ``partial_fit`` calls model ``number`` trains to next: its next
    rung (of its bracket under Hyperband), else ``max_iter``."""
    rungs = pruner
    if isinstance(pruner, HyperbandPruner):
        rungs = pruner.brackets[pruner.bracket_of(number)]
    assert isinstance(rungs, SuccessiveHalvingPruner)
    k = 0
    while (resource := rungs.rung_resource(k)) < max_iter:
        if resource > calls:
            return resource
        k += 1
    return max_iter


def plateau(
    records: list[dict[str, Any]], calls: int, patience: int, tol: float | None
) -> str | None:
    """dask-ml's stop on a plateau: why the model whose ``records`` reach
    ``calls`` stops (no score in the last ``patience`` calls more than ``tol``
    above the first of them), or ``None``.

    >>> scores = [(1, 0.5), (3, 0.6), (5, 0.6005)]
    >>> records = [{"partial_fit_calls": c, "score": s} for c, s in scores]
    >>> plateau(records, 3, 2, 1e-3) is None, plateau(records, 5, 2, 1e-3)[:20]
    (True, 'no score in the last')
    """
    if not patience or tol is None or calls < patience:
        return None
    window = [
        r["score"]
        for r in records
        if r["partial_fit_calls"] <= calls
        and calls - r["partial_fit_calls"] <= patience
    ]
    gains = np.array(window[1:]) - window[0]
    if not len(gains) or gains.max() > tol:
        return None
    return (
        f"no score in the last {patience} calls (step {calls}) more than "
        f"tol={tol:g} above {window[0]:.6g}: plateau"
    )


def _key(score: float, number: int) -> tuple[float, int]:
    """How models rank: the higher score, then the lower id (as
    ``rank_test_score``'s stable sort); a score that is not finite last."""
    return (score if math.isfinite(score) else -math.inf, -number)


class Run:
    """One ``fit``'s loop: models stepped to their rungs as scores come back.

    After :meth:`go`: ``models`` (each model's records), ``history`` (every
    record in the order scored), ``decisions`` (why each model ended),
    ``best_index``, ``best_model``, ``calls_run`` (the ``partial_fit`` calls
    this fit made) and ``reused`` (models taken from the store as they ended).
    """

    def __init__(
        self,
        owner: Any,
        client: distributed.Client,
        data: distributed.Future,
        scorer: Scoring,
        pruner: Pruner,
        candidates: list[dict[str, Any]],
        ledger: Ledger,
        patience: int,
        keep_best: bool = True,
    ) -> None:
        self.owner, self.client, self.data = owner, client, data
        self.scorer, self.pruner = scorer, pruner
        self.candidates, self.ledger = candidates, ledger
        self.max_iter = int(owner.max_iter)
        self.patience, self.tol = patience, owner.tol
        self.keep_best = keep_best
        self.token = uuid.uuid4().hex[:8]
        self.name = type(owner.estimator).__name__
        self.models: dict[int, list[dict[str, Any]]] = {}
        self.history: list[dict[str, Any]] = []
        self.decisions: dict[int, str] = {}
        self.trained: dict[int, distributed.Future] = {}
        self._judged: set[tuple[int, int]] = set()  # (model, calls) scored
        self._pushed: str | Line | None = None  # where scores are pushed to
        self.best: tuple[tuple[float, int], int, distributed.Future] | None = None
        self.best_index = -1
        self.best_model: Any = None
        self.calls_run = self.reused = 0
        self.start = time.monotonic()
        self._reports: list[tuple[int, int, float, float]] = []
        self._outcomes: list[Outcome] = []

    # -- the pruner's rule, for scores arriving and scores replayed -------------

    def _judge(self, number: int, calls: int, score: float) -> tuple[bool, bool, str]:
        """Whether model ``number`` ends at this score, whether it is done
        (trained to ``max_iter``), and why."""
        if calls >= self.max_iter:
            self.pruner.complete(number, score)
            return True, True, f"trained to max_iter={self.max_iter}"
        if not math.isfinite(score):
            return True, False, f"score {score} after {calls} calls: stopped"
        verdict = self.pruner.report(number, calls, score)
        if verdict:
            return True, False, verdict.reason
        flat = plateau(self.models[number], calls, self.patience, self.tol)
        if flat is not None:
            return True, False, flat
        return False, False, verdict.reason

    def _end(self, number: int, done: bool, reason: str) -> None:
        self.decisions[number] = reason
        outcome = self.ledger.outcome(number, self.models[number], reason, done)
        self._outcomes.append(outcome)

    # -- resuming -----------------------------------------------------------------

    def _resume(self) -> list[int]:
        """Claim the models, replay the stored scores: the models to train
        (each from step 0 to its next rung)."""
        decisions = self.ledger.claim()
        ended = {
            i: d
            for i, d in enumerate(decisions)
            if d.kind in (DecisionKind.DONE, DecisionKind.PRUNED)
        }
        stored: dict[int, dict[int, dict[str, Any]]] = {}
        for i, decision in ended.items():
            records = [
                {"params": self.candidates[i], **r} for r in decision.aux["history"]
            ]
            self.models[i] = records
            self.decisions[i] = decision.aux["decision"]
            stored[i] = {r["partial_fit_calls"]: r for r in records}
        self.reused = len(ended)
        training = [i for i in range(len(self.candidates)) if i not in ended]
        for i, calls, score, _ in self.ledger.reports():
            if i not in ended and i not in training:
                continue  # ended below: no later score
            if i in ended:
                self._judge(i, calls, score)  # as it was judged: its records known
                self.history.append(stored[i].pop(calls))
                continue
            record = {
                "model_id": i,
                "params": self.candidates[i],
                "score": score,
                "partial_fit_calls": calls,
                "partial_fit_time": math.nan,  # lost with the fit interrupted
                "score_time": math.nan,
                "elapsed_wall_time": math.nan,
            }
            self.models.setdefault(i, []).append(record)
            self.history.append(record)
            final, done, reason = self._judge(i, calls, score)  # as it was judged
            if final:  # decided, not yet recorded when the fit stopped
                self._end(i, done, reason)
                training.remove(i)
        for left in stored.values():  # scores not finite: never given the pruner
            self.history.extend(left.values())
        return training

    # -- the loop -----------------------------------------------------------------

    def _step(self, window: Window[int], number: int, previous: Any, have: int) -> None:
        records = self.models.get(number)
        reached = records[-1]["partial_fit_calls"] if records else 0
        target = _next_target(self.pruner, number, reached, self.max_iter)
        if self.patience:  # scored at least every patience calls, as dask-ml's
            target = min(target, reached + self.patience)
        key = f"{self.name}-{number}-{target}-{self.token}"
        trained = self.client.submit(
            _train,
            previous,
            self.data,
            target - have,
            key=f"partial_fit-{key}",
            pure=False,
        )
        scored = self.client.submit(
            _score,
            trained,
            self.data,
            self.scorer,
            self._pushed,
            number,
            key=f"score-{key}",
            pure=False,
        )
        self.calls_run += target - have
        self.trained[number] = trained
        window.add([scored], [number])

    def _finish(self, number: int, score: float) -> None:
        """Model ``number`` trains no more: kept if it is the best so far."""
        trained = self.trained.pop(number)
        key = _key(score, number)
        if self.best is None or key > self.best[0]:
            if self.best is not None:
                self.best[2].release()
            self.best = (key, number, trained)
        else:
            trained.release()

    def _flush(self) -> None:
        self.ledger.write(self._reports, self._outcomes)
        self._reports, self._outcomes = [], []

    def go(self) -> None:
        what = f"the partial_fit steps of {len(self.candidates)} {self.name} models"
        try:
            training = self._resume()
            self._flush()
            with (
                Window[int](self.client, what=what) as window,
                Pushed(self.client, window) as pushed,
            ):
                self._pushed = pushed.route
                for number in training:
                    model = clone(self.owner.estimator)
                    model.set_params(**self.candidates[number])
                    self._step(window, number, model, 0)
                while len(window):
                    for future, result, number in self._arrivals(window, pushed):
                        if future is not None and future.status != "finished":
                            error = result[1].with_traceback(result[2])
                            self._flush()
                            self.ledger.write([], [self.ledger.failure(number, error)])
                            raise error
                        self._scored(window, number, result)
                    self._flush()
            self._best()
        finally:
            for future in self.trained.values():
                future.release()
            if self.best is not None:
                self.best[2].release()

    def _best(self) -> None:
        """The best model: the one held, or trained again (a model reused
        from the store: models are not stored)."""
        last = {i: records[-1]["score"] for i, records in self.models.items()}
        self.best_index = max(last, key=lambda i: _key(last[i], i))
        if not self.keep_best:  # refit=False
            return
        if self.best is not None and self.best[1] == self.best_index:
            self.best_model = self._fetch(self.best[2], "the best model")
            return
        calls = self.models[self.best_index][-1]["partial_fit_calls"]
        model = clone(self.owner.estimator)
        model.set_params(**self.candidates[self.best_index])
        again = self.client.submit(
            _train,
            model,
            self.data,
            calls,
            key=f"partial_fit-{self.name}-{self.best_index}-best-{self.token}",
            pure=False,
        )
        self.calls_run += calls
        try:
            self.best_model = self._fetch(again, "the best model trained again")
        finally:
            again.release()

    @staticmethod
    def _arrivals(
        window: Window[int], pushed: Pushed
    ) -> Iterator[tuple[distributed.Future | None, Any, int]]:
        """What came, waiting for both at once: the scores pushed (without a
        future), then the score tasks' results (``(future, result, model)``)."""
        harvested = window.next_batch(until=pushed.waiting)
        for number, result in pushed.take():
            yield None, result, number
        yield from harvested

    def _fetch(self, future: distributed.Future, what: str) -> Any:
        what = f"{what} ({self.name} {self.best_index})"
        return fetch(self.client, future, what).model

    def _scored(self, window: Window[int], number: int, result: dict[str, Any]) -> None:
        """A score pushed or returned: judged the first time it comes."""
        calls = result["partial_fit_calls"]
        if (number, calls) not in self._judged:
            self._judged.add((number, calls))
            self._record(window, number, result)

    def _record(self, window: Window[int], number: int, result: dict[str, Any]) -> None:
        calls, score = result["partial_fit_calls"], result["score"]
        record = {
            "model_id": number,
            "params": self.candidates[number],
            **result,
            "elapsed_wall_time": time.monotonic() - self.start,
        }
        self.models.setdefault(number, []).append(record)
        self.history.append(record)
        if math.isfinite(score):
            self._reports.append(self.ledger.report(number, calls, score))
        final, done, reason = self._judge(number, calls, score)
        if final:
            self._end(number, done, reason)
            self._finish(number, score)
        else:
            self._step(window, number, self.trained[number], calls)
