"""Sampling on the engine thread: mlx-lm's sampler and logits processors for a request's
SamplingParams (seeded draws that reproduce whatever else draws in between), and the logprob
of a chosen token with its top alternatives. Knows mlx and mlx-lm; no queues or HTTP."""

from __future__ import annotations

import itertools
import math
import secrets
from collections.abc import Callable
from typing import Any

import mlx.core as mx
from mlx_lm.sample_utils import make_logits_processors, make_sampler

from workbench.engine.errors import InvalidRequestError
from workbench.engine.types import SamplingParams, TokenLogprob

_GOLDEN = 0x9E3779B97F4A7C15  # spreads (seed, step) pairs over the 64-bit seed space


def _seeded(sampler: Callable[[mx.array], mx.array], seed: int) -> Callable[[mx.array], mx.array]:
    """Re-seed MLX's RNG from (seed, step) before each draw, so a seeded request
    reproduces even when other streams draw random numbers in between."""
    steps = itertools.count()

    def sample(logprobs: mx.array) -> mx.array:
        mx.random.seed((seed * _GOLDEN + next(steps)) % 2**64)
        return sampler(logprobs)

    return sample


def build_sampling(
    params: SamplingParams, vocab_size: int
) -> tuple[Callable[[mx.array], mx.array], list[Any], int | None]:
    """mlx-lm sampler + logits processors for `params`; returns the seed actually used."""
    for token, _ in params.logit_bias:
        if token >= vocab_size:
            raise InvalidRequestError(
                f"logit_bias: token id {token} is outside the vocabulary (size {vocab_size})",
                param="logit_bias",
            )
    processors = make_logits_processors(
        logit_bias=dict(params.logit_bias) or None,
        repetition_penalty=params.repetition_penalty if params.repetition_penalty != 1.0 else None,
        repetition_context_size=params.repetition_context_size,
        presence_penalty=params.presence_penalty or None,
        presence_context_size=params.repetition_context_size,
        frequency_penalty=params.frequency_penalty or None,
        frequency_context_size=params.repetition_context_size,
    )
    sampler = make_sampler(
        temp=params.temperature,
        top_p=params.top_p if params.top_p < 1.0 else 0.0,
        min_p=params.min_p,
        # A top_k of the whole vocabulary or more keeps every token, which is no top-k at
        # all; mlx-lm raises (at the first sampled token) instead of saying so.
        top_k=params.top_k if params.top_k < vocab_size else 0,
    )
    if params.greedy:
        return sampler, processors, None
    seed = params.seed if params.seed is not None else secrets.randbits(63)
    return _seeded(sampler, seed), processors, seed


def token_logprob(tokenizer: Any, token: int, logprobs: mx.array, top_n: int) -> TokenLogprob:
    top: tuple[tuple[int, str, float], ...] = ()
    if top_n > 0:
        idx = mx.argpartition(-logprobs, kth=top_n - 1)[:top_n]
        pairs = sorted(zip(idx.tolist(), logprobs[idx].tolist(), strict=True), key=lambda p: -p[1])
        # Tokens a grammar forbids have logprob -inf: not alternatives (nor valid JSON).
        top = tuple((i, tokenizer.decode([i]), float(v)) for i, v in pairs if math.isfinite(v))
    chosen = float(logprobs[token].item())
    # Extreme sampling settings (a repetition penalty near 0) can push logits past float range:
    # reported as OpenAI reports an impossible token, never as a number JSON cannot carry.
    return TokenLogprob(token, tokenizer.decode([token]), chosen if math.isfinite(chosen) else -9999.0, top)
