"""Reference runs of raw `mlx_lm.stream_generate` on the engine thread, timed as GenerationStats
is, so the Engine's own overhead can be measured against it. Knows nothing of CSV or reports."""

from __future__ import annotations

import time
from typing import Any

import mlx.core as mx
from mlx_lm.generate import stream_generate

from workbench.engine import memory
from workbench.engine.models.registry import LoadedModel


def reference_stream_generate(lm: LoadedModel, prompt_ids: list[int], max_tokens: int) -> dict[str, Any]:
    """Greedy, EOS ignored (so every run reaches max_tokens); returns measured figures."""
    tokenizer = lm.tokenizer
    saved_eos = set(tokenizer.eos_token_ids)
    # This job runs to completion on the engine thread, so no other stream sees the change.
    tokenizer.eos_token_ids = []
    memory.reset_peak()
    start = time.perf_counter()
    first = last = start
    count = 0
    last_response = None
    try:
        for response in stream_generate(lm.model, tokenizer, mx.array(prompt_ids), max_tokens=max_tokens):
            last_response = response
            last = time.perf_counter()
            if count == 0:
                first = last
            count += 1
    finally:
        tokenizer.eos_token_ids = saved_eos
    assert last_response is not None
    return {
        "prompt_tokens": len(prompt_ids),
        "generation_tokens": count,
        "ttft_s": first - start,
        "prompt_tps": len(prompt_ids) / (first - start),
        "generation_tps": (count - 1) / (last - first) if count > 1 else 0.0,
        "peak_memory_gb": memory.peak_bytes() / 1e9,
        "mlx_lm_prompt_tps": last_response.prompt_tps,
        "mlx_lm_generation_tps": last_response.generation_tps,
    }
