"""The benchmark runner and its reports on the real embedded model: rows and provenance,
a SIGKILLed run and --resume, the CSV schema check, summaries and plots."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.figure import Figure

from tests.helpers import FinishedGenerations, wait_until
from workbench.bench.runner import run_benchmark, run_to_csv
from workbench.bench.spec import BenchSpec, BenchSpecError, experiments_dir, spec_files
from workbench.config import Settings
from workbench.engine import Engine
from workbench.engine.models.embedded import EMBEDDED_IDS
from workbench.reports import plots
from workbench.reports.schema import BENCH_COLUMNS, BENCH_FIELDS, TRIAL_KEY
from workbench.reports.store import ResultsSchemaError, count_rows, read_results
from workbench.reports.summary import median_ci, summarize
from workbench.runs import sidecar_path

F32 = EMBEDDED_IDS["f32"]


@pytest.fixture(scope="module")
def tiny_run(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> tuple[BenchSpec, Path]:
    """The default model (named by its alias): 2 prompt lengths (the longer first) x 1
    generation length x 2 trials, after a warm-up."""
    spec = BenchSpec(
        name="tiny", models=("default",), prompt_tokens=(40, 8), generation_tokens=(5,), trials=2, warmup=1
    )
    csv_path = tmp_path_factory.mktemp("bench") / "tiny.csv"
    run = run_to_csv(engine, spec, csv_path)
    assert run.complete and len(run.rows) == 4
    return spec, csv_path


def test_tiny_spec_writes_one_full_row_per_trial(tiny_run: tuple[BenchSpec, Path], engine: Engine) -> None:
    spec, csv_path = tiny_run
    default = engine.model_info("default")
    df = read_results(csv_path)
    assert len(df) == spec.trials * len(spec.configurations()) == 4
    assert list(df.columns) == list(BENCH_FIELDS)
    for column in BENCH_COLUMNS:  # every column a trial can fill is filled
        if column.name != "group_size" or default.group_size is not None:  # dense weights have no group
            assert df[column.name].notna().all(), column.name
            assert (df[column.name].astype(str).str.strip() != "").all(), column.name
    assert df["run_id"].nunique() == 1 and df["git_sha"].str.fullmatch(r"[0-9a-f]{40}").all()
    assert set(df["device"]) == {engine.device} and df["blas"].iloc[0] not in ("", "unknown")
    # Rows name the registered id behind the alias, with its variant and bits.
    assert (df["model"] == default.id).all() and (df["variant"] == default.variant).all()
    assert (df["bits"] == default.bits).all() and default.bits is not None
    assert (df["dtype"] == default.dtype).all() and default.dtype in ("float32", "float16", "bfloat16")
    # One stream per trial: the batch's figures are that stream's.
    assert (df["batch_size"] == 1).all() and (df["aggregate_generation_tps"] == df["generation_tps"]).all()
    assert (df["aggregate_tps"] > 0).all()
    # Exact-length prompts, EOS ignored: every trial is exactly the configured size.
    assert sorted(zip(df["prompt_tokens"], df["generation_tokens"], df["trial"], strict=True)) == [
        (8, 5, 0),
        (8, 5, 1),
        (40, 5, 0),
        (40, 5, 1),
    ]
    assert (df["ttft_s"] > 0).all() and (df["prompt_tps"] > 0).all() and (df["generation_tps"] > 0).all()
    assert df.groupby("prompt_tokens")["prompt_sha"].nunique().eq(1).all()
    # Peak memory is reset per trial: the short prompt, measured after the long one,
    # peaks lower than it did.
    peaks = df.groupby("prompt_tokens")["peak_memory_gb"].max()
    assert peaks[8] < peaks[40]
    sidecar = json.loads(sidecar_path(csv_path).read_text())
    entry = sidecar["runs"][df["run_id"].iloc[0]]
    assert entry["status"] == "complete" and entry["rows"] == 4
    assert BenchSpec.from_dict(entry["spec"]) == spec and entry["spec_sha"] == df["spec_sha"].iloc[0]


def test_read_results_rejects_missing_and_wrong_typed_columns(
    tiny_run: tuple[BenchSpec, Path], tmp_path: Path
) -> None:
    _, csv_path = tiny_run
    good = pd.read_csv(csv_path, dtype=str, keep_default_na=False)

    def write(df: pd.DataFrame) -> Path:
        path = tmp_path / "edited.csv"
        df.to_csv(path, index=False)
        return path

    with pytest.raises(ResultsSchemaError, match=r"missing columns \['ttft_s'\]"):
        read_results(write(good.drop(columns=["ttft_s"])))
    wrong = good.copy()
    wrong.loc[2, "generation_tps"] = "fast"
    with pytest.raises(
        ResultsSchemaError, match=r"'generation_tps' must hold float values; line 4 has 'fast'"
    ):
        read_results(write(wrong))
    wrong = good.copy()
    wrong.loc[0, "prompt_tokens"] = "8.5"
    with pytest.raises(ResultsSchemaError, match=r"'prompt_tokens' must hold int values; line 2"):
        read_results(write(wrong))
    wrong = good.copy()
    wrong.loc[1, "run_id"] = ""
    with pytest.raises(ResultsSchemaError, match=r"'run_id' is empty on line 3"):
        read_results(write(wrong))
    with pytest.raises(ResultsSchemaError, match=r"unexpected columns \['note'\]"):
        read_results(write(good.assign(note="x")))
    with pytest.raises(ResultsSchemaError, match="no such results file"):
        read_results(tmp_path / "absent.csv")
    assert len(read_results(write(good))) == 4  # the untouched copy still reads


def test_spec_files_are_validated(tmp_path: Path, engine: Engine) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('models = ["m"]\nprompt_tokens = [8]\ngeneration_tokens = [4]\ntrails = 3\n')
    with pytest.raises(BenchSpecError, match=r"bad.toml: unknown keys \['trails'\]"):
        BenchSpec.from_file(path)
    path.write_text('models = ["m"]\nprompt_tokens = [0]\ngeneration_tokens = [4]\n')
    with pytest.raises(BenchSpecError, match=r"prompt_tokens: expected integers in \[1, "):
        BenchSpec.from_file(tmp_path / "bad")  # the .toml may be left off
    path.write_text("models = [\n")
    with pytest.raises(BenchSpecError, match="not valid TOML"):
        BenchSpec.from_file(path)
    with pytest.raises(BenchSpecError, match="no experiment spec at"):
        BenchSpec.from_file(tmp_path / "absent")
    # Every shipped spec loads and says what it asks: benchmarks here, sweeps in test_quant.
    shipped = spec_files()
    assert "default.toml" in shipped and "quant_sweep.toml" not in shipped
    assert all(BenchSpec.from_file(experiments_dir() / name).question for name in shipped)
    too_big = engine.settings.max_batch + 1
    batched = BenchSpec(
        name="b", models=(F32,), prompt_tokens=(8,), generation_tokens=(2,), batch_sizes=(1, too_big)
    )
    with pytest.raises(BenchSpecError, match=rf"batch_sizes \[1, {too_big}\]: .*WORKBENCH_MAX_BATCH"):
        run_benchmark(engine, batched)


def test_batch_sizes_decode_together_with_per_stream_and_aggregate_rows(engine: Engine) -> None:
    """batch_sizes = [1, 3]: a trial at 3 is three copies of the request decoded in one
    batch (every generation says so), its row has per-stream and all-streams tok/s."""
    spec = BenchSpec(
        name="batched",
        models=(F32,),
        prompt_tokens=(12,),
        generation_tokens=(6,),
        batch_sizes=(1, 3),
        trials=2,
    )
    with FinishedGenerations(engine) as finished:
        rows = run_benchmark(engine, spec)
    seen = finished.seen
    df = pd.DataFrame(rows)
    assert list(df["batch_size"]) == [1, 1, 3, 3] and list(df["trial"]) == [0, 1, 0, 1]
    # Warm-up and recorded trials: 1 + 2 generations at batch 1, 3 + 6 at batch 3.
    assert [s.batch_size for s in seen] == [1] * 3 + [3] * 9
    assert all(s.concurrent_streams == s.batch_size and s.generation_tokens == 6 for s in seen)
    three = df[df["batch_size"] == 3]
    assert (three["aggregate_generation_tps"] > three["generation_tps"]).all()
    assert (three["aggregate_generation_tps"] <= 3 * three["generation_tps"] * (1 + 1e-9)).all()
    assert (df["aggregate_tps"] > 0).all() and (df["prompt_tokens"] == 12).all()
    assert plots.tps_vs_batch_size(df.astype({"batch_size": int})) is not None


def test_killed_or_terminated_runs_keep_their_rows_and_resume_finishes_them(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    engine.load(F32)  # converted once, in the shared models dir
    spec_file = tmp_path / "killme.toml"
    spec_file.write_text(
        f'models = ["{F32}"]\nprompt_tokens = [8]\ngeneration_tokens = [10, 14]\ntrials = 3\nwarmup = 0\n'
    )
    csv_path = tmp_path / "out" / "killme.csv"
    env = {**os.environ, "WORKBENCH_MODELS_DIR": str(settings.models_dir), "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        "-m",
        "workbench",
        "bench",
        str(spec_file),
        "--out",
        str(csv_path),
        "--no-progress",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: count_rows(csv_path) >= 2 or proc.poll() is not None, timeout_s=120)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
    kept = read_results(csv_path)  # still parses
    assert 2 <= len(kept) < 6
    run_id = kept["run_id"].iloc[0]
    assert json.loads(sidecar_path(csv_path).read_text())["runs"][run_id]["status"] == "running"

    # SIGTERM stops a run as Ctrl-C does: whole rows kept, run marked stopped. It is sent
    # once one more row lands, so two trials must still remain then (the kill above lands
    # at 2 rows, later only if trials outrun the 20 ms polling).
    if len(kept) <= 3:
        proc = subprocess.Popen([*cmd, "--resume"], env=env, stderr=subprocess.PIPE, text=True)
        try:
            assert wait_until(lambda: count_rows(csv_path) > len(kept) or proc.poll() is not None, 120)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 130, proc.stderr.read() if proc.stderr else ""
        finally:
            if proc.poll() is None:
                proc.kill()
        assert "interrupted: completed trials are in" in (proc.stderr.read() if proc.stderr else "")
        kept = read_results(csv_path)
        assert json.loads(sidecar_path(csv_path).read_text())["runs"][run_id]["status"] == "stopped"
    resumed = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert (
        f"{6 - len(kept)} rows appended" in resumed.stderr
        and f"{len(kept)} trials already done" in resumed.stderr
    )
    df = read_results(csv_path)
    assert len(df) == 6 and set(df["run_id"]) == {run_id}
    assert not df.duplicated(list(TRIAL_KEY)).any()
    assert sorted(zip(df["generation_tokens"], df["trial"], strict=True)) == [
        (g, t) for g in (10, 14) for t in range(3)
    ]
    assert "generation_tps" in resumed.stdout  # the summary table
    assert json.loads(sidecar_path(csv_path).read_text())["runs"][run_id]["status"] == "complete"

    # A resume against an edited spec is refused rather than mixed in.
    spec_file.write_text(spec_file.read_text().replace("trials = 3", "trials = 4"))
    refused = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "come from another version of the spec" in refused.stderr
    assert len(read_results(csv_path)) == 6


def test_median_ci_is_distribution_free_and_needs_six_trials() -> None:
    median, low, high = median_ci([3.0, 1.0, 2.0])
    assert median == 2.0 and math.isnan(low) and math.isnan(high)
    median, low, high = median_ci([5.0, 1.0, 4.0, 2.0, 3.0, 6.0])
    assert (median, low, high) == (3.5, 1.0, 6.0)  # n=6: min..max covers the median with 96.9%
    median, low, high = median_ci([float(i) for i in range(1, 21)])
    assert median == 10.5 and 1.0 < low < median < high < 20.0


def test_summary_and_plots_from_the_same_rows(tiny_run: tuple[BenchSpec, Path], tmp_path: Path) -> None:
    _, csv_path = tiny_run
    df = read_results(csv_path)
    summary = summarize(df)
    assert list(summary["prompt_tokens"]) == [8, 40] and list(summary["n"]) == [2, 2]
    assert summary["generation_tps"].gt(0).all() and summary["generation_tps_ci_low"].isna().all()
    for name, plot in plots.REPORT_PLOTS.items():
        fig = plot(df)
        assert isinstance(fig, Figure), name
        drawn = [ax for ax in fig.axes if ax.lines or ax.patches]
        assert drawn, f"{name} drew nothing"

    copy = tmp_path / "tiny.csv"
    shutil.copy(csv_path, copy)
    out = subprocess.run(
        [sys.executable, "-m", "workbench", "report", str(copy)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    pngs = sorted(p.name for p in tmp_path.glob("tiny.*.png"))
    assert pngs == sorted(f"tiny.{name}.png" for name in plots.REPORT_PLOTS)
    assert all((tmp_path / p).read_bytes().startswith(b"\x89PNG") for p in pngs)
    assert len(pd.read_csv(tmp_path / "tiny.summary.csv")) == 2
    assert "prompt_tps" in out.stdout

    bad = subprocess.run(
        [sys.executable, "-m", "workbench", "report", str(tmp_path / "absent.csv")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "no such results file" in bad.stderr
