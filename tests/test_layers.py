"""The package's layers: dependencies run one way (DESIGN.md, "Layers").

Two kinds of check. Which heavy packages a layer loads: each imports in a
fresh interpreter and looks at ``sys.modules`` (what a layer may not import
must not be loaded by importing it). Which of dasktune's own modules a module
imports: read from the source, every ``import`` statement wherever it stands
(a lazy one inside a function too; those under ``if TYPE_CHECKING:`` aside),
so that no two modules import each other and no layer imports one above it.
"""

from __future__ import annotations

import ast
import json
import pathlib
import subprocess
import sys

import pytest

import dasktune

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
        # the one Direction and the one ranking rule: every layer imports them
        ("import dasktune.direction, dasktune._pareto", set()),
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
        # a run's options are made (and checked) before a cluster is started
        ("import dasktune.run.options", set()),
        # and its summary, in the caller's process too (dasktune.run.local)
        ("import dasktune.run.summary, dasktune.run.base", set()),
    ],
)
def test_each_layer_imports_only_what_it_may(code, allowed):
    assert loaded_after(code) <= allowed


def test_the_front_doors_load_what_they_use():
    assert {"distributed", "sqlalchemy", "scipy"} <= loaded_after(
        "from dasktune import minimize, Search"
    )


PACKAGE = pathlib.Path(dasktune.__file__).parent
#: each layer, lowest first, by module prefix: a module may import its own
#: layer and those below it, never one above (the front doors are the rest)
LAYERS = {
    "base": (
        "dasktune.records", "dasktune.direction", "dasktune.exceptions",
        "dasktune.space", "dasktune._checks", "dasktune._values",
        "dasktune._pareto", "dasktune._quiet", "dasktune._lazy", "dasktune._heartbeat",
    ),
    "optim": ("dasktune.optim",),
    "store": ("dasktune.store",),
    "run": ("dasktune.run",),
}  # fmt: skip
MAY_IMPORT = {
    "base": {"base"},
    "optim": {"base", "optim"},
    "store": {"base", "store"},
    "run": {"base", "optim", "run"},
}


def modules() -> dict[str, pathlib.Path]:
    """Every module of the package by its dotted name."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(path: pathlib.Path, known: dict[str, pathlib.Path]) -> set[str]:
    """The package's modules that ``path`` imports anywhere (lazily too),
    except under ``if TYPE_CHECKING:``; ``from a import b`` is ``a.b`` when
    ``b`` is a module."""
    tree = ast.parse(path.read_text())
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }
    out = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in known else node.module)
    return {name for name in out if name in known}


def layer(module: str) -> str | None:
    for name, prefixes in LAYERS.items():
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return name
    return None  # a front door


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of ``graph``: its strongly connected components of
    more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(path, known) - {name} for name, path in known.items()}


def test_no_two_modules_import_each_other_even_lazily():
    assert cycles(import_graph()) == []


def test_the_cycle_check_sees_a_lazy_import():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    known = modules()
    edges = imports(PACKAGE / "minimize.py", known)
    assert "dasktune.store.sql" in edges  # imported inside a function only


def test_no_layer_imports_one_above_it():
    wrong = sorted(
        f"{module} -> {target}"
        for module, targets in import_graph().items()
        if (mine := layer(module)) is not None
        for target in targets
        if layer(target) not in MAY_IMPORT[mine]
    )
    assert wrong == []


def driver_calls(path: pathlib.Path) -> list[int]:
    """The lines of ``path`` that call ``Driver(...)`` (by name or attribute)."""
    return [
        node.lineno
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and (
            (isinstance(node.func, ast.Name) and node.func.id == "Driver")
            or (isinstance(node.func, ast.Attribute) and node.func.attr == "Driver")
        )
    ]


def test_only_run_makes_a_driver():
    # one typed way into run/: Search, minimize, SPSA and the scikit-learn
    # searches go through dasktune.run.entry.run, never Driver(...) themselves
    outside = sorted(
        f"{name}:{line}"
        for name, path in modules().items()
        if layer(name) != "run"
        for line in driver_calls(path)
    )
    assert outside == []


def test_the_driver_check_sees_a_call(tmp_path):
    path = tmp_path / "front.py"
    path.write_text("from x import driver\nd = driver.Driver(1)\nDriver(2)\n")
    assert driver_calls(path) == [2, 3]
    assert driver_calls(PACKAGE / "run" / "entry.py") != []


def test_no_two_modules_share_a_name_but_the_known_ones():
    # two modules named spsa (the front door, the optimizer) were mistaken for
    # each other; each layer's base.py and the README's table.py are meant
    names: dict[str, list[str]] = {}
    for module in modules():
        names.setdefault(module.rsplit(".", 1)[-1], []).append(module)
    shared = {n for n, found in names.items() if len(found) > 1}
    assert shared <= {"base", "table"}, {n: names[n] for n in shared}
