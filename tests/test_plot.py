"""Plots render to PNG files."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from distributed.utils_test import gen_cluster

from dasktune import Categorical, Float, Search, TrialPruned
from dasktune.optim.pruners import Pruner, Verdict
from dasktune.optim.spsa import SPSAOptimizer
from dasktune.plot import plot_history

PNG = b"\x89PNG\r\n\x1a\n"


def cost(params):
    return (params["x"] - 0.2) ** 2 + (0.5 if params["kind"] == "b" else 0.0)


@gen_cluster(client=True)
async def test_search_plot_renders(c, s, a, b, tmp_path=None):
    import tempfile
    from pathlib import Path

    space = {"x": Float(-1, 1), "kind": Categorical(["a", "b"])}
    search = Search("plot", cost, "sqlite://", client=c, space=space)
    await asyncio.to_thread(search.run, n_trials=30, seed=0, progress=False)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "search.png"
        fig = search.plot(path)
        assert path.read_bytes()[:8] == PNG
    assert len(fig.axes) == 4  # best vs trials, best vs time, x, kind


def test_history_plot_renders(tmp_path):
    opt = SPSAOptimizer([1.0, -1.0], maxiter=20, seed=0)
    while not opt.finished:
        trials = []
        while (t := opt.ask()) is not None:
            trials.append(t)
        for t in trials:
            opt.tell(t, float(np.sum(np.asarray(t.params) ** 2)))
    fig = plot_history(opt.result, path=tmp_path / "spsa.png")
    assert (tmp_path / "spsa.png").read_bytes()[:8] == PNG
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match="no history to plot"):
        plot_history({"x": [1.0]})


def fit(params, trial):
    loss = 1.0
    for epoch in range(10):
        loss = params["rate"] / (epoch + 1)
        trial.report(epoch, loss)
        if trial.should_prune():
            raise TrialPruned
    return loss


class StopAboveOne(Pruner):
    def _decide(self, number, step):
        return Verdict(step >= 2 and self.curves[number][0] > 1.0, "rate above 1")


@gen_cluster(client=True)
async def test_search_plot_draws_learning_curves_pruned_ones_marked(c, s, a, b):
    search = Search("curves", fit, "sqlite://", client=c)
    grid = [{"rate": r} for r in (0.5, 0.8, 2.0, 3.0)]
    await asyncio.to_thread(search.run, grid, pruner=StopAboveOne(), progress=False)
    fig = search.plot()
    assert len(fig.axes) == 4  # best vs trials, best vs time, curves, rate
    ax = fig.axes[2]
    assert ax.get_title() == "learning curves (2 pruned)"
    lines = {line.get_gid(): line for line in ax.get_lines() if line.get_gid()}
    numbers = search.trials().set_index("rate")["number"]
    assert set(lines) == {
        f"trial-{numbers[0.5]}",
        f"trial-{numbers[0.8]}",
        f"pruned-{numbers[2.0]}",
        f"pruned-{numbers[3.0]}",
    }
    assert len(lines[f"trial-{numbers[0.5]}"].get_xdata()) == 10
    assert lines[f"pruned-{numbers[2.0]}"].get_linestyle() == "--"
