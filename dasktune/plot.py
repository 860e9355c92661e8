"""Plots of searches and optimizer histories (matplotlib, an optional dependency).

``Search.plot()`` draws the best value so far against trials and against time, the
learning curves of trials that reported (pruned ones dashed, ending in a cross),
and the value against each parameter (for several objectives: the trials and
their Pareto front for each pair of objectives, then the first objective
against each parameter); :func:`plot_history` draws an ``SPSA`` result's
history the same way. Both return the matplotlib ``Figure`` and, given a path,
save it (a PNG for ``.png``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["plot_history", "plot_trials"]


def _pyplot() -> Any:
    try:
        import matplotlib

        if not os.environ.get("DISPLAY") and "inline" not in matplotlib.get_backend():
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - depends on the environment
        msg = (
            "plots need matplotlib: pip install matplotlib (or dasktune's extra, "
            "from its clone: pip install -e '.[plot]')"
        )
        raise ImportError(msg) from err
    return plt


def _finish(fig: Any, title: str | None, path: str | os.PathLike[str] | None) -> Any:
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=80)
    return fig


def _running_best(values: np.ndarray, maximize: bool) -> np.ndarray:
    filled = np.where(np.isnan(values), -np.inf if maximize else np.inf, values)
    return np.maximum.accumulate(filled) if maximize else np.minimum.accumulate(filled)


def plot_trials(
    trials: pd.DataFrame,
    parameters: list[str],
    *,
    direction: str = "minimize",
    directions: Sequence[str] | None = None,
    title: str | None = None,
    path: str | os.PathLike[str] | None = None,
    curves: Mapping[int, Sequence[tuple[int, float]]] | None = None,
    metric_names: Sequence[str] | None = None,
) -> Any:
    """Best value so far (against trials and time), the learning curves, and
    the value against each parameter.

    Parameters
    ----------
    trials : pandas.DataFrame
        ``Search.trials()``.
    parameters : list of str
        The parameter columns to plot against.
    direction : {"minimize", "maximize"}
    directions : sequence of str, optional
        Each objective's, for a search of several: the first panels then show
        the trials against each pair of objectives (at most three pairs), the
        feasible Pareto front joined by a line and infeasible trials as grey
        crosses.
    title : str, optional
    path : str or path, optional
        Save the figure there.
    curves : mapping, optional
        Each trial's reported ``(step, value)`` pairs, by trial number
        (``TrialStore.curves``); when any, a panel draws them, one line per
        trial, pruned trials dashed and ending in a cross.
    metric_names : sequence of str, optional
        A name per objective, for the axes (default ``value``, or
        ``values_0``, ``values_1``, ...).

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _pyplot()
    done = trials[trials["status"] == "done"].sort_values("number")
    if directions is not None and len(directions) > 1:
        names = list(metric_names or [f"values_{i}" for i in range(len(directions))])
        return _plot_front(plt, done, parameters, list(directions), names, title, path)
    label = metric_names[0] if metric_names else "value"
    maximize = direction == "maximize"
    curves = {n: c for n, c in (curves or {}).items() if c}
    panels = 2 + bool(curves) + len(parameters)
    fig, axes = plt.subplots(1, panels, figsize=(4 * panels, 3.4), squeeze=False)
    axes = axes[0]
    values = done["value"].to_numpy(dtype=float)
    # an infeasible trial is never the best so far
    best = _running_best(np.where(_feasible(done), values, np.nan), maximize)
    axes[0].plot(done["number"], values, ".", alpha=0.4, label="trial")
    axes[0].step(done["number"], best, where="post", label="best so far")
    axes[0].set_xlabel("trial")
    axes[0].set_ylabel(label)
    axes[0].legend()
    finished = pd.to_datetime(done["finished"], utc=True)
    seconds = (finished - finished.min()).dt.total_seconds().to_numpy()
    order = np.argsort(seconds)
    feasible_values = np.where(_feasible(done), values, np.nan)
    axes[1].step(
        seconds[order], _running_best(feasible_values[order], maximize), where="post"
    )
    axes[1].set_xlabel("seconds")
    axes[1].set_ylabel(f"best {label} so far")
    if curves:
        _draw_curves(axes[2], curves, trials)
    for ax, name in zip(axes[2 + bool(curves) :], parameters, strict=True):
        _against(ax, done[name], values, _feasible(done))
        ax.set_xlabel(name)
        ax.set_ylabel(label)
    return _finish(fig, title, path)


def _feasible(done: pd.DataFrame) -> np.ndarray:
    """Which done trials satisfy their constraints (all, without constraints)."""
    if "feasible" not in done:
        return np.ones(len(done), dtype=bool)
    return done["feasible"].fillna(True).to_numpy(dtype=bool)


def _plot_front(
    plt: Any,
    done: pd.DataFrame,
    parameters: list[str],
    directions: list[str],
    names: list[str],
    title: str | None,
    path: str | os.PathLike[str] | None,
) -> Any:
    """Trials against each pair of objectives, the Pareto front joined; then
    the first objective against each parameter."""
    from dasktune._pareto import pareto_front

    k = len(directions)
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)][:3]
    panels = len(pairs) + len(parameters)
    fig, axes = plt.subplots(1, panels, figsize=(4 * panels, 3.6), squeeze=False)
    axes = axes[0]
    columns = [f"values_{i}" for i in range(k)]
    points = done[columns].to_numpy(dtype=float)
    feasible = _feasible(done) & ~np.isnan(points).any(axis=1)
    front = np.flatnonzero(feasible)[pareto_front(points[feasible], directions)]
    for ax, (i, j) in zip(axes, pairs, strict=False):
        ax.plot(points[feasible, i], points[feasible, j], ".", alpha=0.4, label="trial")
        if (~feasible).any():
            ax.plot(
                points[~feasible, i], points[~feasible, j], "x", color="0.6",
                label="infeasible",
            )  # fmt: skip
        on = points[front][np.argsort(points[front, i])]
        (line,) = ax.plot(on[:, i], on[:, j], "o-", color="C3", label="Pareto front")
        line.set_gid("pareto-front")
        ax.set_xlabel(f"{names[i]} ({directions[i]})")
        ax.set_ylabel(f"{names[j]} ({directions[j]})")
        ax.legend()
    for ax, name in zip(axes[len(pairs) :], parameters, strict=True):
        _against(ax, done[name], points[:, 0], _feasible(done))
        ax.set_xlabel(name)
        ax.set_ylabel(names[0])
    return _finish(fig, title, path)


def _against(
    ax: Any, column: pd.Series, values: np.ndarray, feasible: np.ndarray
) -> None:
    """``values`` against a parameter column (categories at their positions);
    infeasible trials as grey crosses, as on the objectives' panel."""
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        x = column.to_numpy()
    else:
        labels = column.astype(str)
        categories = sorted(labels.unique())
        x = labels.map({c: i for i, c in enumerate(categories)}).to_numpy()
        ax.set_xticks(range(len(categories)), categories)
    ax.plot(x[feasible], values[feasible], ".", alpha=0.6)
    if (~feasible).any():
        (crosses,) = ax.plot(x[~feasible], values[~feasible], "x", color="0.6",
                             label="infeasible")  # fmt: skip
        crosses.set_gid("infeasible")


def _draw_curves(
    ax: Any, curves: Mapping[int, Sequence[tuple[int, float]]], trials: pd.DataFrame
) -> None:
    """One line per trial that reported; pruned ones dashed, ending in a cross."""
    pruned = set(trials.loc[trials["status"] == "pruned", "number"].tolist())
    for number in sorted(curves):
        steps, values = zip(*curves[number], strict=True)
        if number in pruned:
            (line,) = ax.plot(steps, values, "--", lw=0.8, alpha=0.6)
            ax.plot(steps[-1], values[-1], "x", color=line.get_color())
            line.set_gid(f"pruned-{number}")
        else:
            (line,) = ax.plot(steps, values, "-", lw=1.2)
            line.set_gid(f"trial-{number}")
    ax.set_xlabel("step")
    ax.set_ylabel("reported value")
    ax.set_title(f"learning curves ({len(pruned & set(curves))} pruned)")


def plot_history(
    result: Any, *, title: str | None = None, path: str | os.PathLike[str] | None = None
) -> Any:
    """An optimizer result's history: value and each parameter per iteration.

    Parameters
    ----------
    result : scipy.optimize.OptimizeResult
        With ``history = {"x": (n, d) array, "fun": (n,) array}`` (``SPSA``'s).
    """
    if "history" not in result:
        msg = (
            "this result has no history to plot; SPSA results have one (scipy's "
            "methods keep none: record them with minimize(..., store=...) and plot "
            "the search)"
        )
        raise ValueError(msg)
    plt = _pyplot()
    xs = np.asarray(result.history["x"], dtype=float)
    fs = np.asarray(result.history["fun"], dtype=float)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    axes[0].plot(np.arange(1, len(fs) + 1), fs)
    axes[0].set_xlabel("iteration")
    axes[0].set_ylabel("value (mean of the iteration)")
    for j in range(xs.shape[1] if xs.ndim == 2 else 0):
        axes[1].plot(np.arange(1, len(xs) + 1), xs[:, j], label=f"x[{j}]")
    axes[1].set_xlabel("iteration")
    axes[1].set_ylabel("parameters")
    if xs.ndim == 2 and xs.shape[1] <= 10:
        axes[1].legend()
    return _finish(fig, title, path)
