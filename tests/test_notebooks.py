"""The notebooks, executed headless as a user would run them in Jupyter: each must run
without an error and draw its figures."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from workbench.arena.battles import ArenaPrompt, ArenaSpec, read_battles, record_vote, run_battles
from workbench.arena.stats import arena_stats, read_votes
from workbench.config import Settings
from workbench.engine import Engine, SamplingParams
from workbench.engine.models.embedded import EMBEDDED_IDS
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
    [  # each its own xdist group: the notebooks are the suite's longest tests, spread them
        pytest.param(*case, marks=pytest.mark.xdist_group(case[0]))
        for case in (
            ("01_tokens_per_second.ipynb", 3, "nb01_tokens_per_second.csv", BENCH_COLUMNS),
            ("02_memory.ipynb", 3, "nb02_memory_vs_context.csv", BENCH_COLUMNS),
            ("03_quantization_tradeoffs.ipynb", 2, "nb03_quantization.csv", QUANT_COLUMNS),
        )
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
    for model in (EMBEDDED_IDS["4bit"], EMBEDDED_IDS["f32"]):  # converted once, in the shared models dir
        engine.load(model)
    # The kernel inherits this environment: the shared models, results in tmp_path.
    monkeypatch.setenv("WORKBENCH_MODELS_DIR", str(settings.models_dir))
    monkeypatch.setenv("WORKBENCH_RESULTS_DIR", str(tmp_path))
    outputs = execute(name)
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == figures
    df = read_results(tmp_path / csv, columns)  # the rows the notebook plotted passed the schema check
    assert len(df) > 0 and df["peak_memory_gb"].gt(0).all()


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


@pytest.mark.slow
@pytest.mark.xdist_group("04_ab_analysis.ipynb")
def test_ab_notebook_reproduces_the_arena_statistics_on_votes_made_here(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f32, q4 = EMBEDDED_IDS["f32"], EMBEDDED_IDS["4bit"]
    prompts = [ArenaPrompt(p) for p in ("Say hi.", "Name a fruit.", "Name a colour.", "Count to three.")]
    spec = ArenaSpec(name="nb04", models=(f32, q4), max_tokens=4, sampling=SamplingParams(temperature=0.7))
    run = run_battles(engine, spec, prompts, tmp_path)
    for battle, verdict in zip(read_battles(run.battles_path), ["a", "b", "tie", "a"], strict=True):
        record_vote(run.battles_path, battle["battle_id"], verdict)
    monkeypatch.setenv("WORKBENCH_VOTES", str(run.votes_path))
    outputs = execute("04_ab_analysis.ipynb")

    assert not [o for o in outputs if o.output_type == "error"]
    assert len([o for o in outputs if "image/png" in o.get("data", {})]) == 2
    # The notebook's tables are the ones the Arena tab and `arena stats` compute.
    text = "\n".join(o.get("data", {}).get("text/plain", "") + o.get("text", "") for o in outputs)
    expected = arena_stats(read_votes(run.votes_path))
    assert "4 votes from" in text and expected.caption() in text
    for row in expected.models.round(2).itertuples():
        assert row.model in text and f"{row.rating:.2f}" in text and f"{row.rating_low:.2f}" in text
    for row in expected.pairs.itertuples():
        assert row.hint in text
