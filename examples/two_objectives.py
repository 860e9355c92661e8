"""A search of two objectives under a constraint, for ``dasktune run``.

Minimise a model's error and its size together: the answer is the Pareto
front, the trials no other beats on both. Models over 48 units do not fit the
device (the constraint ``size - 48 <= 0``), so they are never on the front.

dasktune run examples/two_objectives.py --store sqlite:///examples.db
dasktune show sqlite:///examples.db --name example-two-objectives
"""

import math

name = "example-two-objectives"
directions = ["minimize", "minimize"]
metric_names = ["error", "size"]  # show, plots and the dashboard name them


def objective(params):
    size = params["width"] * params["depth"]
    error = 1.0 / math.sqrt(size) + 0.02 * params["depth"]
    return (error, size), {"constraints": [size - 48]}


source = [{"width": w, "depth": d} for w in (2, 4, 8, 16) for d in (1, 2, 3, 4)]
