"""The notebooks, executed headless as a user would run them in Jupyter: each must run
without an error and draw its figures."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from workbench.config import Settings
from workbench.engine import Engine
from workbench.engine.embedded import EMBEDDED_IDS
from workbench.reports.schema import BENCH_COLUMNS, QUANT_COLUMNS, Column
from workbench.reports.store import read_results

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
ARTIFACTS = (
    Path(os.environ.get("WORKBENCH_TEST_ARTIFACTS", Path(__file__).parents[1] / "test-artifacts"))
    / "notebooks"
)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "figures", "csv", "columns"),
    [
        ("01_tokens_per_second.ipynb", 3, "nb01_tokens_per_second.csv", BENCH_COLUMNS),
        ("02_memory.ipynb", 3, "nb02_memory_vs_context.csv", BENCH_COLUMNS),
        ("03_quantization_tradeoffs.ipynb", 2, "nb03_quantization.csv", QUANT_COLUMNS),
    ],
)
def test_notebook_executes_and_draws(
    name: str,
    figures: int,
    csv: str,
    columns: tuple[Column, ...],
    settings: Settings,
    engine: Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for model in EMBEDDED_IDS.values():  # converted once, in the shared models dir
        engine.load(model)
    # The kernel inherits this environment: the shared models, results in tmp_path.
    monkeypatch.setenv("WORKBENCH_MODELS_DIR", str(settings.models_dir))
    monkeypatch.setenv("WORKBENCH_RESULTS_DIR", str(tmp_path))
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    try:
        client.execute()
    finally:  # the executed notebook, outputs and all, for a look after the run
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, ARTIFACTS / name)

    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == figures
    df = read_results(tmp_path / csv, columns)  # the rows the notebook plotted passed the schema check
    assert len(df) > 0 and df["peak_memory_gb"].gt(0).all()
