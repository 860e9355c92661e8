"""A dasktune store seen as an Optuna storage, read-only and live.

:class:`ReadOnlyStorage` (made by :func:`dasktune.optuna_storage`) answers
Optuna's read methods from the store, so that ``optuna.load_study`` and
optuna-dashboard open a running search where it is kept:

- a study per search (its id the search's id), a trial per stored trial (its
  number the store's; its id ``search id * 2**32 + number``, unique in the
  store), converted as ``dasktune export`` converts them;
- each read of a study's trials reads only what changed since the last one:
  the rows written after the search's change sequence, and the reported
  values of the trials still running (a finished trial's values are final);
- every write method raises :class:`~dasktune.exceptions.StoreError`.

This module imports Optuna; :func:`dasktune.optuna_storage` imports it only
when called.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Container, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import optuna
from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.study._frozen import FrozenStudy
from optuna.trial import FrozenTrial, TrialState

from dasktune.exceptions import StoreError
from dasktune.export import _frozen, _hashable, _inferred, study_user_attrs
from dasktune.optim.optuna import distributions
from dasktune.records import FINAL
from dasktune.space import Space
from dasktune.store.sql import (
    TrialStore,
    search_directions,
    search_metric_names,
)

__all__ = ["ReadOnlyStorage"]

_ID_BITS = 32  # a trial's id: its search's id above these bits, its number below
_METRIC_NAMES = "study:metric_names"  # Optuna's system attribute for them
_FINAL = frozenset(status.value for status in FINAL)  # as stored


@dataclass
class _Study:
    """What the storage keeps of one search between reads."""

    row: dict[str, Any]
    directions: list[StudyDirection]
    space: Space | None
    dists: dict[str, Any] = field(default_factory=dict)
    seq: int | None = None  # the search's change sequence the rows reach
    rows: dict[int, dict[str, Any]] = field(default_factory=dict)  # by number
    curves: dict[int, list[tuple[int, float]]] = field(default_factory=dict)
    frozen: dict[int, FrozenTrial] = field(default_factory=dict)  # by number
    unfinished: set[int] = field(default_factory=set)  # whose curve may grow
    ordered: list[FrozenTrial] = field(default_factory=list)  # by number
    # the best complete trial of a one-objective study, kept as trials change
    best: FrozenTrial | None = None


class ReadOnlyStorage(BaseStorage):
    """An Optuna storage over a dasktune store: read-only, live.

    Parameters
    ----------
    store : TrialStore
        The store read.
    own : bool
        Whether :meth:`close` closes it (a store opened from a URL or path).
    """

    def __init__(self, store: TrialStore, *, own: bool) -> None:
        self._store = store
        self._own = own
        self._lock = threading.RLock()
        self._studies: dict[int, _Study] = {}

    def close(self) -> None:
        """Close the store if this storage opened it."""
        if self._own:
            self._store.close()

    def __repr__(self) -> str:
        return f"ReadOnlyStorage({self._store.display_url!r})"

    # -- writes: refused ---------------------------------------------------------

    def refusal(self, what: str) -> str:
        """The message a write (``what``: "saving a note") is refused with:
        what every write method raises, and ``dasktune serve`` answers an
        edit in optuna-dashboard with (HTTP 403)."""
        return (
            f"read-only: dasktune's store is written by its drivers; {what} is "
            f"refused on {self._store.display_url} (run the search with "
            "dasktune to add trials, or copy it into an Optuna storage with "
            "`dasktune export` to write there)"
        )

    def _refuse(self, what: str) -> NoReturn:
        raise StoreError(self.refusal(what))

    def create_new_study(
        self, directions: Sequence[StudyDirection], study_name: str | None = None
    ) -> int:
        self._refuse(f"creating the study {study_name!r}")

    def delete_study(self, study_id: int) -> None:
        self._refuse(f"deleting study {study_id}")

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        self._refuse(f"setting a user attribute ({key!r}) of study {study_id}")

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        self._refuse(f"setting a system attribute ({key!r}) of study {study_id}")

    def create_new_trial(
        self, study_id: int, template_trial: FrozenTrial | None = None
    ) -> int:
        self._refuse(f"adding a trial to study {study_id}")

    def set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: Any,
    ) -> None:
        self._refuse(f"setting parameter {param_name!r} of trial {trial_id}")

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        self._refuse(f"setting the state of trial {trial_id}")

    def set_trial_intermediate_value(
        self, trial_id: int, step: int, intermediate_value: float
    ) -> None:
        self._refuse(f"reporting a value of trial {trial_id}")

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._refuse(f"setting a user attribute ({key!r}) of trial {trial_id}")

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._refuse(f"setting a system attribute ({key!r}) of trial {trial_id}")

    # -- studies -------------------------------------------------------------------

    def _study(self, study_id: int) -> _Study:
        """The search ``study_id``, read once (a search's row never changes)."""
        with self._lock:
            study = self._studies.get(study_id)
            if study is None:
                for row in self._store.list_searches():
                    self._remember(row)
                study = self._studies.get(study_id)
            if study is None:
                msg = (
                    f"no study (search) with id {study_id} in {self._store.display_url}"
                )
                raise KeyError(msg)
            return study

    def _remember(self, row: dict[str, Any]) -> _Study:
        study = self._studies.get(row["id"])
        if study is None:
            space = None
            if row["space"]:
                space = Space.from_json(json.loads(row["space"]))
            directions = [
                StudyDirection.MAXIMIZE if d == "maximize" else StudyDirection.MINIMIZE
                for d in search_directions(row)
            ]
            study = _Study(row=row, directions=directions, space=space)
            if space is not None:
                study.dists = distributions(space)
            self._studies[row["id"]] = study
        return study

    def _frozen_study(self, study: _Study) -> FrozenStudy:
        return FrozenStudy(
            study_name=study.row["name"],
            direction=None,
            user_attrs=study_user_attrs(study.row),
            system_attrs=self._system_attrs(study),
            study_id=study.row["id"],
            directions=study.directions,
        )

    @staticmethod
    def _system_attrs(study: _Study) -> dict[str, Any]:
        names = search_metric_names(study.row)
        return {} if names is None else {_METRIC_NAMES: names}

    def get_study_id_from_name(self, study_name: str) -> int:
        row = self._store.find_search(study_name)
        if row is None:
            msg = f"no study (search) named {study_name!r} in {self._store.display_url}"
            raise KeyError(msg)
        with self._lock:
            return int(self._remember(row).row["id"])

    def get_study_name_from_id(self, study_id: int) -> str:
        return str(self._study(study_id).row["name"])

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        return list(self._study(study_id).directions)

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return study_user_attrs(self._study(study_id).row)

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return self._system_attrs(self._study(study_id))

    def get_all_studies(self) -> list[FrozenStudy]:
        with self._lock:
            studies = [self._remember(row) for row in self._store.list_searches()]
            return [self._frozen_study(s) for s in studies]

    # -- trials --------------------------------------------------------------------

    def _refresh(self, study_id: int) -> _Study:
        """Bring the study's trials up to the store: the rows written since the
        last read, the reported values of the trials not yet final."""
        study = self._study(study_id)
        with self._lock:
            seq, rows = self._store.read_trials(study_id, since=study.seq)
            changed = {int(t["number"]): t for t in map(self._store.decode_trial, rows)}
            study.rows.update(changed)
            study.seq = seq
            for number, t in changed.items():
                if t["status"] in _FINAL:
                    study.unfinished.discard(number)
                else:
                    study.unfinished.add(number)
            unread = set(changed) | study.unfinished
            if not unread:
                return study
            wanted = None if len(unread) * 2 > len(study.rows) else unread
            curves: dict[int, list[tuple[int, float]]] = {}
            for number, step, value, _ in self._store.read_values(study_id, wanted):
                curves.setdefault(number, []).append((step, value))
            stale = set(changed)  # and the trials whose curve grew
            for number in study.rows if wanted is None else wanted:
                curve = sorted(curves.get(number, ()))
                if curve != study.curves.get(number, []):
                    study.curves[number] = curve
                    stale.add(number)
            if study.space is None:  # distributions from the values seen
                dists = _inferred(optuna, list(study.rows.values()))
                if dists != study.dists:
                    study.dists = dists
                    stale = set(study.rows)  # every trial's distributions change
            if not stale:
                return study
            for number in stale:
                study.frozen[number] = self._convert(study, study.rows[number])
            study.ordered = [study.frozen[n] for n in sorted(study.frozen)]
            _update_best(study, stale)
            return study

    def _convert(self, study: _Study, t: dict[str, Any]) -> FrozenTrial:
        """A stored trial as Optuna's, its parameters outside the distributions
        (a value the search's space does not hold) kept as a user attribute."""
        outside = {}
        for name, value in t["params"].items():
            dist = study.dists.get(name)
            if dist is not None and not _holds(dist, _hashable(value)):
                outside[name] = value
        kept = {
            **t,
            "params": {k: v for k, v in t["params"].items() if k not in outside},
        }
        curve = study.curves.get(t["number"], ())
        trial = _frozen(
            optuna,
            kept,
            study.dists,
            len(study.directions),
            curve,
            trial_id=(study.row["id"] << _ID_BITS) + int(t["number"]),
        )
        if outside:
            extra = trial.user_attrs.get("params_outside_space", {})
            trial.user_attrs["params_outside_space"] = {**extra, **outside}
        return trial

    def _trial(self, trial_id: int) -> FrozenTrial:
        study_id, number = divmod(trial_id, 1 << _ID_BITS)
        try:
            study = self._refresh(study_id)
        except KeyError:
            study = None
        trial = None if study is None else study.frozen.get(number)
        if trial is None:
            msg = f"no trial with id {trial_id} in {self._store.display_url}"
            raise KeyError(msg)
        return trial

    def get_trial(self, trial_id: int) -> FrozenTrial:
        return copy.deepcopy(self._trial(trial_id))

    def get_trial_number_from_id(self, trial_id: int) -> int:
        return self._trial(trial_id).number

    def get_trial_id_from_study_id_trial_number(
        self, study_id: int, trial_number: int
    ) -> int:
        trial = self._refresh(study_id).frozen.get(trial_number)
        if trial is None:
            msg = f"no trial number {trial_number} in study {study_id}"
            raise KeyError(msg)
        return int(trial._trial_id)

    def get_best_trial(self, study_id: int) -> FrozenTrial:
        """The complete trial of the best value (the lowest number among
        equals), as Optuna's base method finds it, kept as trials arrive
        rather than found again over every trial at each call (the dashboard
        asks at each poll)."""
        study = self._refresh(study_id)
        if len(study.directions) > 1:
            msg = "Best trial can be obtained only for single-objective optimization."
            raise RuntimeError(msg)
        with self._lock:
            best = study.best
        if best is None:
            raise ValueError("No trials are completed yet.")
        return best

    def get_all_trials(
        self,
        study_id: int,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
    ) -> list[FrozenTrial]:
        trials = self._refresh(study_id).ordered  # replaced, never changed, later
        if states is not None:
            trials = [t for t in trials if t.state in states]
        return copy.deepcopy(trials) if deepcopy else list(trials)


def _update_best(study: _Study, stale: set[int]) -> None:
    """Keep ``study.best`` after the trials ``stale`` were converted again:
    they are compared with it (or every trial is, if it was among them)."""
    if len(study.directions) != 1:
        return
    best = study.best
    if best is not None and best.number in stale:
        best, stale = None, set(study.frozen)
    sign = -1.0 if study.directions[0] == StudyDirection.MAXIMIZE else 1.0
    key = None if best is None else (sign * best.values[0], best.number)
    for number in stale:
        trial = study.frozen[number]
        if trial.state != TrialState.COMPLETE or not trial.values:
            continue
        mine = (sign * trial.values[0], number)
        if key is None or mine < key:
            best, key = trial, mine
    study.best = best


def _holds(dist: Any, value: Any) -> bool:
    """Whether the Optuna distribution ``dist`` holds ``value``."""
    try:
        return bool(dist._contains(dist.to_internal_repr(value)))
    except (ValueError, TypeError):
        return False
