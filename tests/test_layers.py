"""The package's layers: dependencies run one way (DESIGN.md, "Layers").

Each check imports in a fresh interpreter and looks at ``sys.modules``: what a
layer may not import must not be loaded by importing it.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("distributed", "dask", "sqlalchemy", "pandas", "scipy", "tqdm")


def loaded_after(code: str) -> set[str]:
    """The top-level packages of ``HEAVY`` loaded after running ``code``."""
    probe = (
        f"{code}\nimport json, sys\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & "
        f"set({list(HEAVY)!r}))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    ("code", "allowed"),
    [
        # the package itself is lazy: nothing heavy until a name is used
        ("import dasktune", set()),
        ("from dasktune import Float, Int, Trial, DasktuneError", set()),
        # the records and the optimizers never import Dask or SQL
        ("import dasktune.records", set()),
        ("import dasktune.optim.base", set()),
        ("import dasktune.optim.pruners", set()),
        ("import dasktune.optim.spsa", {"scipy"}),  # its OptimizeResult
        (
            "import dasktune.optim.scipy_bridge, dasktune.optim.replicas, "
            "dasktune.optim.selector",
            {"scipy"},
        ),
        # the adapters import their library only when one is made
        ("import dasktune.optim.optuna, dasktune.optim.nevergrad", set()),
        (
            "from dasktune import Float, OptunaSampler, NevergradOptimizer\n"
            "OptunaSampler(space={'x': Float(0, 1)}, seed=0).ask()",
            {"scipy", "sqlalchemy", "pandas", "tqdm"},  # Optuna's own imports
        ),
        # the store is SQL without Dask
        ("import dasktune.store", {"sqlalchemy"}),
        # what a worker imports to evaluate a trial: Dask, no SQL, pandas, scipy
        ("import dasktune.run.evaluate", {"distributed", "dask"}),
        # the objective's trial handle: what a reporting trial adds on a worker
        ("import dasktune.run.report", {"distributed", "dask"}),
        ("import dasktune.run.submit", {"distributed", "dask"}),
    ],
)
def test_each_layer_imports_only_what_it_may(code, allowed):
    assert loaded_after(code) <= allowed


def test_the_front_doors_load_what_they_use():
    assert {"distributed", "sqlalchemy", "scipy"} <= loaded_after(
        "from dasktune import minimize, Search"
    )
