"""The quickstart notebook runs end to end; the HPC one is a valid notebook."""

from __future__ import annotations

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
