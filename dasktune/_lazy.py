"""A package's public names, listed once and loaded on first use.

A package's ``__init__`` lists its public names once, as the imports of its
``if TYPE_CHECKING:`` block (``from dasktune.space import Float as Float``),
which type checkers read; :func:`attach` reads the same block from the
package's source and gives the module the ``__getattr__``, ``__dir__`` and
``__all__`` that import each name from its module on first use — as
``lazy_loader.attach_stub`` does for scipy from a stub file. ``import
dasktune`` thus imports neither Dask nor SQLAlchemy, pandas or scipy, and a
worker unpickling a trial imports only the modules that trial needs.
"""

from __future__ import annotations

import ast
import importlib
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["attach", "exports"]


def exports(source: str, package: str) -> dict[str, str]:
    """Each public name of ``package`` and the module defining it, from the
    ``from module import Name as Name`` lines of its source's ``if
    TYPE_CHECKING:`` block.

    >>> exports('''
    ... if TYPE_CHECKING:
    ...     from dasktune.space import Float as Float, Int as Int
    ... ''', "dasktune")
    {'Float': 'dasktune.space', 'Int': 'dasktune.space'}
    """
    names: dict[str, str] = {}
    for node in ast.parse(source).body:
        if not (
            isinstance(node, ast.If)
            and isinstance(node.test, ast.Name)
            and node.test.id == "TYPE_CHECKING"
        ):
            continue
        for line in node.body:
            if not isinstance(line, ast.ImportFrom) or line.module is None:
                msg = (
                    f"{package}'s TYPE_CHECKING block lists its public names as "
                    f"'from module import Name as Name' lines only, found "
                    f"{ast.unparse(line)!r}"
                )
                raise ImportError(msg)
            for alias in line.names:
                if alias.asname != alias.name:  # re-exported: `Name as Name`
                    msg = (
                        f"{package} re-exports {alias.name} written "
                        f"'{alias.name} as {alias.name}' (what type checkers "
                        f"take as a re-export), found {ast.unparse(line)!r}"
                    )
                    raise ImportError(msg)
                names[alias.name] = line.module
    return names


def attach(
    package: str,
) -> tuple[Callable[[str], Any], Callable[[], list[str]], dict[str, str]]:
    """``__getattr__`` and ``__dir__`` for ``package`` (its ``__name__``),
    whose public names its ``TYPE_CHECKING`` block lists, and those names,
    each with the module defining it.

    Raises
    ------
    ImportError
        If the package's source cannot be read (it is read once, on import).
    """
    module = sys.modules[package]
    loader = module.__spec__.loader if module.__spec__ is not None else None
    source = loader.get_source(package) if loader is not None else None  # type: ignore[attr-defined]
    if source is None:
        msg = (
            f"{package} reads its public names from its own source, which its "
            "loader does not give; install dasktune with its .py files"
        )
        raise ImportError(msg)
    names = exports(source, package)

    def __getattr__(name: str) -> Any:
        where = names.get(name)
        if where is None:
            msg = f"module {package!r} has no attribute {name!r}"
            raise AttributeError(msg)
        value = getattr(importlib.import_module(where), name)
        setattr(module, name, value)  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        # the public names (and the dunders), not the module's own helpers
        dunders = [name for name in vars(module) if name.startswith("__")]
        return sorted({*dunders, *names})

    return __getattr__, __dir__, names
