"""Engine overhead: the same greedy generation through Engine.stream (timed by the consumer)
and raw mlx_lm.stream_generate (on the engine thread), alternating, under engine.exclusive(),
after a warm-up of each; rows (reports.schema.OVERHEAD_COLUMNS) carry provenance."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

from workbench.bench.prompts import exact_prompt
from workbench.engine import Engine, GenerationRequest
from workbench.reports.schema import OVERHEAD_FIELDS
from workbench.runs import capture


def engine_run(engine: Engine, model: str, ids: list[int], max_tokens: int) -> dict[str, Any]:
    """One greedy, EOS-ignored generation through Engine.stream, timed by the consumer."""
    request = GenerationRequest(
        prompt_ids=tuple(ids), model=model, max_tokens=max_tokens, ignore_eos=True, cache=False
    )
    start = time.perf_counter()
    first = last = start
    count = 0
    stats = None
    for chunk in engine.stream(request):
        if chunk.token_id is not None:
            last = time.perf_counter()
            if count == 0:
                first = last
            count += 1
        stats = chunk.stats or stats
    assert stats is not None and stats.generation_tokens == count
    return consumer_figures(len(ids), count, start, first, last, stats.peak_memory_gb)


def consumer_figures(
    prompt_tokens: int, count: int, start: float, first: float, last: float, peak_memory_gb: float
) -> dict[str, Any]:
    """A row's figures from what the consumer saw: request start, first and last token."""
    return {
        "prompt_tokens": prompt_tokens,
        "generation_tokens": count,
        "ttft_s": first - start,
        "prompt_tps": prompt_tokens / (first - start),
        "generation_tps": (count - 1) / (last - first) if count > 1 and last > first else 0.0,
        "peak_memory_gb": peak_memory_gb,
    }


def measure_overhead(
    engine: Engine, models: Sequence[str], prompt_tokens: int, gen_tokens: int, trials: int
) -> list[dict[str, Any]]:
    """Alternating paired trials of raw mlx-lm and Engine.stream, per model: OVERHEAD_FIELDS rows."""
    base = capture(engine)
    rows: list[dict[str, Any]] = []
    with engine.exclusive("overhead measurement"):
        for model in models:
            engine.load(model)
            ids = exact_prompt(engine, model, prompt_tokens)
            engine.reference_generate(ids, gen_tokens, model)  # warm-up, not recorded
            engine_run(engine, model, ids, gen_tokens)
            for trial in range(trials):
                order = ("raw", "engine") if trial % 2 == 0 else ("engine", "raw")
                for path in order:
                    if path == "raw":
                        result = engine.reference_generate(ids, gen_tokens, model)
                    else:
                        result = engine_run(engine, model, ids, gen_tokens)
                    rows.append(
                        {
                            **base,
                            "model": model,
                            "path": path,
                            "trial": trial,
                            **{k: result[k] for k in OVERHEAD_FIELDS if k in result},
                        }
                    )
    return rows


def summarize(rows: list[dict[str, Any]], base: str = "raw", other: str = "engine") -> list[dict[str, Any]]:
    """Per model: median tok/s of each path, and the overhead of `other` over `base` as
    the median of per-trial paired ratios (adjacent runs share the machine's drift),
    with its range."""
    out = []
    for model in dict.fromkeys(r["model"] for r in rows):
        by_path = {
            path: {r["trial"]: r for r in rows if r["model"] == model and r["path"] == path}
            for path in (base, other)
        }
        summary: dict[str, Any] = {"model": model, "blas": rows[0]["blas"], "trials": len(by_path[base])}
        for metric, name in (("prompt_tps", "prefill"), ("generation_tps", "decode")):
            for path in (base, other):
                summary[f"{path}_{metric}"] = statistics.median(r[metric] for r in by_path[path].values())
            overheads = [
                100 * (1 - by_path[other][t][metric] / by_path[base][t][metric]) for t in by_path[base]
            ]
            summary[f"{name}_overhead_pct"] = statistics.median(overheads)
            summary[f"{name}_overhead_range"] = (min(overheads), max(overheads))
        out.append(summary)
    return out
