"""A generation whose KV cache is quantized, alone (mlx-lm's BatchKVCache has no quantized form):
the prompt in chunks, then mlx-lm's generate_step with kv_bits, the prompt cache under its own key."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import mlx.core as mx
from mlx_lm.generate import generate_step, maybe_quantize_kv_cache
from mlx_lm.models.cache import KVCache, can_trim_prompt_cache, make_prompt_cache, trim_prompt_cache

from workbench.engine.cache_miss import CacheMiss
from workbench.engine.kv_quant import KVQuant
from workbench.engine.prompt_cache import PromptStore, prefill


class HalfKVCache(KVCache):
    """mlx-lm's KVCache holding float16 keys and values (attention promotes them back)."""

    def update_and_fetch(self, keys: mx.array, values: mx.array) -> tuple[mx.array, mx.array]:
        return super().update_and_fetch(keys.astype(mx.float16), values.astype(mx.float16))

    @classmethod
    def of(cls, cache: KVCache) -> HalfKVCache:
        half = cls()
        if cache.keys is not None:
            half.keys, half.values = cache.keys.astype(mx.float16), cache.values.astype(mx.float16)
        half.offset = cache.offset
        return half


def store_as(cache: list[Any], kv: KVQuant) -> None:
    """Convert, in place, the entries of `cache` that `kv` stores otherwise: float16 (bits 16, at
    once), else quantized once the context passes kv.start (mlx-lm's maybe_quantize_kv_cache)."""
    if kv.bits == 16:
        for i, c in enumerate(cache):
            if type(c) is KVCache:
                cache[i] = HalfKVCache.of(c)
    elif kv.on:
        maybe_quantize_kv_cache(cache, kv.start or 0, kv.group_size or 64, kv.bits)


def kv_key(model_id: str, kv: KVQuant) -> str:
    """The prompt cache's key for `kv`'s entries: a quantized cache serves only its own kind."""
    return f"{model_id}#{kv.label()}" if kv.on else model_id


def request_kv(request: Any, settings: Any, lm: Any) -> KVQuant | None:
    """The KV storage `request` runs with (its fields over the server's WORKBENCH_KV_BITS,
    _GROUP_SIZE, _QUANTIZED_KV_START), checked against the model; None: the model's precision."""
    default = KVQuant(settings.kv_bits, settings.kv_group_size, settings.quantized_kv_start)
    kv = (request.kv or KVQuant()).over(default)
    kv.check_head_dim(head_dim(lm.model), lm.entry.id)
    return kv if kv.on else None


def head_dim(model: Any) -> int | None:
    """The model's attention head dimension (what a KV group size must divide), when it says."""
    args = getattr(model, "args", None)
    if dim := getattr(args, "head_dim", None):
        return int(dim)
    hidden, heads = getattr(args, "hidden_size", None), getattr(args, "num_attention_heads", None)
    return hidden // heads if hidden and heads else None


@dataclass
class KVRun:
    """What a quantized-cache generation reports: prompt tokens reused, why no more, the cache's bytes."""

    cached: int = 0
    miss: CacheMiss | None = None
    nbytes: int = 0


def _with_history(processor: Callable[..., Any], prefix: mx.array) -> Callable[..., Any]:
    """A logits processor that sees the whole history (generate_step only sees the last prompt token)."""
    return lambda tokens, logits: processor(mx.concatenate([prefix, tokens]), logits)


def quantized_steps(
    model: Any,
    prompt: Sequence[int],
    kv: KVQuant,
    *,
    max_tokens: int,
    sampler: Callable[[mx.array], mx.array],
    processors: Sequence[Any],
    run: KVRun,
    store: PromptStore | None = None,
    prefill_step: int = 2048,
) -> Iterator[tuple[int, mx.array] | None]:
    """(token, logprobs) as mlx-lm's generate_step with `kv`'s kv_bits, kv_group_size and
    quantized_kv_start; None after each `prefill_step` chunk of the prompt (the worker steps the
    other streams then). `store` supplies a cached prefix and keeps the cache at the end."""
    history = list(prompt)
    cache, run.cached, run.miss = store.reuse(history) if store else (None, 0, CacheMiss("off"))
    cache = cache or make_prompt_cache(model)
    store_as(cache, kv)
    yield from prefill(
        model, cache, history, run.cached, len(history) - 1, prefill_step, lambda c: store_as(c, kv)
    )
    prefix = mx.array(history[:-1], dtype=mx.int32)
    steps = generate_step(
        mx.array(history[-1:]),
        model,
        max_tokens=max_tokens,
        sampler=sampler,
        logits_processors=[_with_history(p, prefix) for p in processors],
        prompt_cache=cache,
        prefill_step_size=prefill_step,
        kv_bits=kv.bits if kv.quantized else None,
        kv_group_size=kv.group_size or 64,
        quantized_kv_start=kv.start or 0,
    )
    out: list[int] = []
    try:
        for token, logprobs in steps:
            out.append(token)
            yield token, logprobs
    finally:
        steps.close()
        run.nbytes = sum(c.nbytes for c in cache)
        tokens = history + out
        excess = cache[0].offset - (len(tokens) - 1)
        if store is not None and excess >= 0 and can_trim_prompt_cache(cache):
            trim_prompt_cache(cache, excess)
            store.keep(tokens[:-1], cache)
