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
from workbench.reports.store import read_results


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "figures", "csv"),
    [
        ("01_tokens_per_second.ipynb", 3, "nb01_tokens_per_second.csv"),
        ("02_memory.ipynb", 4, "nb02_memory_vs_context.csv"),
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
    if name.startswith("02"):  # the KV-precision part: every precision at every context
        kv = read_results(tmp_path / "nb02_kv_memory.csv", BENCH_COLUMNS)
        assert sorted(set(kv["kv_bits"])) == [0, 4, 8, 16] and len(kv) == 8
        deepest = kv[kv["prompt_tokens"] == kv["prompt_tokens"].max()].set_index("kv_bits")["kv_cache_gb"]
        assert deepest[4] < deepest[8] < deepest[16] < deepest[0]
