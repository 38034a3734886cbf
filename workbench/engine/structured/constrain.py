"""Constrained decoding: an mlx-lm logits processor that masks, before every draw, the tokens a
grammar (JSON schema or Lark) forbids, with llguidance. Engine thread only; imports mlx."""

from __future__ import annotations

import json
from typing import Any

import mlx.core as mx
import numpy as np

from workbench.engine.errors import InvalidRequestError
from workbench.engine.structured.constraint import Constraint


def guidance_tokenizer(lm: Any) -> Any:
    """The llguidance tokenizer of a loaded model (cached on it)."""
    if lm.guidance is None:
        import llguidance.hf

        hf = getattr(lm.tokenizer, "_tokenizer", lm.tokenizer)
        try:
            lm.guidance = llguidance.hf.from_tokenizer(
                hf, n_vocab=lm.vocab_size, eos_token=sorted(lm.tokenizer.eos_token_ids)
            )
        except ValueError as exc:  # a slow (non-Rust) tokenizer
            raise InvalidRequestError(
                f"{lm.entry.id!r} cannot constrain its output: {exc}", param="response_format"
            ) from exc
    return lm.guidance


def grammar_of(constraint: Constraint) -> str:
    """The llguidance grammar text of `constraint`."""
    import llguidance

    if constraint.kind == "json_schema":
        schema = json.loads(constraint.source)
        # Compact JSON (no free whitespace): a small model cannot pad the output forever.
        return llguidance.LLMatcher.grammar_from_json_schema(schema, defaults={"whitespace_flexible": False})
    return llguidance.LLMatcher.grammar_from_lark(constraint.source)


class GrammarProcessor:
    """mlx-lm logits processor keeping one generation inside a grammar."""

    def __init__(self, matcher: Any, vocab_size: int, forbid: frozenset[int] = frozenset()) -> None:
        self.matcher = matcher
        self.vocab_size = vocab_size
        self.mask = np.zeros(((vocab_size + 31) // 32,), dtype=np.uint32)
        # `forbid` (end-of-sequence under ignore_eos): bits cleared while another token is allowed.
        self.keep = np.full_like(self.mask, 0xFFFFFFFF)
        for token in forbid:
            self.keep[token // 32] &= ~np.uint32(1 << (token % 32))
        self.started = False

    def __call__(self, tokens: mx.array, logits: mx.array) -> mx.array:
        if self.started:
            last = int(mx.reshape(tokens, (-1,))[-1].item())
            if not self.matcher.is_stopped():
                self.matcher.consume_token(last)
        self.started = True
        mask = self.mask
        self.matcher.unsafe_compute_mask_ptr(mask.ctypes.data, mask.nbytes)
        kept = mask & self.keep
        if kept.any():
            mask = kept
        bits = np.unpackbits(mask.view(np.uint8), bitorder="little")[: logits.shape[-1]]
        return mx.where(mx.array(bits.astype(np.bool_)), logits, mx.array(-mx.inf, dtype=logits.dtype))


def grammar_processor(
    lm: Any, constraint: Constraint, vocab_size: int, forbid: frozenset[int] = frozenset()
) -> GrammarProcessor:
    """A fresh processor for one generation (`forbid`: tokens masked while the grammar
    allows others); InvalidRequestError for a grammar (or schema) llguidance refuses,
    with its message."""
    import llguidance

    tokenizer = guidance_tokenizer(lm)
    try:
        grammar = grammar_of(constraint)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise InvalidRequestError(f"{constraint.param}: {exc}", param=constraint.param) from exc
    matcher = llguidance.LLMatcher(tokenizer, grammar)  # compiles it; never raises
    if matcher.is_error():
        why = matcher.get_error()
        raise InvalidRequestError(f"{constraint.param}: cannot be enforced: {why}", param=constraint.param)
    return GrammarProcessor(matcher, vocab_size, forbid)
