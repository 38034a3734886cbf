"""The fine-tuning lab on the real embedded model: a short LoRA run teaches it the shipped reply
format (validation loss falls; the variant answers in it at temperature 0, the base does not),
its rows parse with provenance, every consumer sees the variant (both APIs, quantization, fuse),
SIGTERM stops `workbench finetune` with a usable adapter, and bad specs are one-line errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.app import create_app
from tests.helpers import LiveServer, wait_until
from workbench.bench.spec import BenchSpecError, experiments_dir
from workbench.engine import Engine, GenerationRequest, Message, SamplingParams
from workbench.engine.models.embedded import EMBEDDED_IDS
from workbench.reports.schema import FINETUNE_COLUMNS
from workbench.reports.store import read_results
from workbench.runs.record import read_sidecar
from workbench.tune import FinetuneRun, FinetuneSpec, run_finetune

BASE = EMBEDDED_IDS["f32"]
MARK = "Arr, matey!"
# Not in the shipped data: the format must carry over to new questions.
UNSEEN = ("What colour is a ripe tomato?", "How many legs does a cat have?", "What do birds build?")
SHIPPED = experiments_dir() / "finetune_pirate.toml"


def spec_like_shipped(name: str, **changes: object) -> FinetuneSpec:
    data = {**_toml(SHIPPED), "name": name, **changes}
    return FinetuneSpec.from_dict(data, folder=SHIPPED.parent)


def _toml(path: Path) -> dict[str, object]:
    import tomllib

    return tomllib.loads(path.read_text())


def greedy(engine: Engine, model: str, question: str) -> str:
    request = GenerationRequest(
        messages=(Message("user", question),),
        model=model,
        sampling=SamplingParams(temperature=0),
        max_tokens=12,
    )
    return engine.generate(request).text


@pytest.fixture(scope="module")
def tuned(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FinetuneRun]:
    spec = spec_like_shipped("tpirate", iterations=40, val_interval=10)
    run = run_finetune(engine, spec, tmp_path_factory.mktemp("ft-results"))
    yield run
    engine.unload(run.result.variant)


def test_a_short_run_teaches_the_reply_format(tuned: FinetuneRun, engine: Engine) -> None:
    result = tuned.result
    assert result.variant == f"{BASE}+tpirate" and not result.stopped and result.iterations == 40
    assert result.first_val_loss is not None and result.last_val_loss is not None
    assert result.last_val_loss < 0.5 * result.first_val_loss, result
    for question in UNSEEN:
        assert greedy(engine, result.variant, question).startswith(MARK)
        assert not greedy(engine, BASE, question).startswith("Arr")
    info = engine.model_info(result.variant)
    assert info.source == "adapter" and info.variant == "lora" and "40 iterations" in info.description


def test_the_loss_csv_parses_with_provenance(tuned: FinetuneRun) -> None:
    df = read_results(tuned.csv_path, FINETUNE_COLUMNS)
    train, valid = df[df["kind"] == "train"], df[df["kind"] == "valid"]
    assert list(train["iteration"]) == list(range(1, 41)) and len(valid) == 5  # at 0, 9, 19, 29, 39
    assert (df["run_id"] == tuned.run_id).all() and df["git_sha"].str.len().min() >= 7
    assert (train["tokens_per_second"] > 0).all() and (train["peak_memory_gb"] > 0).all()
    assert valid["loss"].iloc[-1] < valid["loss"].iloc[0]
    assert len(df) == tuned.rows == 45
    entry = read_sidecar(tuned.sidecar)["runs"][tuned.run_id]
    assert entry["status"] == "complete" and entry["spec"]["base_model"] == BASE


def test_every_consumer_sees_the_variant(tuned: FinetuneRun, engine: Engine, settings: object) -> None:
    from openai import OpenAI

    variant = tuned.result.variant
    with LiveServer(create_app(settings, engine, with_ui=False)) as server:  # type: ignore[arg-type]
        client = OpenAI(base_url=f"{server.url}/v1", api_key="unused")
        assert variant in [m.id for m in client.models.list()]
        reply = client.chat.completions.create(
            model=variant, messages=[{"role": "user", "content": UNSEEN[0]}], temperature=0, max_tokens=12
        )
        assert (reply.choices[0].message.content or "").startswith(MARK)
    # Fused into a standalone folder: it answers in the format without the adapter layers.
    fused = engine.fuse(variant)
    assert fused.source == "local" and fused.id == f"{BASE}-tpirate-fused"
    assert greedy(engine, fused.id, UNSEEN[1]).startswith(MARK)
    engine.unload(fused.id)
    # Quantized: the adapter is fused first, so the 8-bit variant keeps the format.
    q8 = engine.quantize(variant, "q8")
    assert greedy(engine, q8.model, UNSEEN[2]).startswith(MARK)
    engine.unload(q8.model)


def test_sigterm_stops_finetune_with_a_usable_adapter(tmp_path: Path) -> None:
    spec = tmp_path / "stopme.toml"
    data = {**_toml(SHIPPED), "name": "stopme", "iterations": 2000}
    data["train"], data["valid"] = (str(SHIPPED.parent / str(data[k])) for k in ("train", "valid"))
    spec.write_text("\n".join(f"{k} = {json.dumps(v)}" for k, v in data.items()) + "\n")
    env = {
        **os.environ,
        "WORKBENCH_MODELS_DIR": str(tmp_path / "models"),
        "WORKBENCH_RESULTS_DIR": str(tmp_path),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench", "finetune", str(spec), "--no-progress"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    csv = tmp_path / "stopme.csv"
    try:
        # Stopped once a few steps are written, far short of its 2000.
        assert wait_until(lambda: csv.exists() and csv.read_text().count(",train,") >= 3, 600, 0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted: the adapter so far is saved" in err and "Traceback" not in err
    steps = csv.read_text().count(",train,")
    assert 3 <= steps < 2000
    (entry,) = read_sidecar(tmp_path / "stopme.json")["runs"].values()
    assert entry["status"] == "stopped"
    adapter = tmp_path / "models" / "adapters" / f"{BASE}+stopme"
    record = json.loads((adapter / "workbench-adapter.json").read_text())
    assert record["stopped"] is True and record["iterations"] == steps
    chat = subprocess.run(
        [sys.executable, "-m", "workbench", "chat", "-m", f"{BASE}+stopme", "--max-tokens", "3", "Hello"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert chat.returncode == 0, chat.stderr


def test_bad_specs_are_one_line_errors(tmp_path: Path, engine: Engine) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": []}\nnot json\n')
    with pytest.raises(BenchSpecError, match=r"bad.jsonl:2: not JSON"):
        spec_like_shipped("bad", train=str(bad)).data()
    bad.write_text('{"question": "no known format"}\n')
    with pytest.raises(BenchSpecError, match=r"bad.jsonl:1: each line a JSON object"):
        spec_like_shipped("bad", train=str(bad)).data()
    with pytest.raises(BenchSpecError, match="unknown keys \\['epochs'\\]"):
        spec_like_shipped("bad", epochs=3)
    with pytest.raises(BenchSpecError, match="method: expected lora or dora"):
        spec_like_shipped("bad", method="full")
    with pytest.raises(BenchSpecError, match="not a fine-tuning spec"):
        FinetuneSpec.from_dict({"name": "x"})
    few = spec_like_shipped("few", batch_size=64)
    with pytest.raises(Exception, match="train has 32 examples; batch_size 64 needs at least that many"):
        few.config()
    with pytest.raises(Exception, match=r"layers must be -1 or 1\.\.30"):
        run_finetune(engine, spec_like_shipped("toomany", layers=99), tmp_path)
    assert not (tmp_path / "toomany.csv").exists()  # refused before any step
