"""The benchmark runner: a BenchSpec's grid on the shared Engine, one row per trial (hygiene:
engine.exclusive(), the model alone, warm-up, exact-length prompts, EOS ignored, fixed seed);
run_to_csv appends each row as it ends and resumes a killed run. Knows Engine, runs, reports."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.bench.prompts import exact_prompt, prompt_sha
from workbench.bench.spec import BenchConfig, BenchSpec, BenchSpecError
from workbench.engine import CancelToken, Constraint, Engine, GenerationRequest, ModelInfo, SamplingParams
from workbench.engine.kv_quant import KVQuant
from workbench.reports.schema import BENCH_FIELDS, TRIAL_KEY
from workbench.reports.store import append_rows, read_results
from workbench.runs import ProgressFn, RunRecord, capture, now_utc, sidecar_path

# `output = "json"` specs: records of a small JSON schema, one after another, never
# closed (ignore_eos masks end-of-sequence while the grammar allows a next record), so
# generation runs to max_tokens with the grammar checked at every token.
_RECORD = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "name": {"type": "string", "maxLength": 16},
        "score": {"type": "number"},
        "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": 3},
    },
    "required": ["id", "name", "score", "tags"],
    "additionalProperties": False,
}
JSON_RECORDS = f'start: "[" record ("," record)*\nrecord: %json {json.dumps(_RECORD)}\n'


class BenchmarkError(ValueError):
    """A trial that could not be measured as the spec asks (e.g. past the context window)."""


def trial_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(int(row.get(k) or 0) if k != "model" else str(row[k]) for k in TRIAL_KEY)


def run_benchmark(
    engine: Engine,
    spec: BenchSpec,
    *,
    provenance: Mapping[str, Any] | None = None,
    skip: Collection[tuple[Any, ...]] = (),
    on_row: Callable[[dict[str, Any]], None] | None = None,
    on_progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> list[dict[str, Any]]:
    """Run every configuration of `spec`: `warmup` unrecorded trials, then `trials`
    recorded ones, each a row with exactly reports.schema.BENCH_FIELDS.

    `provenance` is stamped on every row (its run id too; default: captured now); `skip`
    holds trial keys (reports.schema.TRIAL_KEY) already measured; `on_row` sees each row as
    its trial ends (run_to_csv writes it there); cancelling `cancel` stops the run after,
    or within, the current trial, which is then not recorded.
    """
    if max(spec.batch_sizes) > engine.settings.max_batch:
        raise BenchSpecError(
            f"batch_sizes {list(spec.batch_sizes)}: the engine decodes at most {engine.settings.max_batch} "
            "generations together (WORKBENCH_MAX_BATCH / --max-batch); raise it or lower the batch sizes"
        )
    cancel = cancel or CancelToken()
    base = dict(provenance) if provenance is not None else capture(engine)
    # Resolve every id first: a typo in the last model fails now, not after an hour, and
    # rows (and resume keys) name registered ids, never aliases such as "default".
    resolved = {model: engine.model_info(model).id for model in spec.models}
    todo = {
        c: [t for t in range(spec.trials) if _key(c, t, resolved[c.model]) not in skip]
        for c in spec.configurations()
    }
    total = spec.total_trials
    rows: list[dict[str, Any]] = []
    done = total - sum(len(trials) for trials in todo.values())

    def record(row: dict[str, Any], config: BenchConfig) -> None:
        rows.append(row)
        if on_row:
            on_row(row)
        if on_progress:
            on_progress(done + len(rows), total, config.label())

    if on_progress:
        on_progress(done, total, "waiting for the engine")
    with engine.exclusive(f"benchmark {spec.name}, run {base['run_id']}"):
        for model in spec.models:
            configs = [c for c in spec.configurations() if c.model == model and todo[c]]
            if not configs or cancel.cancelled:
                continue
            info = load_alone(engine, resolved[model])
            for config in configs:
                if not cancel.cancelled:
                    _run_config(engine, spec, info, config, todo[config], base, cancel, record)
    return rows


def _run_config(
    engine: Engine,
    spec: BenchSpec,
    info: ModelInfo,
    config: BenchConfig,
    trials: list[int],
    base: Mapping[str, Any],
    cancel: CancelToken,
    record: Callable[[dict[str, Any], BenchConfig], None],
) -> None:
    """The warm-up and the `trials` of one configuration; `record` takes each row."""
    ids = exact_prompt(engine, info.id, config.prompt_tokens)
    json_output = spec.output == "json"
    request = GenerationRequest(
        prompt_ids=tuple(ids),
        model=info.id,
        sampling=SamplingParams(seed=spec.seed),
        max_tokens=config.generation_tokens,
        ignore_eos=True,  # under the JSON grammar: masked while a "," can follow
        cache=False,  # every trial processes its whole prompt
        constraint=Constraint("lark", JSON_RECORDS, "output") if json_output else None,
        kv=KVQuant(config.kv_bits, 64, 0),  # explicit: the server's default does not apply
    )
    for _ in range(spec.warmup):
        _measure(engine, request, config, cancel)
    for trial in trials:
        if spec.cooldown_s:
            time.sleep(spec.cooldown_s)
        measured = _measure(engine, request, config, cancel)
        if measured is None:
            return
        row = {
            **base,
            "timestamp": now_utc(),
            "experiment": spec.name,
            "model": info.id,
            "variant": info.variant,
            "bits": info.bits,
            "group_size": info.group_size,
            "dtype": info.dtype,
            "batch_size": config.batch_size,
            "kv_bits": config.kv_bits,
            "prompt_tokens": config.prompt_tokens,
            "generation_tokens": config.generation_tokens,
            "trial": trial,
            "seed": spec.seed,
            "sampler": "greedy",
            "prompt_sha": prompt_sha(ids),
            **measured,
            "load_s": info.load_s,
            "spec_sha": spec.sha(),
        }
        assert tuple(row) == BENCH_FIELDS, "the runner and reports.schema disagree"
        record(row, config)


def _key(config: BenchConfig, trial: int, model_id: str) -> tuple[Any, ...]:
    """The TRIAL_KEY of `config`'s trial `trial`, with the model's registered id."""
    values = {**config.__dict__, "model": model_id, "trial": trial}
    return tuple(values[k] for k in TRIAL_KEY)


def load_alone(engine: Engine, model: str) -> ModelInfo:
    """Load `model` with every other model unloaded, so peak memory is its own."""
    info = engine.model_info(model)
    for other in engine.models():
        if other.loaded and other.id != info.id:
            engine.unload(other.id)
    engine.load(info.id)
    return engine.model_info(info.id)


def _measure(
    engine: Engine, request: GenerationRequest, config: BenchConfig, cancel: CancelToken
) -> dict[str, float] | None:
    """One trial: `config.batch_size` copies of `request` generated together. Returns the
    row's timing columns (per stream and for the batch), checked to be the trial the spec
    asked for; None if cancelled."""
    if cancel.cancelled:
        return None
    started = time.perf_counter()
    completions = engine.generate_many([request] * config.batch_size, cancel.child())
    wall_s = time.perf_counter() - started
    stats = [c.stats for c in completions]
    if any(s.finish_reason == "cancelled" for s in stats):
        return None
    for s in stats:
        if s.prompt_tokens != config.prompt_tokens or s.generation_tokens != config.generation_tokens:
            raise BenchmarkError(
                f"{config.label()}: got {s.prompt_tokens} prompt and {s.generation_tokens} generated "
                "tokens; prompt + generation must fit the model's context window"
            )
        if s.concurrent_streams != config.batch_size:  # exclusive() keeps everyone else out
            raise BenchmarkError(
                f"{config.label()}: {s.concurrent_streams} generations shared the engine, not "
                f"the batch of {config.batch_size}"
            )
    n = len(stats)
    # Per rank, over the streams (one process: its own peak).
    ranks = zip(*(s.rank_peak_memory_gb or (s.peak_memory_gb,) for s in stats), strict=True)
    return {
        "ttft_s": sum(s.ttft_s for s in stats) / n,
        "prompt_tps": n * config.prompt_tokens / max(s.ttft_s for s in stats),
        "generation_tps": sum(s.generation_tps for s in stats) / n,
        "aggregate_generation_tps": sum(s.generation_tps for s in stats),
        "aggregate_tps": sum(s.generation_tokens for s in stats) / wall_s,
        "peak_memory_gb": max(s.peak_memory_gb for s in stats),
        "rank_peak_memory_gb": ";".join(f"{max(peaks):.4f}" for peaks in ranks),
        "kv_cache_gb": max(s.kv_cache_gb for s in stats) or None,
    }


# ---- files ---------------------------------------------------------------
@dataclass(frozen=True)
class BenchRun:
    """What run_to_csv did: where, which run, how many rows it wrote and skipped."""

    csv_path: Path
    sidecar_path: Path
    run_id: str
    rows: list[dict[str, Any]]
    skipped: int
    complete: bool


def default_csv_path(results_dir: Path, spec: BenchSpec) -> Path:
    return Path(results_dir) / f"{spec.name}.csv"


def run_to_csv(
    engine: Engine,
    spec: BenchSpec,
    csv_path: Path,
    *,
    resume: bool = False,
    on_progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> BenchRun:
    """run_benchmark, appending each row to `csv_path` as its trial ends.

    Without `resume` a new run (a new run id) is appended. With `resume` the latest
    run of this same spec in the file is continued under its run id, skipping the
    trials it completed; a file whose rows for this experiment came from another
    spec is refused rather than mixed.
    """
    csv_path = Path(csv_path)
    run_id, skip = _resume_point(csv_path, spec) if resume else (None, set())
    details = {"spec": spec.as_dict(), "spec_sha": spec.sha()}
    record = RunRecord.create(
        engine, sidecar_path(csv_path), spec.name, details, resume=run_id, rows=len(skip)
    )

    def on_row(row: dict[str, Any]) -> None:
        append_rows(csv_path, BENCH_FIELDS, [row])
        record.rows += 1

    with record.active():
        rows = run_benchmark(
            engine,
            spec,
            provenance=record.provenance,
            skip=skip,
            on_row=on_row,
            on_progress=on_progress,
            cancel=cancel,
        )
    complete = len(skip) + len(rows) == spec.total_trials
    record.finish(complete)
    return BenchRun(csv_path, record.sidecar, record.run_id, rows, len(skip), complete)


def _resume_point(csv_path: Path, spec: BenchSpec) -> tuple[str | None, set[tuple[Any, ...]]]:
    """(run id to continue, trial keys it has) for `spec` in `csv_path`; (None, {}) if none."""
    if not csv_path.exists():
        return None, set()
    df = read_results(csv_path)
    ours = df[df["experiment"] == spec.name]
    if ours.empty:
        return None, set()
    same = ours[ours["spec_sha"] == spec.sha()]
    if same.empty:
        raise BenchSpecError(
            f"--resume: the rows for {spec.name!r} in {csv_path} come from another version of the spec "
            f"(spec_sha {sorted(set(ours['spec_sha']))}, now {spec.sha()}); run without --resume to "
            "start a new run, or write to another file"
        )
    run_id = str(same["run_id"].iloc[-1])
    last = same[same["run_id"] == run_id]
    return run_id, {trial_key(r) for r in last.to_dict("records")}
