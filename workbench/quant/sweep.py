"""run_sweep: a QuantSweepSpec on the shared Engine. Under engine.exclusive(): the
reference first, then each recipe: make (or reuse) the variant, measure its speed and
memory with the benchmark runner, its quality against the reference, and append its
row (reports.schema.QUANT_COLUMNS) as soon as it is done. Benchmark trials go to
<name>.bench.csv, the spec to the <name>.json sidecar. Knows Engine, bench, reports.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.bench.provenance import capture
from workbench.bench.runner import now_utc, run_benchmark, update_sidecar
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

ProgressFn = Callable[[int, int, str], None]  # (steps done, steps in all, what is running)


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
    bench_csv, sidecar = bench_csv_path(csv_path), csv_path.with_suffix(".json")
    recipes = [QuantRecipe.parse(r) for r in spec.recipes]
    source = engine.model_info(spec.model).id  # a typo fails here, before any work
    reference = engine.model_info(spec.reference_model).id
    base = capture(engine)
    record = {
        "run_id": base["run_id"],
        "spec": spec.as_dict(),
        "spec_sha": spec.sha(),
        "eval_text_sha256": eval_text_sha256(),
        "started": now_utc(),
    }
    prompts = DIVERGENCE_PROMPTS[: spec.divergence_prompts]
    n_windows = spec.eval_tokens // spec.window
    per_variant = 1 + spec.trials + n_windows + len(prompts)
    total = len(prompts) + (1 + len(recipes)) * per_variant
    done = 0

    def step(what: str, n: int = 1) -> None:
        nonlocal done
        done += n
        if on_progress:
            on_progress(min(done, total), total, what)

    rows: list[dict[str, Any]] = []
    update_sidecar(sidecar, spec.name, record, "running", 0)
    try:
        if on_progress:
            on_progress(0, total, "waiting for the engine")
        with engine.exclusive(f"quantization sweep {spec.name}, run {record['run_id']}"):
            windows = token_windows(engine.tokenize(eval_text(), reference), spec.eval_tokens, spec.window)
            pairs = reference_continuations(engine, reference, prompts, spec.divergence_tokens, on_step=step)
            for recipe in (None, *recipes):
                if cancel.cancelled:
                    break
                made = None if recipe is None else engine.quantize(source, recipe)
                model = reference if made is None else made.model
                step(f"{model}: {'cached' if made and made.cached else 'ready'}")
                at = done  # the benchmark runner reports its trials from 0

                def trials(d: int, _total: int, what: str, at: int = at, model: str = model) -> None:
                    if on_progress:
                        on_progress(min(at + d, total), total, f"{model}: speed, {what}")

                speed = _speed(engine, spec, model, base, bench_csv, cancel, trials)
                if speed is None:
                    break
                step(f"{model}: speed", spec.trials)
                quality = measure_quality(
                    engine,
                    reference,
                    model,
                    windows,
                    pairs,
                    on_step=lambda w, m=model: step(f"{m}: {w}"),
                    cancel=cancel,
                )
                if quality is None:
                    break
                row = _row(engine, spec, base, source, reference, model, recipe, made, quality, speed)
                append_rows(csv_path, QUANT_FIELDS, [row])
                rows.append(row)
                update_sidecar(sidecar, spec.name, record, "running", len(rows))
    except BaseException:
        update_sidecar(sidecar, spec.name, record, "failed", len(rows))
        raise
    complete = len(rows) == 1 + len(recipes)
    update_sidecar(sidecar, spec.name, record, "complete" if complete else "stopped", len(rows))
    return SweepRun(csv_path, bench_csv, sidecar, base["run_id"], rows, complete)


def _speed(
    engine: Engine,
    spec: QuantSweepSpec,
    model: str,
    base: dict[str, Any],
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
        run_id=base["run_id"],
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
