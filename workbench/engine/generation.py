"""One generation on the engine thread: prompt rendering and checks, mlx-lm sampling, stop strings,
cancellation, and the final chunk with its stats (built here only). Knows no queues or HTTP."""

from __future__ import annotations

import itertools
import math
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx
from jinja2 import TemplateError
from mlx_lm.generate import generate_step
from mlx_lm.sample_utils import make_logits_processors, make_sampler

from workbench.config import Settings
from workbench.engine import memory
from workbench.engine.errors import ContextLengthError, InvalidRequestError
from workbench.engine.models.registry import LoadedModel
from workbench.engine.reasoning import ThinkBudget, thinking_of
from workbench.engine.reply_text import ReplyText
from workbench.engine.streams import StreamState
from workbench.engine.types import (
    Chunk,
    Constraint,
    FinishReason,
    GenerationRequest,
    GenerationStats,
    SamplingParams,
    TokenLogprob,
)

GB = 1e9
_GOLDEN = 0x9E3779B97F4A7C15  # spreads (seed, step) pairs over the 64-bit seed space


def render_prompt(
    tokenizer: Any, request: GenerationRequest, *, constrained: bool | None = None
) -> list[int]:
    """Token ids for the request: chat messages through the model's template, a raw
    prompt through the tokenizer, or the given ids."""
    if request.prompt_ids is not None:
        return list(request.prompt_ids)
    if request.prompt is not None:
        return list(tokenizer.encode(request.prompt))
    assert request.messages is not None
    if not getattr(tokenizer, "has_chat_template", False):
        raise InvalidRequestError(
            "this model has no chat template; send a raw prompt instead of messages",
            param="messages",
        )
    messages = [{"role": m.role, "content": m.content} for m in request.messages]
    # A constrained reply is the answer itself: templates that can skip their thinking do.
    if constrained is None:
        constrained = request.constraint is not None
    skip = request.think is False or constrained
    options = {"enable_thinking": False} if skip and getattr(tokenizer, "has_thinking", False) else {}
    try:
        if request.tools:
            from workbench.engine.structured.tools import with_tools

            ids = with_tools(tokenizer, messages, request.tools, request.tool_choice, **options)
        else:
            ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, **options)
    except TemplateError as exc:
        raise InvalidRequestError(
            f"the chat template rejected the messages: {exc}", param="messages"
        ) from exc
    if isinstance(ids, dict) or hasattr(ids, "input_ids"):
        ids = ids["input_ids"]
    prefill = tokenizer.encode(request.prefill, add_special_tokens=False) if request.prefill else []
    return [*ids, *prefill]


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


@dataclass
class Timeline:
    """When one generation started, made its first token and its last, and how many."""

    start: float = field(default_factory=time.perf_counter)
    first_at: float = 0.0
    last_at: float = 0.0
    count: int = 0

    def token(self) -> None:
        """A token came out now."""
        self.last_at = time.perf_counter()
        if self.count == 0:
            self.first_at = self.last_at
        self.count += 1


def final_chunk(
    model_id: str,
    state: StreamState,
    finish: FinishReason,
    timeline: Timeline,
    *,
    prompt_tokens: int = 0,
    text: ReplyText | None = None,
    seed: int | None = None,
    load_s: float | None = None,
    cached: int = 0,
    batch_size: int = 1,
    reasoning_tokens: int = 0,
) -> Chunk:
    """The last chunk of a generation (alone, batched or cancelled before it started): the
    text that `text` still holds, and the GenerationStats (built here only)."""
    tail, reasoning, stop, calls = "", "", None, ()
    if text is not None:
        tail, reasoning, calls = text.finish()
        finish, stop = ("stop", text.stop_sequence) if text.stop_hit else (finish, None)
    now, count = time.perf_counter(), timeline.count
    ttft = timeline.first_at - timeline.start if count else now - timeline.start
    decode_s = timeline.last_at - timeline.first_at
    stats = GenerationStats(
        model=model_id,
        prompt_tokens=prompt_tokens,
        generation_tokens=count,
        ttft_s=ttft,
        prompt_tps=(prompt_tokens - cached) / ttft if count and ttft > 0 else 0.0,
        generation_tps=(count - 1) / decode_s if count > 1 and decode_s > 0 else 0.0,
        peak_memory_gb=memory.peak_bytes() / GB,
        finish_reason=finish,
        total_s=now - state.queued_at,
        queue_s=state.started_at - state.queued_at,
        load_s=load_s,
        seed=seed,
        concurrent_streams=state.max_concurrency,
        stop_sequence=stop,
        cached_tokens=cached,
        batch_size=batch_size,
        reasoning_tokens=reasoning_tokens,
    )
    return Chunk(text=tail, stats=stats, reasoning=reasoning, calls=calls)


def cancelled_before_start(model_id: str, state: StreamState) -> Chunk:
    """The final chunk of a request cancelled before any work was done for it."""
    return final_chunk(model_id, state, "cancelled", Timeline())


@dataclass(frozen=True)
class Prepared:
    """A request made ready for the model: its prompt ids, room to generate, how to
    sample, and which tokens end it."""

    prompt: list[int]
    max_tokens: int
    sampler: Callable[[mx.array], mx.array]
    processors: list[Any]
    seed: int | None
    eos: frozenset[int]
    thinking: tuple[str, str, bool] | None = None  # the model's thinking markers, and open at start
    budget: ThinkBudget | None = None  # counts (and bounds) the reasoning tokens
    native: str | None = None  # the template's tool-call dialect, parsed from the text (auto)

    def reasoning_tokens(self) -> int:
        return self.budget.spent if self.budget is not None else 0

    def calls(self, request: GenerationRequest) -> tuple[str, Sequence[Any]] | None:
        """(dialect, tools) for ReplyText when the calls come in the template's own format."""
        return (self.native, request.tools) if self.native else None


@dataclass(frozen=True)
class ReplyLimits:
    """The server's rules for a reply's length (WORKBENCH_MAX_TOKENS, WORKBENCH_MAX_OUTPUT_TOKENS):
    a max_tokens past the context's room is cut to it (`clamp`) or refused; no reply
    generates more than `max_output_tokens` (None: up to the context), whatever it asks."""

    clamp: bool = True
    max_output_tokens: int | None = None

    @classmethod
    def of(cls, settings: Settings) -> ReplyLimits:
        return cls(settings.max_tokens_policy == "clamp", settings.max_output_tokens or None)


def prepare(lm: LoadedModel, request: GenerationRequest, limits: ReplyLimits = ReplyLimits()) -> Prepared:
    """Render and check `request` for `lm` (the context window, the vocabulary, the
    sampling parameters); raises InvalidRequestError / ContextLengthError. A max_tokens
    past the context's room is cut to the room (the generation then stops with 'length'
    when the context is full) or refused, as `limits` say; so is one past the server's cap."""
    tokenizer = lm.tokenizer
    prompt, native, constraint, thinking, budget = prompt_of(lm, request)
    context = lm.context_length
    sizes = {"n_prompt_tokens": len(prompt), "n_ctx": context}
    if len(prompt) >= context:
        over = len(prompt) - context + 1  # at least one token must be left to generate
        raise ContextLengthError(
            f"the prompt is {len(prompt)} tokens, {over} more than {lm.entry.id!r} can take (a context "
            f"of {context} tokens, one of them for the reply): shorten the conversation (drop or "
            "summarize early turns, trim long tool results) or use a model with a longer context",
            param=next(n for n in ("messages", "prompt", "prompt_ids") if getattr(request, n) is not None),
            **sizes,
        )
    room = context - len(prompt)
    if request.max_tokens is not None and request.max_tokens > room and not limits.clamp:
        raise ContextLengthError(
            f"the prompt is {len(prompt)} tokens and max_tokens is {request.max_tokens}: "
            f"{len(prompt) + request.max_tokens} tokens, more than {lm.entry.id!r} holds (a context of "
            f"{context} tokens); ask for at most {room} tokens, or shorten the prompt (with "
            "WORKBENCH_MAX_TOKENS=clamp the reply would stop when the context is full instead)",
            param="max_tokens",
            **sizes,
        )
    max_tokens = room if request.max_tokens is None else min(request.max_tokens, room)
    if limits.max_output_tokens is not None:
        max_tokens = min(max_tokens, limits.max_output_tokens)
    vocab_size = lm.vocab_size
    if max(prompt) >= vocab_size:
        raise InvalidRequestError(
            f"prompt_ids: token id {max(prompt)} is outside the vocabulary (size {vocab_size})",
            param="prompt_ids",
        )
    sampler, processors, seed = build_sampling(request.sampling, vocab_size)
    if budget is not None:
        processors = [*processors, budget]
    if constraint is not None:
        from workbench.engine.structured.constrain import grammar_processor

        forbid = frozenset(tokenizer.eos_token_ids) if request.ignore_eos else frozenset()
        processor = grammar_processor(lm, constraint, vocab_size, forbid)
        processors = [*processors, processor]  # last: masks the others
    eos = frozenset() if request.ignore_eos else frozenset(tokenizer.eos_token_ids)
    return Prepared(prompt, max_tokens, sampler, processors, seed, eos, thinking, budget, native)


def prompt_of(
    lm: LoadedModel, request: GenerationRequest
) -> tuple[list[int], str | None, Constraint | None, tuple[str, str, bool] | None, ThinkBudget | None]:
    """The prompt ids exactly as the generation sees them, with what decided them: the native
    tool dialect (if any), the constraint that applies, the thinking markers and budget."""
    native = native_dialect(lm, request)
    constraint = None if native else request.constraint
    prompt = render_prompt(lm.tokenizer, request, constrained=constraint is not None)
    if not prompt:
        raise InvalidRequestError("the prompt encodes to no tokens", param="prompt")
    thinking, budget = _thinking(lm.tokenizer, prompt, request, constraint)  # may close it in the prompt
    return prompt, native, constraint, thinking, budget


def native_dialect(lm: LoadedModel, request: GenerationRequest) -> str | None:
    """The template's own tool-call dialect when a request offers tools under 'auto' to a model
    whose template renders them (Qwen2.5 / Hermes, Mistral, ...): the model answers in its own
    format, unconstrained, and mlx-lm's parser reads the calls. 'required' or a named tool
    keep the JSON-line grammar (structured/tools.py), which guarantees the calls' shape."""
    auto = request.tools and request.tool_choice == "auto"
    if not auto or request.constraint is None or request.constraint.param != "tools":
        return None
    from workbench.engine.models.registry import tool_dialect
    from workbench.engine.structured.tools import renders_tools

    dialect = tool_dialect(lm.tokenizer)
    if dialect is None:
        return None
    if lm.renders_tools is None:
        lm.renders_tools = renders_tools(lm.tokenizer)
    return dialect if lm.renders_tools else None


def _thinking(
    tokenizer: Any, prompt: list[int], request: GenerationRequest, constraint: Constraint | None
) -> tuple[tuple[str, str, bool] | None, ThinkBudget | None]:
    """The thinking markers (and whether the prompt left the section open) and the budget
    processor of a model whose template has a thinking section; (None, None) otherwise. A
    constrained or tool-calling reply never starts inside the section: the prompt closes it."""
    thinking = thinking_of(tokenizer, prompt)
    if thinking is None:
        return None, None
    start, end, opened = thinking
    if opened and (constraint is not None or request.think is False):
        prompt.extend(tokenizer.think_end_tokens)
        opened = False
    budget = ThinkBudget(
        tuple(tokenizer.think_start_tokens),
        tuple(tokenizer.think_end_tokens),
        request.reasoning_budget,
        open=opened,
    )
    return (start, end, opened), budget


def stream_chunks(
    lm: LoadedModel,
    request: GenerationRequest,
    state: StreamState,
    *,
    load_s: float | None = None,
    limits: ReplyLimits = ReplyLimits(),
) -> Iterator[Chunk]:
    """Generate for `request` on the loaded model, alone (mlx-lm's generate_step; the
    scheduler batches instead); the last chunk carries the stats. `limits`: see prepare."""
    timeline = Timeline()
    tokenizer = lm.tokenizer
    ready = prepare(lm, request, limits)
    reply = ReplyText(tokenizer, request.stop, ready.thinking, ready.calls(request))
    if state.started_idle:
        memory.reset_peak()
    finish: FinishReason = "length"
    if state.cancel.cancelled:
        finish = "cancelled"
    else:
        steps = generate_step(
            mx.array(ready.prompt),
            lm.model,
            max_tokens=ready.max_tokens,
            sampler=ready.sampler,
            logits_processors=ready.processors,
        )
        try:
            for token, logprobs in steps:
                timeline.token()
                if token in ready.eos:
                    finish = "stop"
                    break
                text, reasoning, calls = reply.push(token)
                logprob = None
                if request.logprobs is not None:
                    logprob = token_logprob(tokenizer, token, logprobs, request.logprobs)
                yield Chunk(text=text, token_id=token, logprob=logprob, reasoning=reasoning, calls=calls)
                if reply.stop_hit or state.cancel.cancelled:
                    finish = "stop" if reply.stop_hit else "cancelled"
                    break
        finally:
            steps.close()
    yield final_chunk(
        lm.entry.id,
        state,
        finish,
        timeline,
        prompt_tokens=len(ready.prompt),
        text=reply,
        seed=ready.seed,
        load_s=load_s,
        reasoning_tokens=ready.reasoning_tokens(),
    )
