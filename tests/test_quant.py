"""The quantization lab on the real embedded model: recipes and their errors, variants
made with mlx-lm's convert and served by the API, quality metrics (self-comparison,
2-bit vs 8-bit, perplexity against mlx-lm's own routine), and a sweep through the CLI."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from api.app import create_app
from tests.helpers import LiveServer
from workbench.bench.spec import BenchSpec, BenchSpecError, experiments_dir, spec_files
from workbench.config import Settings
from workbench.engine import Engine, EngineError, InvalidRequestError, QuantRecipe
from workbench.engine.models.embedded import EMBEDDED_IDS
from workbench.engine.models.variants import QUANTIZED_DIR, RECIPE_FILE
from workbench.quant import QuantSweepSpec, measure_quality
from workbench.quant.quality import DIVERGENCE_PROMPTS, eval_text, reference_continuations, token_windows
from workbench.reports.schema import PROVENANCE_FIELDS, QUANT_COLUMNS
from workbench.reports.store import read_results

F32 = EMBEDDED_IDS["f32"]


@pytest.fixture(scope="module")
def windows(engine: Engine) -> list[list[int]]:
    """Two 48-token windows of the evaluation text (small: quantized matmuls are slow on CPU)."""
    return token_windows(engine.tokenize(eval_text(), F32), eval_tokens=96, window=48)


@pytest.fixture(scope="module")
def continuations(engine: Engine) -> list[tuple[int, list[int]]]:
    return reference_continuations(engine, F32, DIVERGENCE_PROMPTS[:2], tokens=8)


@pytest.fixture(scope="module")
def q8_q2(engine: Engine) -> tuple[str, str]:
    return engine.quantize(F32, "q8").model, engine.quantize(F32, "q2").model


def test_recipes_parse_to_canonical_names_and_reject_the_impossible() -> None:
    assert QuantRecipe.parse("q4").name == "q4-g64"
    assert QuantRecipe.parse(" Q3-G32 ").name == "q3-g32"
    assert (
        QuantRecipe.parse("mixed_3_6").name == "mixed_3_6-g64"
        and QuantRecipe.parse("mixed_3_6").mode == "affine"
    )
    assert QuantRecipe.parse("mxfp4") == QuantRecipe("mxfp4", 4, 32)
    assert QuantRecipe.parse("f32") == QuantRecipe("f32", 32, None)
    with pytest.raises(InvalidRequestError) as info:
        QuantRecipe.parse("q7-g48")
    # Both problems in one message, with what would work.
    assert (
        "7-bit" in str(info.value)
        and "group size 48" in str(info.value)
        and "2, 3, 4, 5, 6, 8" in str(info.value)
    )
    with pytest.raises(InvalidRequestError, match="mxfp4: 8-bit"):
        QuantRecipe("mxfp4", 8, 32)
    for bad in ("q4-g", "mixed_5_6", "int4", "", "q"):
        with pytest.raises(InvalidRequestError, match="recipe"):
            QuantRecipe.parse(bad)
    with pytest.raises(BenchSpecError, match=r"recipes: .*7-bit"):
        QuantSweepSpec(name="x", recipes=("q8", "q7"))
    with pytest.raises(BenchSpecError, match="distinct"):
        QuantSweepSpec(name="x", recipes=("q4", "q4-g64"))
    sweeps = spec_files(sweeps=True)
    assert "quant_sweep.toml" in sweeps
    for name in sweeps:  # every shipped sweep loads, says what it asks, and covers 8..2 bits
        spec = QuantSweepSpec.from_file(experiments_dir() / name)
        assert spec.question and {"q8-g64", "q2-g64"} <= set(spec.recipes)
    with pytest.raises(BenchSpecError, match="quantization sweep"):
        BenchSpec.from_dict({"name": "x", "recipes": ["q4"]})


def _quantized_dir(settings: Settings) -> list[str]:
    root = settings.models_dir / QUANTIZED_DIR
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def test_impossible_recipe_or_failed_conversion_leaves_nothing_behind(
    engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    before_dir, before_ids = _quantized_dir(settings), [m.id for m in engine.models()]
    with pytest.raises(InvalidRequestError, match=r"7-bit.*group size 48"):
        engine.quantize(F32, "q7-g48")
    with pytest.raises(InvalidRequestError, match="already quantized"):
        engine.quantize(EMBEDDED_IDS["4bit"], "q4")  # quantize the float variant instead
    with pytest.raises(InvalidRequestError, match="not quantized"):
        engine.quantize(F32, "f32")
    # A conversion that fails part-way (weights cut short): the error names the model and
    # no folder, temporary or final, and no model id is left behind.
    broken = tmp_path / "broken-model"
    shutil.copytree(engine.model_info(F32).path, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: 1 << 20])
    with pytest.raises(EngineError, match="broken-model"):
        engine.quantize(str(broken), "q4")
    assert _quantized_dir(settings) == before_dir
    # Naming a folder registers it as a model (as everywhere); nothing else is new.
    assert set(m.id for m in engine.models()) - set(before_ids) <= {"broken-model"}


def test_reference_against_itself_has_zero_kl_and_full_agreement(
    engine: Engine, windows: list[list[int]], continuations: list[tuple[int, list[int]]]
) -> None:
    report = measure_quality(engine, F32, F32, windows, continuations)
    assert report is not None and report.eval_tokens == 2 * 47
    assert report.kl_mean == 0.0 and report.top1_agreement == 1.0
    assert report.perplexity == report.reference_perplexity and 1 < report.perplexity < 1000
    assert report.divergence_tokens == 8 and report.divergence_mean == 8 and report.identical_fraction == 1.0


def test_two_bit_costs_more_quality_than_eight_bit(
    engine: Engine,
    q8_q2: tuple[str, str],
    windows: list[list[int]],
    continuations: list[tuple[int, list[int]]],
) -> None:
    q8, q2 = (measure_quality(engine, F32, m, windows, continuations) for m in q8_q2)
    assert q8 is not None and q2 is not None
    assert 0 < q8.kl_mean < q2.kl_mean and q2.kl_mean > 0.5
    assert q2.top1_agreement < q8.top1_agreement and q8.top1_agreement > 0.8
    assert q2.perplexity > q8.perplexity and abs(q8.perplexity / q8.reference_perplexity - 1) < 0.1
    assert q2.divergence_mean <= q8.divergence_mean


MLX_LM_PPL = """
import json, sys
import mlx.core as mx
from mlx_lm import load
from mlx_lm.perplexity import eval_ppl
folder, windows = sys.argv[1], json.loads(sys.stdin.read())
model, _ = load(folder)
ppl, _ = eval_ppl(model, mx.array(windows), batch_size=len(windows))
print(json.dumps(ppl))
"""


def test_perplexity_matches_mlx_lm_eval_ppl(
    engine: Engine, q8_q2: tuple[str, str], windows: list[list[int]]
) -> None:
    """mlx-lm's perplexity routine, in a process of its own, on the same token windows."""
    for model in (F32, q8_q2[0]):
        ours = measure_quality(engine, F32, model, windows)
        assert ours is not None
        out = subprocess.run(
            [sys.executable, "-c", MLX_LM_PPL, engine.model_info(model).path],
            input=json.dumps(windows),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr
        theirs = json.loads(out.stdout.strip().splitlines()[-1])
        assert math.isclose(ours.perplexity, theirs, rel_tol=0.01), (model, ours.perplexity, theirs)


@pytest.fixture(scope="module")
def server(settings: Settings, engine: Engine) -> Iterator[LiveServer]:
    with LiveServer(create_app(settings, engine, with_ui=False)) as live:
        yield live


def test_quantized_variant_is_registered_cached_loads_generates_and_is_served(
    engine: Engine, settings: Settings, server: LiveServer
) -> None:
    made = engine.quantize(F32, "q4-g32")
    assert made.model == "smollm2-135m-instruct-q4-g32" and made.source_model == F32
    # 4-bit weights plus a float32 scale and bias per 32 weights: 4 + 64/32 = 6 bits.
    assert 5.9 < (made.bits_per_weight or 0) < 6.1
    folder = settings.models_dir / QUANTIZED_DIR / made.model
    record = json.loads((folder / RECIPE_FILE).read_text())
    assert record["recipe"] == "q4-g32" and record["source_model"] == F32 and record["mode"] == "affine"
    again = engine.quantize(F32, "q4-g32")
    assert again.cached and again.quantize_s == made.quantize_s
    info = engine.model_info(made.model)
    assert (info.source, info.variant, info.bits, info.group_size) == ("quantized", "q4-g32", 4, 32)
    assert info.size_bytes is not None and info.size_bytes < engine.model_info(F32).size_bytes / 4

    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=300)
    assert made.model in [m.id for m in client.models.list()]
    reply = client.chat.completions.create(
        model=made.model, messages=[{"role": "user", "content": "Say hello."}], max_tokens=6, temperature=0
    )
    assert reply.model == made.model and reply.choices[0].message.content.strip()
    assert reply.usage.completion_tokens > 0

    # A new engine on the same models folder finds the variant again (it lives on disk).
    with Engine(Settings.from_env(models_dir=settings.models_dir, allow_download=False)) as other:
        assert made.model in [m.id for m in other.models()]


def test_sweep_cli_writes_rows_trials_and_pareto(engine: Engine, settings: Settings, tmp_path: Path) -> None:
    spec_file = tmp_path / "tinysweep.toml"
    spec_file.write_text(
        f'model = "{F32}"\nrecipes = ["q8"]\neval_tokens = 32\nwindow = 32\ndivergence_prompts = 1\n'
        "divergence_tokens = 4\nprompt_tokens = 8\ngeneration_tokens = 2\ntrials = 1\nwarmup = 0\n"
    )
    csv_path = tmp_path / "out" / "tinysweep.csv"
    env = {**os.environ, "WORKBENCH_MODELS_DIR": str(settings.models_dir)}
    cmd = [sys.executable, "-m", "workbench", "quantize", "--sweep", str(spec_file), "--out", str(csv_path)]
    out = subprocess.run([*cmd, "--no-progress"], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    df = read_results(csv_path, QUANT_COLUMNS)
    assert list(df["recipe"]) == ["reference", "q8-g64"]
    assert list(df["model"]) == [F32, "smollm2-135m-instruct-q8-g64"]
    for name in (*PROVENANCE_FIELDS, "eval_text_sha256", "perplexity", "kl_mean", "prompt_tps", "size_gb"):
        assert df[name].notna().all() and (df[name].astype(str) != "").all(), name
    assert df["kl_mean"].iloc[0] == 0 and df["kl_mean"].iloc[1] > 0
    assert len(read_results(tmp_path / "out" / "tinysweep.bench.csv")) == 2  # one trial per variant
    sidecar = json.loads((tmp_path / "out" / "tinysweep.json").read_text())
    assert sidecar["runs"][df["run_id"].iloc[0]]["status"] == "complete"
    pareto = tmp_path / "out" / "tinysweep.pareto.png"
    assert pareto.read_bytes().startswith(b"\x89PNG")
    assert "kl_mean" in out.stdout and "q8-g64" in out.stdout

    pareto.unlink()
    report = subprocess.run(
        [sys.executable, "-m", "workbench", "report", str(csv_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert report.returncode == 0, report.stderr
    assert pareto.read_bytes().startswith(b"\x89PNG")

    bad = subprocess.run(
        [sys.executable, "-m", "workbench", "quantize", F32, "-r", "q7-g48"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "7-bit" in bad.stderr and "group size 48" in bad.stderr
