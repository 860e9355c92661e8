"""A live page of a store's searches: ``dasktune serve STORE``.

:func:`make_server` starts a Bokeh server bound to 127.0.0.1 whose page shows
every search of a trial store as it runs, refreshed in place (no reload):

- a table of the searches: direction, trials by status, best value;
- for the search chosen: trials by status, the best value so far against time,
  the current best parameters, and the value of each done trial against a
  chosen parameter (categorical parameters as their choices);
- for a search of several objectives, its Pareto front in place of the best
  trial (the charts show the first objective); a trial that violates its
  constraints is never counted as the best.

Each browser session keeps its own :class:`~dasktune.table.TrialTable` per
search and, once a second, reads only the rows written since it last looked
(``TrialStore.read_trials(search_id, since=seq)``); the list of searches is
read again every few seconds so a new search appears. The store is opened
read-only: the page never writes.
"""

from __future__ import annotations

import html
import math
import os
import time
from typing import Any

import numpy as np
import pandas as pd
from bokeh.application import Application
from bokeh.application.handlers.function import FunctionHandler
from bokeh.document import Document
from bokeh.layouts import column, row
from bokeh.models import (
    BasicTicker,
    ColumnDataSource,
    DataRange1d,
    FactorRange,
    FixedTicker,
)
from bokeh.models.widgets import DataTable, Div, Select, TableColumn
from bokeh.plotting import figure
from bokeh.server.server import Server

from dasktune._pareto import pareto_front
from dasktune.store.rows import DECODING_ERRORS, damaged_trial
from dasktune.store.sql import TrialStore, search_directions
from dasktune.table import TrialTable

__all__ = ["LivePage", "make_server"]

_STATUSES = ["queued", "running", "done", "failed"]
_SUMMARY = ["name", "direction", *_STATUSES, "best"]
_COLORS = ["#bbbbbb", "#f0a202", "#2a9d8f", "#d62828"]
_SEARCHES_EVERY_SECONDS = 5.0


class LivePage:
    """One browser session's page over a store (built by :func:`make_server`).

    Parameters
    ----------
    store : TrialStore
        Opened read-only, shared by the sessions of a server.
    doc : bokeh.document.Document
        The session's document.
    interval_ms : int
        Milliseconds between refreshes.
    """

    def __init__(self, store: TrialStore, doc: Document, interval_ms: int) -> None:
        check_interval_ms(interval_ms)
        self.store = store
        self.tables: dict[int, TrialTable] = {}
        self.searches: dict[str, dict[str, Any]] = {}
        self._listed_at = -math.inf
        self.summary = ColumnDataSource({k: [] for k in _SUMMARY})
        self.counts = ColumnDataSource({"status": _STATUSES, "n": [0] * 4,
                                        "color": _COLORS})  # fmt: skip
        self.history = ColumnDataSource({"time": [], "best": []})
        self.points = ColumnDataSource({"x": [], "value": [], "number": []})
        self.search_select = Select(title="search", options=[], width=260)
        self.param_select = Select(title="parameter", options=[], width=260)
        self.best_div = Div(text="", width=420)
        self.title = Div(text=f"<h2>dasktune: {html.escape(store.display_url)}</h2>")
        self.interval = interval_ms / 1000
        self._skip = 0  # ticks left out after a slow redraw
        self._build(doc)
        self.refresh(force=True)
        doc.add_periodic_callback(self._tick, interval_ms)
        self.search_select.on_change("value", self._chosen)
        self.param_select.on_change("value", self._chosen)

    def _chosen(self, attr: str, old: Any, new: Any) -> None:
        self.refresh(force=True)

    def _tick(self) -> None:
        """A periodic refresh, left out for as many ticks as the last redraw
        took, past a quarter of a tick: a session on a large search costs at
        most about a quarter of a core."""
        if self._skip > 0:
            self._skip -= 1
            return
        started = time.perf_counter()
        self.refresh()
        took = time.perf_counter() - started
        self._skip = max(0, math.ceil(4 * took / self.interval) - 1)

    def _build(self, doc: Document) -> None:
        table = DataTable(
            source=self.summary,
            columns=[TableColumn(field=f, title=f) for f in _SUMMARY],
            height=150,
            width=720,
            index_position=None,
        )
        statuses = figure(x_range=FactorRange(factors=_STATUSES),
                          y_range=DataRange1d(start=0), height=260, width=360,
                          title="trials by status", toolbar_location=None)  # fmt: skip
        statuses.vbar(x="status", top="n", color="color", width=0.8,
                      source=self.counts)  # fmt: skip
        best = figure(x_axis_type="datetime", height=260, width=460,
                      title="best value so far", toolbar_location=None)  # fmt: skip
        best.step(x="time", y="best", source=self.history, mode="after",
                  line_width=2)  # fmt: skip
        best.scatter(x="time", y="best", source=self.history, size=4)
        self.scatter = figure(height=300, width=560, title="value of each done trial",
                              toolbar_location=None)  # fmt: skip
        self.scatter.scatter(x="x", y="value", source=self.points, size=7, alpha=0.7)
        self.scatter.yaxis.axis_label = "value"
        doc.title = "dasktune"
        doc.add_root(
            column(
                self.title,
                table,
                row(self.search_select, self.param_select),
                row(statuses, best),
                row(self.scatter, self.best_div),
            )
        )

    # -- reading ---------------------------------------------------------------

    def _read(self) -> bool:
        """Read what changed; whether anything did (a search, a row)."""
        changed = False
        now = time.monotonic()
        if now - self._listed_at >= _SEARCHES_EVERY_SECONDS:
            self._listed_at = now
            for s in self.store.list_searches():
                changed |= self.searches.get(s["name"]) != s
                self.searches[s["name"]] = s
        for s in self.searches.values():
            table = self.tables.get(s["id"])
            if table is None:
                k = len(search_directions(s))
                table = self.tables[s["id"]] = TrialTable.from_store(
                    self.store, s["id"], objectives=k
                )
                changed = True
            seq, rows = self.store.read_trials(s["id"], since=table.seq)
            if rows:
                changed = True
                try:
                    table.update(rows)
                except DECODING_ERRORS as err:  # a damaged row: named
                    del self.tables[s["id"]]  # part of the rows may be in it
                    where = self.store.display_url
                    raise damaged_trial(where, rows, err, repr(s["name"])) from err
            table.seq = max(table.seq, seq)
        return changed

    def refresh(self, force: bool = False) -> None:
        """Read the rows changed since the last refresh and, if any did (or
        ``force``: a new choice of search or parameter), redraw."""
        if not self._read() and not force:
            return
        frames = {
            name: self.tables[s["id"]].frame(copy=False)
            for name, s in self.searches.items()
        }
        self._summary(frames)
        names: Any = list(self.searches)
        if self.search_select.options != names:
            self.search_select.options = names
        if names and self.search_select.value not in names:
            self.search_select.value = names[0]
        chosen = self.search_select.value
        if chosen in frames:
            self._detail(self.searches[chosen], frames[chosen])
        elif not names:
            self.best_div.text = (
                "<h3>no search in this store yet</h3><p>a search appears here "
                "when it starts (this page reads the store every few seconds)</p>"
            )

    def _summary(self, frames: dict[str, pd.DataFrame]) -> None:
        data: Any = {k: [] for k in _SUMMARY}
        for name, frame in frames.items():
            direction = self.searches[name]["direction"]
            data["name"].append(name)
            data["direction"].append(direction)
            counts: Any = frame["status"].value_counts()
            for status in _STATUSES:
                data[status].append(int(counts.get(status, 0)))
            directions = search_directions(self.searches[name])
            if len(directions) > 1:
                data["direction"][-1] = ", ".join(directions)
                front = _front(_done(frame), directions)
                data["best"].append(f"{len(front)} on the Pareto front")
                continue
            done = _done(frame)["value"]
            best = done.max() if direction == "maximize" else done.min()
            data["best"].append("" if done.empty else f"{best:.6g}")
        self.summary.data = data

    def _detail(self, search: dict[str, Any], frame: pd.DataFrame) -> None:
        counts: Any = frame["status"].value_counts()
        self.counts.data = {"status": _STATUSES, "color": _COLORS,
                            "n": [int(counts.get(s, 0)) for s in _STATUSES]}  # fmt: skip
        done = _done(frame).sort_values("finished")
        maximize = search["direction"] == "maximize"
        values = done["value"].to_numpy(dtype=float)
        running = (
            np.maximum.accumulate(values) if maximize else np.minimum.accumulate(values)
        )
        times = done["finished"].dt.tz_localize(None)
        self.history.data = {"time": list(times), "best": list(running)}
        params: Any = self.tables[search["id"]].names
        if self.param_select.options != params:
            self.param_select.options = params
        if params and self.param_select.value not in params:
            self.param_select.value = params[0]
        name = self.param_select.value
        self._scatter(done, name)
        directions = search_directions(search)
        if len(directions) > 1:
            self._front(done, params, directions)
        else:
            self._best(done, params, maximize)

    def _scatter(self, done: pd.DataFrame, name: str) -> None:
        if name not in done.columns:
            self.points.data = {"x": [], "value": [], "number": []}
            return
        raw = done[name]
        numeric = pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(
            raw
        )
        if numeric:
            x = raw.astype(float).tolist()
            self.scatter.xaxis.ticker = BasicTicker()
            self.scatter.xaxis.major_label_overrides = {}
        else:
            labels = sorted({str(v) for v in raw}, key=str)
            code = {label: i for i, label in enumerate(labels)}
            x = [code[str(v)] for v in raw]
            self.scatter.xaxis.ticker = FixedTicker(ticks=list(range(len(labels))))
            self.scatter.xaxis.major_label_overrides = {
                i: label for i, label in enumerate(labels)
            }
        self.scatter.xaxis.axis_label = name
        self.points.data = {"x": x, "value": done["value"].tolist(),
                            "number": done["number"].tolist()}  # fmt: skip

    def _front(
        self, done: pd.DataFrame, params: list[str], directions: list[str]
    ) -> None:
        front = _front(done, directions)
        columns = [f"values_{i}" for i in range(len(directions))]
        head = "".join(f"<th>{html.escape(c)}</th>" for c in ["#", *columns, *params])
        rows = []
        for _, t in front.head(20).iterrows():
            cells = [int(t["number"]), *(t[c] for c in [*columns, *params])]
            rows.append("".join(f"<td>{html.escape(_show(v))}</td>" for v in cells))
        body = "".join(f"<tr>{cells}</tr>" for cells in rows)
        self.best_div.text = (
            f"<h3>Pareto front: {len(front)} trials ({', '.join(directions)})</h3>"
            f"<table style='font-size:14px'><tr>{head}</tr>{body}</table>"
        )

    def _best(self, done: pd.DataFrame, params: list[str], maximize: bool) -> None:
        if done.empty:
            self.best_div.text = "<h3>best trial</h3><p>no trial done yet</p>"
            return
        values = done["value"].to_numpy(dtype=float)
        best = done.iloc[int(values.argmax() if maximize else values.argmin())]
        cells = "".join(
            f"<tr><td><b>{html.escape(p)}</b></td><td>{html.escape(_show(best[p]))}"
            "</td></tr>"
            for p in params
        )
        self.best_div.text = (
            f"<h3>best trial: #{int(best['number'])}, value {best['value']:.6g}</h3>"
            f"<table style='font-size:14px'>{cells}</table>"
        )


#: the shortest refresh interval: a page read more often shows nothing more
MIN_INTERVAL_MS = 100


def check_interval_ms(interval_ms: object) -> None:
    """Refuse a refresh interval that is not an integer of at least
    :data:`MIN_INTERVAL_MS` (0 would redraw in a busy loop)."""
    if (
        isinstance(interval_ms, bool)
        or not isinstance(interval_ms, int)
        or interval_ms < MIN_INTERVAL_MS
    ):
        msg = (
            f"the refresh interval must be an integer of at least {MIN_INTERVAL_MS} "
            f"milliseconds, got {interval_ms!r}"
        )
        raise ValueError(msg)


def _done(frame: pd.DataFrame) -> pd.DataFrame:
    """The done trials that satisfy their constraints: those that can be best."""
    done = frame["status"] == "done"
    if "feasible" in frame:
        done &= frame["feasible"].fillna(True).astype(bool)
    return frame[done]


def _front(done: pd.DataFrame, directions: list[str]) -> pd.DataFrame:
    """The Pareto front of feasible done trials (several objectives)."""
    columns = [f"values_{i}" for i in range(len(directions))]
    points = done[columns].to_numpy(dtype=float)
    return done.iloc[pareto_front(points, directions)].sort_values(columns[0])


def _show(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return f"{float(value):.6g}"
    return str(value)


def make_server(
    store: str | os.PathLike[str], port: int = 5006, *, interval_ms: int = 1000
) -> tuple[Server, TrialStore]:
    """Start the live page's Bokeh server on 127.0.0.1 (not yet serving).

    Parameters
    ----------
    store : str
        The store's URL; opened read-only.
    port : int, default 5006
    interval_ms : int, default 1000
        Milliseconds between refreshes of a page.

    Returns
    -------
    (bokeh.server.server.Server, TrialStore)
        Call ``server.start()`` and ``server.io_loop.start()`` to serve; close
        the store when done.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        msg = f"port must be an integer in [1, 65535], got {port!r}"
        raise ValueError(msg)
    check_interval_ms(interval_ms)
    trial_store = TrialStore(store, readonly=True)

    def session(doc: Document) -> None:
        LivePage(trial_store, doc, interval_ms)

    try:
        server = Server(
            {"/": Application(FunctionHandler(session))},
            address="127.0.0.1",
            port=port,
            allow_websocket_origin=[f"127.0.0.1:{port}", f"localhost:{port}"],
        )
    except BaseException:  # the port taken, ...: the store is not left open
        trial_store.close()
        raise
    return server, trial_store
