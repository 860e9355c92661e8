"""The public surface and the project files."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

import dasktune

ROOT = Path(__file__).resolve().parents[1]


def test_all_is_sorted_and_complete():
    assert dasktune.__all__ == sorted(dasktune.__all__)
    assert set(dasktune.__all__) == set(dasktune._EXPORTS)
    for name in dasktune.__all__:  # each loads, from the module named
        value = getattr(dasktune, name)
        assert value.__module__ == dasktune._EXPORTS[name], name
    public = [name for name in dir(dasktune) if not name.startswith("_")]
    assert public == dasktune.__all__  # no typing or importlib helpers
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        dasktune.nope  # noqa: B018


def test_version():
    assert re.match(r"\d+\.\d+", dasktune.__version__)


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        wanted |= {_name(r) for r in extra}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {_name(d) for d in env["dependencies"] if isinstance(d, str)}
    conda -= {"python", "pip"}
    pip_entries = [d for d in env["dependencies"] if isinstance(d, dict)]
    assert pip_entries == [{"pip": ["-e ."]}]
    assert conda == wanted


def test_py_typed_is_shipped():
    assert (ROOT / "dasktune" / "py.typed").exists()
