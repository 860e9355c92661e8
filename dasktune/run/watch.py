"""What the Dask dashboard's dasktune page shows, kept as the events arrive.

The drivers announce their searches on the event topic ``"dasktune"``
(:mod:`dasktune.run.announce`); the trials report their curves on their run's
report topic (:func:`dasktune.run.report.report_topic`). Both reach the
scheduler as Dask events. :class:`Watch`, a scheduler plugin, keeps from them
what the page draws — the last message of each driver, and the reported curves
of the trials a driver says are running — so a refresh of the page costs the
same after a 100,000-trial search as after ten: it reads this state, never the
scheduler's event log (read once, when the plugin is added on the page's first
view) and never the store.

Memory is bounded: a run keeps the curves of at most
``4 × running + _SPARE_CURVES`` trials (the oldest ones not running go first),
a curve at most ``2 × _MAX_POINTS`` points (thinned to every other point
beyond), and at most ``_MAX_RUNS`` runs' curves.
"""

from __future__ import annotations

import time
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin

from dasktune.run.announce import TOPIC
from dasktune.run.report import report_topic

__all__ = ["NAME", "Curve", "Watch", "fill", "latest", "watch"]

#: the plugin's name on the scheduler
NAME = "dasktune-page"
_REPORTS = report_topic("")  # the prefix of every run's report topic
_MAX_POINTS = 500
_SPARE_CURVES = 256
_MAX_RUNS = 64


def latest(events: Any) -> list[dict[str, Any]]:
    """The last message of each (search, driver) in ``events`` (the
    scheduler's ``(time, message)`` pairs), by search then driver."""
    last: dict[tuple[str, str], dict[str, Any]] = {}
    for stamp, message in events:
        if isinstance(message, dict) and "search" in message:
            last[(message["search"], message["driver"])] = {**message, "time": stamp}
    return [last[key] for key in sorted(last)]


class Curve:
    """One trial's reported ``(step, value)`` points, in step order."""

    __slots__ = ("steps", "values")

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.values: list[float] = []

    def add(self, step: int, value: float) -> None:
        """Append a point after the last one (a re-run's repeats are ignored)."""
        if self.steps and step <= self.steps[-1]:
            return
        self.steps.append(step)
        self.values.append(value)
        if len(self.steps) >= 2 * _MAX_POINTS:  # thinned, the last point kept
            self.steps = self.steps[-1::-2][::-1]
            self.values = self.values[-1::-2][::-1]


class Watch(SchedulerPlugin):
    """A scheduler plugin keeping the page's state from the events.

    Attributes
    ----------
    rows : dict
        ``(search, driver)`` → the driver's last message, with ``time`` (when
        it came).
    curves : dict
        A run's report key → trial number → :class:`Curve`.
    version : int
        Bumped on every change: a page redraws only when it moved.
    """

    name = NAME

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}
        self.curves: dict[str, dict[int, Curve]] = {}
        self.version = 0

    def log_event(self, topic: str, msg: Any) -> None:
        """Dask calls it with every event the scheduler gets."""
        if topic == TOPIC:
            self._announced(msg, time.time())
        elif topic.startswith(_REPORTS):
            self._reported(topic[len(_REPORTS) :], msg)

    def _announced(self, message: Any, stamp: float) -> None:
        if not (isinstance(message, dict) and "search" in message):
            return
        self.rows[(message["search"], message["driver"])] = {**message, "time": stamp}
        self.version += 1
        key = message.get("reports")
        if key is None or key not in self.curves:
            return
        if message.get("finished"):
            del self.curves[key]
            return
        running = set(message.get("trials") or ())
        curves = self.curves[key]
        extra = len(curves) - 4 * len(running) - _SPARE_CURVES
        if extra > 0:  # dicts keep insertion order: the oldest first
            old = [n for n in curves if n not in running][:extra]
            for number in old:
                del curves[number]

    def _reported(self, key: str, message: Any) -> None:
        try:
            number, step, value = int(message[0]), int(message[1]), float(message[2])
        except (TypeError, ValueError, IndexError):
            return  # not a trial's report: nothing to draw
        curves = self.curves.get(key)
        if curves is None:
            if len(self.curves) >= _MAX_RUNS:  # the oldest run goes
                del self.curves[next(iter(self.curves))]
            curves = self.curves[key] = {}
        curve = curves.get(number)
        if curve is None:
            curve = curves[number] = Curve()
        curve.add(step, value)
        self.version += 1

    def latest(self) -> list[dict[str, Any]]:
        """The last message of each (search, driver), by search then driver."""
        return [self.rows[key] for key in sorted(self.rows)]

    def running_curves(self, search: str) -> dict[int, Curve]:
        """The curves of the trials ``search``'s drivers say are running
        (those that reported), by trial number."""
        out: dict[int, Curve] = {}
        for (name, _), row in self.rows.items():
            curves = self.curves.get(row.get("reports") or "")
            if name != search or row.get("finished") or curves is None:
                continue
            for number in row.get("trials") or ():
                if number in curves:
                    out[number] = curves[number]
        return dict(sorted(out.items()))


def fill(plugin: Watch, events: dict[str, Any]) -> None:
    """Give ``plugin`` the events of a scheduler's log (``get_events()``:
    topic → ``(time, message)`` pairs), as if they had just come."""
    for stamp, message in events.get(TOPIC, ()):
        plugin._announced(message, stamp)
    for topic, pairs in events.items():
        if topic.startswith(_REPORTS):
            for _, message in pairs:
                plugin._reported(topic[len(_REPORTS) :], message)
    for row in list(plugin.rows.values()):  # the finished runs' curves go
        plugin._announced(dict(row), row["time"])


def watch(scheduler: Any) -> Watch:
    """The scheduler's :class:`Watch`, added on first use and filled from the
    events the scheduler already holds (its log keeps the last
    ``distributed.admin.low-level-log-length`` of each topic)."""
    plugin = scheduler.plugins.get(NAME)
    if isinstance(plugin, Watch):
        return plugin
    plugin = Watch()
    fill(plugin, scheduler.get_events())
    scheduler.add_plugin(plugin, name=NAME)
    return plugin
