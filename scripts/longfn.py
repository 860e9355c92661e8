"""Functions and classes of a package over the size targets (issue #28).

``python scripts/longfn.py dasktune`` prints every function over 100 lines
of code and every class over 600, counting code lines only: blank lines,
comment lines and the docstring are left out. ``tests/test_shape.py`` runs
it on ``dasktune/``.
"""

from __future__ import annotations

import ast
import pathlib
import sys

MAX_FUNCTION = 100
MAX_CLASS = 600


def code_lines(node: ast.AST, lines: list[str]) -> int:
    """``node``'s lines that are code: not blank, not a comment, not its
    docstring."""
    assert isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    docstring: set[int] = set()
    body = node.body
    if (
        body
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        docstring = set(range(body[0].lineno, (body[0].end_lineno or 0) + 1))
    n = 0
    for i in range(node.lineno, (node.end_lineno or node.lineno) + 1):
        text = lines[i - 1].strip()
        if text and not text.startswith("#") and i not in docstring:
            n += 1
    return n


def oversized(root: pathlib.Path) -> list[tuple[str, int, str, int, str]]:
    """``(kind, size, path, line, name)`` of each function over
    :data:`MAX_FUNCTION` and each class over :data:`MAX_CLASS` code lines."""
    found = []
    for path in sorted(root.rglob("*.py")):
        source = path.read_text()
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                kind, limit = "FUNC", MAX_FUNCTION
            elif isinstance(node, ast.ClassDef):
                kind, limit = "CLASS", MAX_CLASS
            else:
                continue
            n = code_lines(node, lines)
            if n > limit:
                found.append((kind, n, str(path), node.lineno, node.name))
    return found


def main(argv: list[str]) -> int:
    root = pathlib.Path(argv[1] if len(argv) > 1 else "dasktune")
    found = oversized(root)
    for kind, n, path, line, name in found:
        print(f"{kind} {n:5d} {path}:{line} {name}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
