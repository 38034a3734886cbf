"""run_finetune: a FinetuneSpec on the shared Engine under engine.exclusive(): one CSV row per
training step and per validation with provenance, the run in its sidecar, the adapter variant
registered at the end (stopped runs too: their last weights)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.engine import CancelToken, Engine, TuneReport, TuneResult
from workbench.reports.schema import FINETUNE_FIELDS
from workbench.reports.store import append_rows
from workbench.runs import ProgressFn, RunRecord, sidecar_path
from workbench.runs.provenance import now_utc
from workbench.tune.spec import FinetuneSpec


@dataclass(frozen=True)
class FinetuneRun:
    """Where a run's rows went and what it made."""

    csv_path: Path
    sidecar: Path
    run_id: str
    result: TuneResult
    rows: int

    @property
    def complete(self) -> bool:
        return not self.result.stopped


def _row(spec: FinetuneSpec, record: RunRecord, sha: str, report: TuneReport, base: str) -> dict[str, Any]:
    return {
        **record.provenance,
        "timestamp": now_utc(),
        "experiment": spec.name,
        "base_model": base,
        "variant": f"{base}+{spec.name}",
        "method": spec.method,
        "rank": spec.rank,
        "layers": spec.layers,
        "learning_rate": spec.learning_rate,
        "batch_size": spec.batch_size,
        "max_seq_length": spec.max_seq_length,
        "seed": spec.seed,
        "spec_sha": sha,
        "kind": report.kind,
        "iteration": report.iteration,
        "loss": report.loss,
        "iterations_per_second": report.iterations_per_second,
        "tokens_per_second": report.tokens_per_second,
        "trained_tokens": report.trained_tokens,
        "peak_memory_gb": report.peak_memory_gb,
    }


def run_finetune(
    engine: Engine,
    spec: FinetuneSpec,
    results_dir: Path,
    *,
    on_progress: ProgressFn | None = None,
    on_report: Callable[[TuneReport], None] | None = None,
    cancel: CancelToken | None = None,
) -> FinetuneRun:
    """Train `spec` and write `<results_dir>/<name>.csv` (FINETUNE_COLUMNS) as it goes.
    `on_progress(step, iterations, 'loss ...')` and `on_report` run on the engine thread."""
    config = spec.config()
    csv_path = Path(results_dir) / f"{spec.name}.csv"
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    sha = spec.sha()
    base = engine.model_info(spec.base_model).id
    record = RunRecord.create(
        engine, sidecar_path(csv_path), spec.name, {"spec": spec.as_dict(), "spec_sha": sha}
    )

    def report(r: TuneReport) -> None:
        append_rows(csv_path, FINETUNE_FIELDS, [_row(spec, record, sha, r, base)])
        record.rows += 1
        if on_progress is not None and r.kind == "train":
            on_progress(r.iteration, spec.iterations, f"loss {r.loss:.3f}")
        if on_report is not None:
            on_report(r)

    with record.active():
        with engine.exclusive(f"fine-tuning {spec.name}, run {record.run_id}"):
            result = engine.finetune(config, report, cancel)
        record.save()
    record.finish(not result.stopped)
    return FinetuneRun(csv_path, sidecar_path(csv_path), record.run_id, result, record.rows)
