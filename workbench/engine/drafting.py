"""Speculative decoding of one generation on the engine thread: drafters (prompt lookup, a draft
model), one verify pass per step with the KV cache rewound past rejected drafts, and the throttle
that pauses drafting while drafts fail. Knows mlx and mlx-lm; no queues or HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import mlx.core as mx
from mlx_lm.models.cache import can_trim_prompt_cache, make_prompt_cache, trim_prompt_cache

from workbench.config_parsers import speculation_parts
from workbench.engine.cache_miss import CacheMiss
from workbench.engine.errors import InvalidRequestError, ModelNotFoundError
from workbench.engine.prompt_cache import PromptStore, prefill
from workbench.engine.speculation import Speculation

NGRAM_MAX = 3  # the longest context suffix prompt lookup matches (then shorter ones)
PREFILL_STEP = 512  # the draft model's prompt chunks
WINDOW = 4  # drafting steps the throttle judges at a time
MIN_ACCEPTED = 0.25  # of the drafted tokens in a window; below it drafting pauses
PAUSE_STEPS = (8, 256)  # the first pause, in decode steps, doubling up to the last


class Drafter(Protocol):
    def propose(self, history: list[int], k: int) -> list[int]:
        """Up to `k` tokens likely to follow `history` (the prompt and the output so far)."""
        ...


class PromptLookup:
    """Drafts by n-gram lookup in the context: for n = NGRAM_MAX..1, the tokens that followed
    the latest earlier occurrence of the context's last n tokens. An index of every n-gram's
    latest position, extended as the context grows, keeps each proposal O(NGRAM_MAX)."""

    def __init__(self) -> None:
        self.index: dict[tuple[int, ...], int] = {}
        self.indexed = 0  # history[:indexed] has its n-grams (each followed by a token) indexed

    def propose(self, history: list[int], k: int) -> list[int]:
        for end in range(max(self.indexed, 1), len(history)):  # the n-grams that end before `end`
            for n in range(1, min(NGRAM_MAX, end) + 1):
                self.index[tuple(history[end - n : end])] = end - n
        self.indexed = max(self.indexed, len(history))
        for n in range(min(NGRAM_MAX, len(history)), 0, -1):
            start = self.index.get(tuple(history[-n:]))
            if start is not None:
                return history[start + n : start + n + k]
        return []


class DraftModel:
    """Drafts greedily with a small model, its KV cache kept in step with the accepted tokens."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.cache = make_prompt_cache(model)
        self.seen: list[int] = []  # the tokens in self.cache

    def propose(self, history: list[int], k: int) -> list[int]:
        if k < 1:
            return []
        common = 0
        for a, b in zip(self.seen, history, strict=False):
            if a != b:
                break
            common += 1
        common = min(common, len(history) - 1)  # the last token is fed again for its logits
        if len(self.seen) > common:
            trim_prompt_cache(self.cache, len(self.seen) - common)
        feed, drafts = history[common:], []
        self.seen = list(history)
        for i in range(0, len(feed) - 1, PREFILL_STEP):
            self.model(mx.array(feed[i : min(i + PREFILL_STEP, len(feed) - 1)])[None], cache=self.cache)
        y = feed[-1:]
        for _ in range(k):
            logits = self.model(mx.array(y)[None], cache=self.cache)
            y = [int(mx.argmax(logits[0, -1]).item())]
            drafts.append(y[0])
        self.seen += drafts[:-1]  # the last draft is not in the cache yet
        return drafts


@dataclass
class SpecCounts:
    """What speculation did for one generation: tokens drafted, drafts accepted, forward passes."""

    label: str = ""
    cached: int = 0  # prompt tokens the prompt cache supplied
    miss: CacheMiss | None = None  # why not more (prompt_cache.CacheMiss)
    drafted: int = 0
    accepted: int = 0
    steps: int = 0

    def stats(self) -> dict[str, Any]:
        """GenerationStats' speculation fields."""
        return {
            "speculative": self.label,
            "draft_tokens": self.drafted,
            "accepted_tokens": self.accepted,
            "decode_steps": self.steps,
        }


class Throttle:
    """The adaptive off-switch: after WINDOW drafting steps that kept under MIN_ACCEPTED of their
    drafts, drafting pauses (8 steps, then twice as long each time, up to 256)."""

    def __init__(self) -> None:
        self.window: list[tuple[int, int]] = []
        self.paused_for = 0
        self.next_pause = PAUSE_STEPS[0]

    def drafting(self) -> bool:
        if self.paused_for > 0:
            self.paused_for -= 1
            return False
        return True

    def record(self, drafted: int, accepted: int) -> None:
        if drafted == 0:
            return
        self.window.append((drafted, accepted))
        if len(self.window) < WINDOW:
            return
        total, good = (sum(w) for w in zip(*self.window, strict=True))
        self.window.clear()
        if good < MIN_ACCEPTED * total:
            self.paused_for, self.next_pause = self.next_pause, min(2 * self.next_pause, PAUSE_STEPS[1])
        else:
            self.next_pause = PAUSE_STEPS[0]


def trimmable(model: Any) -> bool:
    """Whether the model's KV cache can be rewound (speculation needs it)."""
    return can_trim_prompt_cache(make_prompt_cache(model))


def speculative_steps(
    model: Any,
    prompt: Sequence[int],
    drafter: Drafter,
    *,
    draft_tokens: int,
    max_tokens: int,
    sampler: Callable[[mx.array], mx.array],
    processors: Sequence[Any],
    counts: SpecCounts,
    store: PromptStore | None = None,
    prefill_step: int = 2048,
) -> Iterator[tuple[int, mx.array] | None]:
    """(token, logprobs) like mlx-lm's generate_step, several per forward pass when drafts
    hold, and None after each `prefill_step` chunk of the prompt (the worker steps the other
    streams then); `counts` follows along. `store` supplies the longest cached prefix of the
    prompt and keeps the KV cache at the end."""
    history = list(prompt)
    cache, start, counts.miss = store.reuse(history) if store else (None, 0, CacheMiss("off"))
    if cache is None or not can_trim_prompt_cache(cache):
        cache, start = make_prompt_cache(model), 0
    counts.cached = start
    yield from prefill(model, cache, history, start, len(history) - 1, prefill_step)
    try:
        yield from _verify_loop(
            model, cache, history, drafter, draft_tokens, max_tokens, sampler, processors, counts
        )
    finally:
        # Kept for the next request: the cache of every token but the last one handed out
        # (drafts accepted past a stop the consumer saw are trimmed).
        excess = cache[0].offset - (len(history) - 1)
        if store is not None and len(history) > 1 and excess >= 0:
            trim_prompt_cache(cache, excess)
            store.keep(history[:-1], cache)


def _verify_loop(
    model: Any,
    cache: list[Any],
    history: list[int],
    drafter: Drafter,
    draft_tokens: int,
    max_tokens: int,
    sampler: Callable[[mx.array], mx.array],
    processors: Sequence[Any],
    counts: SpecCounts,
) -> Iterator[tuple[int, mx.array]]:
    """Draft, verify in one pass, keep the accepted prefix and the model's own token, rewind."""
    throttle, made = Throttle(), 0
    while made < max_tokens:
        room = max_tokens - made
        drafts = (
            drafter.propose(history, min(draft_tokens, room - 1)) if room > 1 and throttle.drafting() else []
        )
        inputs = [history[-1], *drafts]
        logits = model(mx.array(inputs)[None], cache=cache)[0]
        tokens, logprobs = _sample(logits, history, drafts, sampler, processors)
        accepted = 0
        while accepted < len(drafts) and tokens[accepted] == drafts[accepted]:
            accepted += 1
        if len(drafts) > accepted:
            trim_prompt_cache(cache, len(drafts) - accepted)
        throttle.record(len(drafts), accepted)
        counts.drafted, counts.accepted, counts.steps = (
            counts.drafted + len(drafts),
            counts.accepted + accepted,
            counts.steps + 1,
        )
        for i in range(accepted + 1):
            history.append(tokens[i])
            made += 1
            yield tokens[i], logprobs[i]


def _sample(
    logits: mx.array,
    history: list[int],
    drafts: list[int],
    sampler: Callable[[mx.array], mx.array],
    processors: Sequence[Any],
) -> tuple[list[int], mx.array]:
    """The model's own choice at every position of one verify pass, and its logprobs."""
    if not processors:  # every position at once
        logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        return sampler(logprobs).tolist(), logprobs
    chosen, rows = [], []
    for i in range(logits.shape[0]):  # each position sees the tokens before it
        row = logits[i : i + 1]
        context = mx.array([*history, *drafts[:i]])
        for processor in processors:
            row = processor(context, row)
        row = row - mx.logsumexp(row, axis=-1, keepdims=True)
        chosen.append(int(sampler(row).item()))
        rows.append(row[0])
    return chosen, mx.stack(rows)


PROBE = "Speculative decoding: def f(x):\n    return {'a': [1, 2.5]}  # é ✓"


def same_tokenizer(a: Any, b: Any) -> bool:
    """Whether two tokenizers give the same ids (vocabulary size, a probe text, end tokens)."""
    return (
        a.vocab_size == b.vocab_size
        and list(a.encode(PROBE)) == list(b.encode(PROBE))
        and set(a.eos_token_ids) == set(b.eos_token_ids)
    )


def pick_speculation(
    request: Any,
    default: str,
    lm: Any,
    registry: Any,
    load: Callable[[str], tuple[Any, float | None]],
) -> tuple[Speculation, Any] | None:
    """The speculation `request` runs with (its own, else the server's `default`, a
    WORKBENCH_SPECULATIVE value) and, for mode
    draft, the draft model (a registered id in `registry`: never a path or hub id) loaded through
    `load`; None when off, and for a request under a grammar (it stays in the batch: the grammar's
    matcher advances per drawn token, which a rejected draft would corrupt). A draft model that is
    not registered or has another tokenizer is an InvalidRequestError (400)."""
    spec = (
        request.speculative if request.speculative is not None else Speculation(*speculation_parts(default))
    )  # type: ignore[arg-type]
    if not spec.on or request.constraint is not None:
        return None
    if spec.mode != "draft":
        return spec, None
    assert spec.draft_model is not None
    param = "speculative.draft_model"
    try:
        draft, _ = load(registry.resolve(spec.draft_model, scope="registered").id)
    except ModelNotFoundError as exc:
        raise InvalidRequestError(f"{param}: {exc}", param=param) from None
    if not same_tokenizer(draft.tokenizer, lm.tokenizer):
        raise InvalidRequestError(
            f"{param}: {draft.entry.id!r} has another tokenizer than {lm.entry.id!r} (vocabulary of "
            f"{draft.tokenizer.vocab_size} vs {lm.tokenizer.vocab_size} tokens, or other ids for the same "
            "text): a draft model must share the model's tokenizer (a smaller model of the same family)",
            param=param,
        )
    return spec, draft
