"""GenerationStats: what one generation measured (once, on the engine thread) and the
FinishReason that ended it; no mlx import (re-exported by engine.types)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from workbench.engine.cache_miss import CacheMiss

FinishReason = Literal["stop", "length", "cancelled"]


@dataclass(frozen=True)
class GenerationStats:
    """Measured once, on the engine thread, so no consumer re-measures.

    ttft_s runs from the start of work on the engine thread (after any load) to the
    first token; queue_s is the wait before that. prompt_tps = prompt_tokens /
    ttft_s; generation_tps counts the tokens after the first over the time after
    the first; generation_tokens counts the end-of-sequence token when one ended
    the reply (it is not emitted as text). peak_memory_gb is MLX's peak (1 GB =
    1e9 bytes) since the engine last went busy, so it is per-request only when
    concurrent_streams == 1.
    concurrent_streams is the most generations that shared the engine thread
    during this one (1 = measured alone; above 1, tok/s are not comparable).
    stop_sequence is the stop string that ended the reply (finish_reason "stop"), None
    when end-of-sequence, the length limit or a cancel ended it.
    cached_tokens of the prompt_tokens came from the prompt cache, and cache_miss why not more;
    batch_size is the most generations decoded together with this one (itself included);
    reasoning_tokens of the generation_tokens were inside the model's thinking section.
    speculative names the speculation that ran ('' none; Speculation.label); of its
    draft_tokens the model accepted accepted_tokens, over decode_steps forward passes.
    kv_cache names how the KV cache was stored ('' the model's precision; KVQuant.label, e.g. 'q8')
    and kv_cache_gb its size at the end (0.0 where not measured: a batched reply whose cache was
    not taken out of the batch).
    """

    model: str
    prompt_tokens: int
    generation_tokens: int
    ttft_s: float
    prompt_tps: float
    generation_tps: float
    peak_memory_gb: float
    finish_reason: FinishReason
    total_s: float
    queue_s: float = 0.0
    load_s: float | None = None
    seed: int | None = None
    concurrent_streams: int = 1
    stop_sequence: str | None = None
    cached_tokens: int = 0
    cache_miss: CacheMiss | None = None
    batch_size: int = 1
    reasoning_tokens: int = 0  # of generation_tokens, those inside the thinking section
    speculative: str = ""
    draft_tokens: int = 0
    accepted_tokens: int = 0
    decode_steps: int = 0
    kv_cache: str = ""
    kv_cache_gb: float = 0.0
    rank_peak_memory_gb: tuple[float, ...] = ()  # a distributed engine's: each rank's, rank 0 first

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__ | {"cache_miss": self.cache_miss.as_dict() if self.cache_miss else None}

    @property
    def at_eos(self) -> bool:
        """The model ended the reply (end-of-sequence), not a limit, a stop string or a cancel."""
        return self.finish_reason == "stop" and self.stop_sequence is None

    def summary(self) -> str:
        """One human line, as the CLI and the UI print under a reply."""
        load = f" | load {self.load_s:.2f}s" if self.load_s is not None else ""
        cached = f" ({self.cached_tokens} cached)" if self.cached_tokens else ""
        shared = f" | shared with {n - 1} other(s)" if (n := self.concurrent_streams) > 1 else ""
        return (
            f"TTFT {self.ttft_s * 1000:.0f} ms | prompt {self.prompt_tokens} tok{cached} "
            f"@ {self.prompt_tps:.1f} tok/s | gen {self.generation_tokens} tok "
            f"@ {self.generation_tps:.1f} tok/s | peak {self.peak_memory_gb:.3f} GB"
            f" | {self.finish_reason}{load}{shared}"
        )
