"""What a quantized KV cache costs: next-token KL divergence and top-1 agreement against the
model's own-precision cache at growing context depths, with each cache's bytes; engine thread only."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import mlx.core as mx
from mlx_lm.models.cache import make_prompt_cache, trim_prompt_cache

from workbench.engine.errors import ContextLengthError, InvalidRequestError
from workbench.engine.kv_quant import KVQuant
from workbench.engine.kv_steps import store_as
from workbench.engine.prompt_cache import prefill


@dataclass(frozen=True)
class KVPoint:
    """One KV storage at one depth: the next-token KL (mean, max) and top-1 agreement over the
    `window` tokens after `depth` context tokens, against the reference cache, and the cache's bytes."""

    kv: str  # KVQuant.label(); '' the model's own precision (the reference)
    bits: int  # 0: the reference
    group_size: int
    depth: int
    window: int
    kl_mean: float
    kl_max: float
    top1_agreement: float
    kv_cache_bytes: int
    reference_bytes: int


class _Run:
    """One KV storage's cache, extended depth by depth in prefill chunks like a served prompt."""

    def __init__(self, model: Any, kv: KVQuant, prefill_step: int) -> None:
        self.model, self.kv, self.step = model, kv, prefill_step
        self.cache = make_prompt_cache(model)
        self.at = 0

    def extend(self, tokens: Sequence[int], depth: int) -> None:
        for _ in prefill(self.model, self.cache, tokens, self.at, depth, self.step, self._store):
            pass
        self.at = depth

    def _store(self, cache: list[Any]) -> None:
        store_as(cache, self.kv)

    def log_probs(self, window: Sequence[int]) -> mx.array:
        """Next-token log-probabilities over `window`, then the window taken back out of the cache."""
        logits = self.model(mx.array([list(window)]), cache=self.cache)[0].astype(mx.float32)
        out = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        mx.eval(out)
        trim_prompt_cache(self.cache, len(window))
        return out

    def nbytes(self) -> int:
        return sum(c.nbytes for c in self.cache)


def kv_divergence(
    model: Any,
    tokens: Sequence[int],
    depths: Sequence[int],
    storages: Sequence[KVQuant],
    *,
    window: int = 32,
    prefill_step: int = 256,
    context_length: int | None = None,
    on_point: Callable[[KVPoint], None] | None = None,
) -> list[KVPoint]:
    """A KVPoint per storage (and the reference) per depth: the context tokens[:depth] prefilled in
    `prefill_step` chunks (quantized after each, as a served prompt is), then the next `window`
    tokens compared. Each storage's cache grows once through all depths (ascending)."""
    depths = sorted(set(depths))
    need = depths[-1] + window if depths else 0
    if not depths or depths[0] < 1:
        raise InvalidRequestError("give context depths >= 1", "depths")
    if need > len(tokens):
        raise InvalidRequestError(
            f"depth {depths[-1]} + window {window} needs {need} tokens; the text has {len(tokens)}", "depths"
        )
    if context_length and need > context_length:
        raise ContextLengthError(
            f"depth {depths[-1]} + window {window} is past the context ({context_length})", "depths"
        )
    reference = _Run(model, KVQuant(0), prefill_step)
    runs = [_Run(model, kv, prefill_step) for kv in storages if kv.on]
    points: list[KVPoint] = []
    for depth in depths:
        win = tokens[depth : depth + window]
        reference.extend(tokens, depth)
        ref = reference.log_probs(win)
        ref_top = mx.argmax(ref, axis=-1)
        ref_bytes = reference.nbytes()
        rows = [(reference, 0.0, 0.0, 1.0)]
        for run in runs:
            run.extend(tokens, depth)
            var = run.log_probs(win)
            kl = mx.sum(mx.exp(ref) * (ref - var), axis=-1)
            agree = mx.mean((mx.argmax(var, axis=-1) == ref_top).astype(mx.float32))
            mx.eval(kl, agree)
            rows.append((run, float(kl.mean().item()), float(kl.max().item()), float(agree.item())))
        for run, kl_mean, kl_max, agree in rows:
            point = KVPoint(
                kv=run.kv.label(),
                bits=run.kv.bits or 0,
                group_size=run.kv.group_size or 64 if run.kv.quantized else 0,
                depth=depth,
                window=len(win),
                kl_mean=kl_mean,
                kl_max=kl_max,
                top1_agreement=agree,
                kv_cache_bytes=run.nbytes(),
                reference_bytes=ref_bytes,
            )
            points.append(point)
            if on_point is not None:
                on_point(point)
    return points
