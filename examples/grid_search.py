"""A search for ``dasktune run``: defines ``objective`` and ``source``.

dasktune run examples/grid_search.py --store sqlite:///examples.db
"""

from sklearn.model_selection import ParameterGrid

name = "example-grid"


def objective(params):
    x, y = params["x"], params["y"]
    return (x - 1.0) ** 2 + (y + 0.5) ** 2 + (0.1 if params["kind"] == "b" else 0.0)


source = ParameterGrid(
    {"x": [0.0, 0.5, 1.0, 1.5], "y": [-1.0, -0.5, 0.0], "kind": ["a", "b"]}
)
