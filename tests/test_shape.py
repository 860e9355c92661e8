"""The package's shape (issue #28): no function over 100 lines of code, no
class over 600, counted by ``scripts/longfn.py`` (blank lines, comments and
docstrings left out)."""

import importlib.util
import pathlib
import textwrap

import dasktune

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = pathlib.Path(dasktune.__file__).parent


def _longfn():
    spec = importlib.util.spec_from_file_location(
        "longfn", ROOT / "scripts" / "longfn.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_function_or_class_of_dasktune_is_over_its_size():
    assert _longfn().oversized(PACKAGE) == []


def test_the_count_leaves_out_blanks_comments_and_the_docstring(tmp_path):
    longfn = _longfn()
    body = "\n".join(f"    x{i} = {i}" for i in range(101))
    (tmp_path / "big.py").write_text(
        'def big():\n    """Two\n    lines."""\n\n    # a comment\n' + body + "\n"
    )
    (tmp_path / "fits.py").write_text(
        "def fits():\n" + "\n".join(f"    x{i} = {i}" for i in range(99)) + "\n"
    )
    klass = "class Big:\n" + textwrap.indent(
        "\n".join(f"def m{i}(self):\n    return {i}" for i in range(300)), "    "
    )
    (tmp_path / "klass.py").write_text(klass + "\n")
    found = {(kind, n, name) for kind, n, _, _, name in longfn.oversized(tmp_path)}
    # def line + 101 statements; the 99-line function (100 with its def) fits
    assert found == {("FUNC", 102, "big"), ("CLASS", 601, "Big")}
