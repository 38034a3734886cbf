"""Next-token distributions of a model against a reference on the same tokens (the numbers behind
perplexity, KL, top-1 agreement), in float32; engine thread only. Aggregation is workbench.quant's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import mlx.core as mx

from workbench.engine.errors import ContextLengthError, InvalidRequestError
from workbench.engine.types import TokenComparison

if TYPE_CHECKING:
    from workbench.engine.models.registry import LoadedModel


def _log_probs(lm: LoadedModel, inputs: mx.array) -> mx.array:
    logits = lm.model(inputs)[0].astype(mx.float32)
    return logits - mx.logsumexp(logits, axis=-1, keepdims=True)


def compare_next_tokens(reference: LoadedModel, model: LoadedModel, ids: Sequence[int]) -> TokenComparison:
    """Teacher-forced next-token comparison of `model` against `reference` on `ids`."""
    if len(ids) < 2:
        raise InvalidRequestError("a comparison window needs at least 2 tokens", "ids")
    limit = min(reference.context_length, model.context_length)
    if len(ids) > limit:
        raise ContextLengthError(f"window of {len(ids)} tokens exceeds the context window ({limit})", "ids")
    x = mx.array([list(ids)], dtype=mx.uint32)
    inputs, targets = x[:, :-1], x[0, 1:, None]
    ref = _log_probs(reference, inputs)
    var = ref if model is reference else _log_probs(model, inputs)
    if ref.shape != var.shape:
        raise InvalidRequestError(
            f"vocabularies differ ({ref.shape[-1]} vs {var.shape[-1]} tokens): not variants of one model",
            "model",
        )
    ref_nll = -mx.take_along_axis(ref, targets, axis=-1)[:, 0]
    nll = -mx.take_along_axis(var, targets, axis=-1)[:, 0]
    kl = mx.sum(mx.exp(ref) * (ref - var), axis=-1)
    ref_top1, top1 = mx.argmax(ref, axis=-1), mx.argmax(var, axis=-1)
    mx.eval(ref_nll, nll, kl, ref_top1, top1)
    return TokenComparison(
        reference_nll=tuple(ref_nll.tolist()),
        nll=tuple(nll.tolist()),
        kl=tuple(kl.tolist()),
        reference_top1=tuple(ref_top1.tolist()),
        top1=tuple(top1.tolist()),
    )
