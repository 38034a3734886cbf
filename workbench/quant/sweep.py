"""run_sweep: a QuantSweepSpec on the shared Engine, under engine.exclusive(): the reference,
then each recipe made (or reused), timed by the benchmark runner (<name>.bench.csv), measured
against the reference, one row each (<name>.csv). Knows Engine, bench, runs, reports."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.bench.runner import run_benchmark
from workbench.bench.spec import BenchSpec
from workbench.engine import CancelToken, Engine, QuantRecipe, QuantResult
from workbench.quant.quality import (
    DIVERGENCE_PROMPTS,
    QualityReport,
    eval_text,
    eval_text_sha256,
    measure_quality,
    reference_continuations,
    token_windows,
)
from workbench.quant.spec import QuantSweepSpec
from workbench.reports.schema import BENCH_FIELDS, QUANT_FIELDS
from workbench.reports.store import append_rows
from workbench.runs import ProgressFn, RunRecord, sidecar_path


@dataclass(frozen=True)
class SweepRun:
    """What run_sweep did: its files, run id, the rows it wrote, whether it finished."""

    csv_path: Path
    bench_csv_path: Path
    sidecar_path: Path
    run_id: str
    rows: list[dict[str, Any]]
    complete: bool


def default_csv_path(results_dir: Path, spec: QuantSweepSpec) -> Path:
    return Path(results_dir) / f"{spec.name}.csv"


def bench_csv_path(csv_path: Path) -> Path:
    return csv_path.with_name(f"{csv_path.stem}.bench.csv")


def run_sweep(
    engine: Engine,
    spec: QuantSweepSpec,
    csv_path: Path,
    *,
    on_progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> SweepRun:
    """Run `spec`, appending one row per variant to `csv_path` (the reference's first).
    Cancelling `cancel` stops after the current step; finished rows stay."""
    cancel = cancel or CancelToken()
    csv_path = Path(csv_path)
    bench_csv, sidecar = bench_csv_path(csv_path), sidecar_path(csv_path)
    recipes = [QuantRecipe.parse(r) for r in spec.recipes]
    source = engine.model_info(spec.model).id  # a typo fails here, before any work
    reference = engine.model_info(spec.reference_model).id
    details = {"spec": spec.as_dict(), "spec_sha": spec.sha(), "eval_text_sha256": eval_text_sha256()}
    record = RunRecord.create(engine, sidecar, spec.name, details)
    progress = _Steps(spec, len(recipes), on_progress)
    rows: list[dict[str, Any]] = []
    with record.active():
        progress.report("waiting for the engine")
        with engine.exclusive(f"quantization sweep {spec.name}, run {record.run_id}"):
            windows = token_windows(engine.tokenize(eval_text(), reference), spec.eval_tokens, spec.window)
            prompts = DIVERGENCE_PROMPTS[: spec.divergence_prompts]
            pairs = reference_continuations(
                engine, reference, prompts, spec.divergence_tokens, on_step=progress.step
            )
            for recipe in (None, *recipes):
                if cancel.cancelled:
                    break
                made = None if recipe is None else engine.quantize(source, recipe)
                model = reference if made is None else made.model
                progress.step(f"{model}: {'cached' if made and made.cached else 'ready'}")
                trials = progress.offset(f"{model}: speed")  # the runner counts its trials from 0
                speed = _speed(engine, spec, model, record.provenance, bench_csv, cancel, trials)
                if speed is None:
                    break
                progress.step(f"{model}: speed", spec.trials)
                quality = measure_quality(
                    engine,
                    reference,
                    model,
                    windows,
                    pairs,
                    on_step=lambda w, m=model: progress.step(f"{m}: {w}"),
                    cancel=cancel,
                )
                if quality is None:
                    break
                row = _row(
                    engine, spec, record.provenance, source, reference, model, recipe, made, quality, speed
                )
                append_rows(csv_path, QUANT_FIELDS, [row])
                rows.append(row)
                record.rows = len(rows)
                record.save()
    complete = len(rows) == 1 + len(recipes)
    record.finish(complete)
    return SweepRun(csv_path, bench_csv, sidecar, record.run_id, rows, complete)


class _Steps:
    """The sweep's progress: steps done of all its steps (divergence prompts, then per
    variant: making it, its speed trials, its quality windows and prompts)."""

    def __init__(self, spec: QuantSweepSpec, recipes: int, on_progress: ProgressFn | None) -> None:
        prompts = min(spec.divergence_prompts, len(DIVERGENCE_PROMPTS))
        per_variant = 1 + spec.trials + spec.eval_tokens // spec.window + prompts
        self.total = prompts + (1 + recipes) * per_variant
        self.done = 0
        self.on_progress = on_progress

    def report(self, what: str, done: int | None = None) -> None:
        if self.on_progress:
            self.on_progress(min(self.done if done is None else done, self.total), self.total, what)

    def step(self, what: str, n: int = 1) -> None:
        self.done += n
        self.report(what)

    def offset(self, what: str) -> ProgressFn:
        """A runner's on_progress that counts on from the steps done now."""
        at = self.done

        def progress(done: int, _total: int, detail: str) -> None:
            self.report(f"{what}, {detail}", at + done)

        return progress


def _speed(
    engine: Engine,
    spec: QuantSweepSpec,
    model: str,
    provenance: dict[str, Any],
    bench_csv: Path,
    cancel: CancelToken,
    on_progress: ProgressFn,
) -> list[dict[str, Any]] | None:
    """The benchmark runner's trials of `model` (appended to bench_csv); None if cancelled."""
    bench = BenchSpec(
        name=spec.name,
        models=(model,),
        prompt_tokens=(spec.prompt_tokens,),
        generation_tokens=(spec.generation_tokens,),
        trials=spec.trials,
        warmup=spec.warmup,
        seed=spec.seed,
        question=spec.question,
    )
    rows = run_benchmark(
        engine,
        bench,
        provenance=provenance,
        on_row=lambda row: append_rows(bench_csv, BENCH_FIELDS, [row]),
        on_progress=on_progress,
        cancel=cancel,
    )
    return None if cancel.cancelled or len(rows) < spec.trials else rows


def _row(
    engine: Engine,
    spec: QuantSweepSpec,
    base: dict[str, Any],
    source: str,
    reference: str,
    model: str,
    recipe: QuantRecipe | None,
    made: QuantResult | None,
    quality: QualityReport,
    speed: list[dict[str, Any]],
) -> dict[str, Any]:
    info = engine.model_info(model)
    dense = info.bits is not None and info.bits >= 16 and info.group_size is None
    load_s = next((r["load_s"] for r in speed if r["load_s"] is not None), None)
    row = {
        **base,
        "experiment": spec.name,
        "model": model,
        "source_model": source,
        "reference_model": reference,
        "recipe": recipe.name if recipe else "reference",
        "mode": recipe.mode if recipe else ("none" if dense else "unknown"),
        "bits": info.bits,
        "group_size": info.group_size,
        "dtype": info.dtype,
        "bits_per_weight": made.bits_per_weight if made else (float(info.bits) if dense else None),
        "size_gb": info.size_bytes / 1e9 if info.size_bytes is not None else None,
        "quantize_s": made.quantize_s if made else None,
        "cached": made.cached if made else None,
        "eval_text_sha256": eval_text_sha256(),
        **{k: getattr(quality, k) for k in QualityReport.__dataclass_fields__},
        "load_s": load_s,
        "peak_memory_gb": statistics.median(r["peak_memory_gb"] for r in speed),
        "prompt_tps": statistics.median(r["prompt_tps"] for r in speed),
        "generation_tps": statistics.median(r["generation_tps"] for r in speed),
        "speed_trials": len(speed),
        "prompt_tokens": spec.prompt_tokens,
        "generation_tokens": spec.generation_tokens,
        "seed": spec.seed,
        "spec_sha": spec.sha(),
    }
    return {k: row[k] for k in QUANT_FIELDS}
