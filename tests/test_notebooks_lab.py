"""The quantization, A/B and fine-tuning notebooks, executed headless as a user would run them
in Jupyter: the quantization trade-offs notebook draws its figures from rows that pass the
schema, the A/B notebook reproduces the arena statistics of votes made here, and the
fine-tuning notebook trains, plots its loss and judges the variant against its base."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.notebook_runner import execute, run_and_check
from workbench.arena.battles import ArenaPrompt, ArenaSpec, read_battles, record_vote, run_battles
from workbench.arena.stats import arena_stats, read_votes
from workbench.config import Settings
from workbench.engine import Engine, SamplingParams
from workbench.engine.models.embedded import EMBEDDED_IDS
from workbench.reports.schema import FINETUNE_COLUMNS, QUANT_COLUMNS
from workbench.reports.store import read_results


@pytest.mark.slow
def test_quantization_notebook_executes_and_draws(
    settings: Settings, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, csv = "03_quantization_tradeoffs.ipynb", "nb03_quantization.csv"
    run_and_check(name, 2, csv, QUANT_COLUMNS, settings, engine, tmp_path, monkeypatch)


@pytest.mark.slow
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


@pytest.mark.slow
def test_finetuning_notebook_trains_plots_and_judges_the_variant_against_its_base(
    settings: Settings, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine.load(EMBEDDED_IDS["f32"])  # converted once, in the shared models dir
    monkeypatch.setenv("WORKBENCH_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("WORKBENCH_MODELS_DIR", str(settings.models_dir))
    monkeypatch.setenv("WORKBENCH_RESULTS_DIR", str(tmp_path))
    outputs = execute("05_finetuning.ipynb")

    assert not [o for o in outputs if o.output_type == "error"]
    assert len([o for o in outputs if "image/png" in o.get("data", {})]) == 2  # loss curves, arena plot
    df = read_results(tmp_path / "nb05_pirate.csv", FINETUNE_COLUMNS)
    train, valid = df[df["kind"] == "train"], df[df["kind"] == "valid"]
    assert list(train["iteration"]) == list(range(1, 21)) and train["peak_memory_gb"].gt(0).all()
    assert valid["loss"].iloc[-1] < valid["loss"].iloc[0] / 2  # it learned
    # The rule judge preferred the tuned variant on the unseen questions, and the plotted
    # statistics are the ones the Arena tab computes from the same vote file.
    votes = read_votes(tmp_path / "nb05_pirate-vs-base.votes.csv")
    result = arena_stats(votes)
    variant = f"{EMBEDDED_IDS['f32']}+nb05_pirate"
    row = result.models.set_index("model").loc[variant]
    assert len(votes) == 10 and row["wins"] > row["losses"]
    text = "\n".join(o.get("data", {}).get("text/plain", "") + o.get("text", "") for o in outputs)
    assert result.caption() in text
