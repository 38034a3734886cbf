"""The benchmark notebooks (tok/s, memory), executed headless as a user would run them in
Jupyter: each must run without an error and draw its figures. (The quantization and A/B
notebooks: test_notebooks_lab.py, so the two files can run on the two xdist workers.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.notebook_runner import run_and_check
from workbench.config import Settings
from workbench.engine import Engine
from workbench.reports.schema import BENCH_COLUMNS


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "figures", "csv"),
    [
        ("01_tokens_per_second.ipynb", 3, "nb01_tokens_per_second.csv"),
        ("02_memory.ipynb", 3, "nb02_memory_vs_context.csv"),
    ],
)
def test_notebook_executes_and_draws(
    name: str,
    figures: int,
    csv: str,
    settings: Settings,
    engine: Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run_and_check(name, figures, csv, BENCH_COLUMNS, settings, engine, tmp_path, monkeypatch)
