"""One generation on the engine thread: prompt rendering and checks, mlx-lm sampling, stop strings,
cancellation, and the final chunk with its stats (built here only). Knows no queues or HTTP."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx
from mlx_lm.generate import generate_step

from workbench.config import Settings
from workbench.engine import memory
from workbench.engine.cache_miss import CacheMiss
from workbench.engine.drafting import DraftModel, PromptLookup, SpecCounts, speculative_steps, trimmable
from workbench.engine.errors import ContextLengthError, InvalidRequestError
from workbench.engine.kv_quant import KVQuant
from workbench.engine.kv_steps import KVRun, kv_key, quantized_steps
from workbench.engine.models.registry import LoadedModel
from workbench.engine.reasoning import ThinkBudget
from workbench.engine.rendering import prompt_of
from workbench.engine.reply_text import ReplyText
from workbench.engine.sampling import build_sampling, token_logprob
from workbench.engine.speculation import Speculation
from workbench.engine.streams import StreamState
from workbench.engine.types import (
    Chunk,
    FinishReason,
    GenerationRequest,
    GenerationStats,
)

GB = 1e9


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
    cache_miss: CacheMiss | None = None,
    batch_size: int = 1,
    reasoning_tokens: int = 0,
    spec: SpecCounts | None = None,
    kv: str = "",
    kv_bytes: int = 0,
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
        cache_miss=cache_miss,
        batch_size=batch_size,
        reasoning_tokens=reasoning_tokens,
        kv_cache=kv,
        kv_cache_gb=kv_bytes / GB,
        **({} if spec is None else spec.stats()),
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


def stream_chunks(
    lm: LoadedModel,
    request: GenerationRequest,
    state: StreamState,
    *,
    load_s: float | None = None,
    limits: ReplyLimits = ReplyLimits(),
    speculation: tuple[Speculation, LoadedModel | None] | None = None,
    kv: KVQuant | None = None,
) -> Iterator[Chunk | None]:
    """Generate for `request` on the loaded model, alone (mlx-lm's generate_step; the
    scheduler batches instead); the last chunk carries the stats. `limits`: see prepare.
    `speculation` (and its draft model, for mode draft) decodes speculatively where it can
    (engine/drafting.py; see speculation_blocker); `kv` (when on) quantizes the KV cache
    (engine/kv_steps.py) instead; both yield None between prompt chunks."""
    timeline = Timeline()
    tokenizer = lm.tokenizer
    ready = prepare(lm, request, limits)
    reply = ReplyText(tokenizer, request.stop, ready.thinking, ready.calls(request))
    if state.started_idle:
        memory.reset_peak()
    finish: FinishReason = "length"
    counts: SpecCounts | KVRun | None = None
    if state.cancel.cancelled:
        finish = "cancelled"
    else:
        spec = speculation if speculation and speculation_blocker(lm, request, ready) is None else None
        steps, counts = _decode(lm, request, ready, spec, kv if kv and kv.on else None)
        try:
            for step in steps:
                if step is None:  # a prompt chunk done: the other streams' turn
                    yield None
                    continue
                token, logprobs = step
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
        cached=counts.cached if counts is not None else 0,
        cache_miss=counts.miss if counts is not None else CacheMiss("off"),
        spec=counts if isinstance(counts, SpecCounts) else None,
        kv=kv.label() if kv else "",
        kv_bytes=counts.nbytes if isinstance(counts, KVRun) else 0,
    )


def speculation_blocker(lm: LoadedModel, request: GenerationRequest, ready: Prepared) -> str | None:
    """Why `request` decodes without speculation although asked (None: it can speculate): a
    grammar or a reasoning budget (their logits processors keep state per drawn token, which a
    rejected draft would corrupt), or a KV cache that cannot be rewound."""
    if request.constraint is not None and not ready.native:
        return "a grammar constrains the reply"
    if ready.budget is not None:
        return "the model's thinking section has a token budget"
    if not trimmable(lm.model):
        return "the model's KV cache cannot be rewound"
    return None


def _decode(
    lm: LoadedModel,
    request: GenerationRequest,
    ready: Prepared,
    speculation: tuple[Speculation, LoadedModel | None] | None,
    kv: KVQuant | None,
) -> tuple[Iterator[tuple[int, mx.array] | None], SpecCounts | KVRun | None]:
    """mlx-lm's generate_step; or, with what they report, speculative steps or a quantized KV
    cache's steps (sharing the model's prompt cache, when it has one and the request uses it)."""
    store = lm.batch.store(request, kv_key(lm.entry.id, kv) if kv else None) if lm.batch else None
    prefill_step = lm.batch.prefill_step if lm.batch else 2048
    if kv is not None:
        run = KVRun()
        steps = quantized_steps(
            lm.model,
            ready.prompt,
            kv,
            max_tokens=ready.max_tokens,
            sampler=ready.sampler,
            processors=ready.processors,
            run=run,
            store=store,
            prefill_step=prefill_step,
        )
        return steps, run
    if speculation is None:
        steps = generate_step(
            mx.array(ready.prompt),
            lm.model,
            max_tokens=ready.max_tokens,
            sampler=ready.sampler,
            logits_processors=ready.processors,
        )
        return steps, None
    spec, draft = speculation
    counts = SpecCounts(label=spec.label())
    drafter = DraftModel(draft.model) if draft is not None else PromptLookup()
    steps = speculative_steps(
        lm.model,
        ready.prompt,
        drafter,
        draft_tokens=spec.tokens,
        max_tokens=ready.max_tokens,
        sampler=ready.sampler,
        processors=ready.processors,
        counts=counts,
        store=store,
        prefill_step=prefill_step,
    )
    return steps, counts
