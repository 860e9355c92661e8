"""The public surface and the project files."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

import dasktune
import dasktune.optim
from dasktune._lazy import exports

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("package", [dasktune, dasktune.optim])
def test_all_is_sorted_and_complete(package):
    assert package.__all__ == sorted(package.__all__)
    assert set(package.__all__) == set(package._EXPORTS)
    for name in package.__all__:  # each loads, from the module named
        value = getattr(package, name)
        assert value.__module__ == package._EXPORTS[name], name
    public = [name for name in dir(package) if not name.startswith("_")]
    assert public == package.__all__  # no typing or importlib helpers
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        package.nope  # noqa: B018


def test_the_public_names_are_listed_once_as_type_checkers_read_them():
    # the TYPE_CHECKING block is the one list: `Name as Name` re-exports
    source = (ROOT / "dasktune" / "__init__.py").read_text()
    assert exports(source, "dasktune") == dasktune._EXPORTS
    assert len(dasktune.__all__) == 25 and "Search" in dasktune.__all__
    assert source.count('"Search"') == 0  # not written again as a string
    with pytest.raises(ImportError, match="written 'Float as Float'"):
        exports("if TYPE_CHECKING:\n    from m import Float\n", "pkg")
    with pytest.raises(ImportError, match="'from module import Name as Name'"):
        exports("if TYPE_CHECKING:\n    import m\n", "pkg")


def test_dasktune_optim_exports_its_optimizers_and_pruners():
    from dasktune.optim.pruners import MedianPruner
    from dasktune.optim.spsa import SPSAOptimizer

    assert dasktune.optim.MedianPruner is MedianPruner
    assert dasktune.optim.SPSAOptimizer is SPSAOptimizer
    assert {"Optimizer", "Pruner", "OptunaSampler", "HyperbandPruner"} <= set(
        dasktune.optim.__all__
    )


def test_version():
    assert re.match(r"\d+\.\d+", dasktune.__version__)


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower()


#: PyPI names that conda-forge spells otherwise
CONDA_NAMES = {"msgpack": "msgpack-python"}


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        wanted |= {_name(r) for r in extra}
    wanted = {CONDA_NAMES.get(name, name) for name in wanted}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {_name(d) for d in env["dependencies"] if isinstance(d, str)}
    conda -= {"python", "pip"}
    pip_entries = [d for d in env["dependencies"] if isinstance(d, dict)]
    assert pip_entries == [{"pip": ["-e ."]}]
    assert conda == wanted


def test_py_typed_is_shipped():
    assert (ROOT / "dasktune" / "py.typed").exists()
