"""dasktune's page in the Dask dashboard: ``/individual-dasktune``.

Every search running on the cluster, as its drivers announce it: trials by
status (pruned included) out of the total when known, the best value, the
execution chosen (a task per group of trials, or fed to long-lived tasks),
each driver (host, process), and a plot per search of the running trials'
reported curves (what ``trial.report(step, value)`` sent). It is fed by what
the drivers and their trials send — Dask events, kept as they arrive by a
scheduler plugin (:mod:`dasktune.run.watch`) — never by reading the store.

The page is one of the dashboard's ``individual-*`` pages, so
``/individual-plots.json`` lists it and JupyterLab's dask-labextension shows
it beside Dask's own panels. It is registered before a scheduler starts its
dashboard: on the ``LocalCluster`` dasktune starts, at once; on a scheduler
started apart, with ``dask scheduler --preload dasktune.run.dask_page``.
"""

from __future__ import annotations

import html
import time
from typing import Any

from dasktune.run.watch import Curve, latest, watch

__all__ = ["PATH", "latest", "page", "register", "render"]

PATH = "/individual-dasktune"
_STATUSES = ("done", "pruned", "failed", "running")
_REFRESH_MS = 1000
_MAX_LINES = 100  # running trials drawn per search (the latest numbers)
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
            "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")  # fmt: skip
_CELL = "padding:2px 8px;white-space:nowrap"


def register() -> None:
    """Add the page to the dashboards of the schedulers started from now on
    in this process (Dask's ``distributed.dashboard.scheduler.applications``)."""
    from distributed.dashboard.scheduler import applications

    applications.setdefault(PATH, page)


def render(rows: list[dict[str, Any]], now: float) -> str:
    """The page's HTML table of ``latest`` rows."""
    if not rows:
        return (
            "<p>No dasktune search has run on this cluster yet: a search's "
            "drivers announce it here when it starts.</p>"
        )
    head = ["search", *_STATUSES, "of", "best", "execution", "driver", "seen"]
    out = ["<table style='border-collapse:collapse;font-family:sans-serif'>", "<tr>"]
    out += [f"<th style='{_CELL};text-align:left'>{h}</th>" for h in head]
    out.append("</tr>")
    for row in rows:
        total = "?" if row.get("total") is None else str(row["total"])
        best = _best(row)
        seen = "finished" if row.get("finished") else f"{now - row['time']:.0f} s ago"
        cells = [row["search"], *(str(row.get(s, 0)) for s in _STATUSES), total,
                 best, row.get("execution", ""), f"{row['host']}:{row['pid']}",
                 seen]  # fmt: skip
        out.append("<tr>")
        out += [f"<td style='{_CELL}'>{html.escape(str(c))}</td>" for c in cells]
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def _best(row: dict[str, Any]) -> str:
    """A row's best value, named by its metric; for several objectives, the
    size of the Pareto front and the metrics' names."""
    metrics = row.get("metrics") or []
    if row.get("front") is not None:
        names = f" ({', '.join(metrics)})" if metrics else ""
        return f"Pareto front: {row['front']}{names}"
    if row.get("best") is None:
        return ""
    return f"{metrics[0]} = {row['best']:.6g}" if metrics else f"{row['best']:.6g}"


def lines(curves: dict[int, Curve]) -> dict[str, list[Any]]:
    """A ``multi_line`` source's columns for the ``_MAX_LINES`` latest curves."""
    numbers = sorted(curves)[-_MAX_LINES:]
    return {
        "xs": [curves[n].steps for n in numbers],
        "ys": [curves[n].values for n in numbers],
        "trial": numbers,
        "color": [_PALETTE[n % len(_PALETTE)] for n in numbers],
    }


def _figure(search: str) -> tuple[Any, Any]:
    """A search's plot of its running trials' curves, and its data source."""
    from bokeh.models import ColumnDataSource, HoverTool
    from bokeh.plotting import figure

    source = ColumnDataSource({"xs": [], "ys": [], "trial": [], "color": []})
    plot = figure(
        title=f"{search}: the running trials' reported values",
        height=300, sizing_mode="stretch_width", x_axis_label="step",
        y_axis_label="reported value", tools="pan,wheel_zoom,box_zoom,reset",
        name=f"curves-{search}",
    )  # fmt: skip
    plot.multi_line("xs", "ys", source=source, line_color="color", line_width=2)
    plot.add_tools(HoverTool(tooltips=[("trial", "@trial")]))
    return plot, source


def page(scheduler: Any, extra: Any, doc: Any) -> None:
    """The Bokeh document of the page (Dask calls it per browser session)."""
    from bokeh.layouts import column
    from bokeh.models.widgets import Div
    from distributed.dashboard.components.scheduler import BOKEH_THEME

    state = watch(scheduler)
    div = Div(text="", sizing_mode="stretch_width")
    root = column(div, sizing_mode="stretch_width")
    plots: dict[str, Any] = {}  # search → its plot's data source
    seen = [-1]  # the state's version last drawn

    def update() -> None:
        rows = state.latest()
        div.text = render(rows, time.time())  # its "seen" column moves
        if state.version == seen[0]:
            return
        seen[0] = state.version
        for search in dict.fromkeys(row["search"] for row in rows):
            curves = state.running_curves(search)
            if search not in plots and curves:
                plot, plots[search] = _figure(search)
                root.children.append(plot)
            if search in plots:
                plots[search].data = lines(curves)

    update()
    doc.add_periodic_callback(update, _REFRESH_MS)
    doc.add_root(root)
    doc.title = "dasktune"
    doc.theme = BOKEH_THEME  # Dask's own pages' look


register()  # on import: what ``dask scheduler --preload`` relies on
