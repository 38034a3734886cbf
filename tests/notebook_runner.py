"""Running a notebook headless as a user would in Jupyter (the kernel inherits this process's
environment), shared by the notebook tests; the executed copies go to test-artifacts/notebooks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from workbench.config import Settings
from workbench.engine import Engine
from workbench.engine.models.embedded import EMBEDDED_IDS
from workbench.reports.schema import Column
from workbench.reports.store import read_results

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
ARTIFACTS = (
    Path(os.environ.get("WORKBENCH_TEST_ARTIFACTS", Path(__file__).parents[1] / "test-artifacts"))
    / "notebooks"
)


def execute(name: str) -> list[Any]:
    """Run notebooks/<name> headless (the kernel inherits this environment); the
    executed copy goes to test-artifacts/notebooks. Returns every code cell's outputs."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    try:
        client.execute()
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, ARTIFACTS / name)
    return [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]


def run_and_check(
    name: str,
    figures: int,
    csv: str,
    columns: tuple[Column, ...],
    settings: Settings,
    engine: Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A benchmark notebook runs without an error, draws `figures` figures, and its rows in
    `csv` pass the schema check."""
    for model in (EMBEDDED_IDS["4bit"], EMBEDDED_IDS["f32"]):  # converted once, in the shared models dir
        engine.load(model)
    # The kernel inherits this environment: the shared models, results in tmp_path, and the
    # notebooks' smaller experiment (the suite's time; the figures and rows are the same kind).
    monkeypatch.setenv("WORKBENCH_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("WORKBENCH_MODELS_DIR", str(settings.models_dir))
    monkeypatch.setenv("WORKBENCH_RESULTS_DIR", str(tmp_path))
    outputs = execute(name)
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == figures
    df = read_results(tmp_path / csv, columns)  # the rows the notebook plotted passed the schema check
    assert len(df) > 0 and df["peak_memory_gb"].gt(0).all()
