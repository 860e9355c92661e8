"""dasktune's page in the Dask dashboard: ``/individual-dasktune``.

Every search running on the cluster, as its drivers announce it: trials by
status (pruned included) out of the total when known, the best value, the
execution chosen (a task per group of trials, or fed to long-lived tasks),
and each driver (host, process). It is fed by what the drivers send — Dask
events on the topic ``"dasktune"`` (``client.log_event``), at most one a
second per driver and one at its end — never by reading the store.

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

from dasktune.run.announce import TOPIC

__all__ = ["PATH", "latest", "page", "register", "render"]

PATH = "/individual-dasktune"
_STATUSES = ("done", "pruned", "failed", "running")
_REFRESH_MS = 1000


def register() -> None:
    """Add the page to the dashboards of the schedulers started from now on
    in this process (Dask's ``distributed.dashboard.scheduler.applications``)."""
    from distributed.dashboard.scheduler import applications

    applications.setdefault(PATH, page)


def latest(events: Any) -> list[dict[str, Any]]:
    """The last message of each (search, driver), by search then driver."""
    last: dict[tuple[str, str], dict[str, Any]] = {}
    for stamp, message in events:
        if isinstance(message, dict) and "search" in message:
            last[(message["search"], message["driver"])] = {**message, "time": stamp}
    return [last[key] for key in sorted(last)]


def render(rows: list[dict[str, Any]], now: float) -> str:
    """The page's HTML table of ``latest`` rows."""
    if not rows:
        return (
            "<p>No dasktune search has run on this cluster yet: a search's "
            "drivers announce it here when it starts.</p>"
        )
    head = ["search", *_STATUSES, "of", "best", "execution", "driver", "seen"]
    out = ["<table style='border-collapse:collapse;font-family:sans-serif'>", "<tr>"]
    out += [f"<th style='padding:2px 8px;text-align:left'>{h}</th>" for h in head]
    out.append("</tr>")
    for row in rows:
        total = "?" if row.get("total") is None else str(row["total"])
        best = "" if row.get("best") is None else f"{row['best']:.6g}"
        seen = "finished" if row.get("finished") else f"{now - row['time']:.0f} s ago"
        cells = [row["search"], *(str(row.get(s, 0)) for s in _STATUSES), total,
                 best, row.get("execution", ""), f"{row['host']}:{row['pid']}",
                 seen]  # fmt: skip
        out.append("<tr>")
        out += [
            f"<td style='padding:2px 8px'>{html.escape(str(c))}</td>" for c in cells
        ]
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def page(scheduler: Any, extra: Any, doc: Any) -> None:
    """The Bokeh document of the page (Dask calls it per browser session)."""
    from bokeh.models.widgets import Div

    div = Div(text="", sizing_mode="stretch_width")

    def update() -> None:
        div.text = render(latest(scheduler.get_events(TOPIC)), time.time())

    update()
    doc.add_periodic_callback(update, _REFRESH_MS)
    doc.add_root(div)
    doc.title = "dasktune"


register()  # on import: what ``dask scheduler --preload`` relies on
