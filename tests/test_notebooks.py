"""The quickstart notebook runs end to end; the HPC one is a valid notebook."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.mark.timeout(300)
def test_quickstart_executes(tmp_path):
    from nbclient import NotebookClient

    book = nbformat.read(NOTEBOOKS / "quickstart.ipynb", as_version=4)
    NotebookClient(
        book,
        timeout=240,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    outputs = "".join(
        out.get("text", "")
        for cell in book.cells
        if cell.cell_type == "code"
        for out in cell.outputs
    )
    assert "dashboard: http://127.0.0.1:" in outputs
    stderr = "".join(
        out.get("text", "")
        for cell in book.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if out.get("name") == "stderr"
    )
    assert "Warning" not in stderr, stderr  # no TqdmWarning: ipywidgets installed
    spsa = next(c for c in book.cells if c.source.startswith("fit = SPSA("))
    found = re.search(r"mu ([\d.]+), sigma ([\d.]+)", spsa.outputs[0]["text"])
    assert found, spsa.outputs
    assert abs(float(found[1]) - 1.5) < 0.02  # SPSA converges (truth 1.5, 0.7)
    assert abs(float(found[2]) - 0.7) < 0.02
    images = [
        out for cell in book.cells if cell.cell_type == "code" for out in cell.outputs
        if "image/png" in out.get("data", {})
    ]  # fmt: skip
    assert len(images) == 2  # the search plot and the SPSA history


def test_hpc_notebook_is_valid_and_checks_the_job_script():
    book = nbformat.read(NOTEBOOKS / "hpc-dask-jobqueue.ipynb", as_version=4)
    nbformat.validate(book)
    source = "\n".join(cell.source for cell in book.cells)
    assert "job_script()" in source and "--lifetime" in source
