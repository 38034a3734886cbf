"""The prompt cache: mlx-lm's LRUPromptCache that remembers what it evicted, so it can say why a
prompt did not reuse more of it (a cache_miss.CacheMiss); `PromptStore`, one generation's use of
it and of the disk tier."""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import mlx.core as mx
from mlx_lm.models.cache import LRUPromptCache, can_trim_prompt_cache, trim_prompt_cache

from workbench.engine.cache_miss import CacheMiss, common_prefix
from workbench.engine.disk_cache import DiskTier
from workbench.engine.memory import GB

EVICTED_KEPT = 32  # evicted token sequences remembered, to say "evicted" rather than "no entry"
AROUND = 4  # tokens of text shown either side of the first differing token


class ExplainedPromptCache(LRUPromptCache):
    """LRUPromptCache that keeps the last evicted sequences (with the bound that dropped them)
    and explains a fetch: `explain` after `fetch_nearest_cache`."""

    def __init__(self, max_size: int, max_bytes: int) -> None:
        super().__init__(max_size, max_bytes)
        self.evicted: deque[tuple[Any, array, str]] = deque(maxlen=EVICTED_KEPT)

    def entries(self, model: Any) -> list[list[int]]:
        """The token sequences cached for `model`."""
        return [tokens for lru in self._lru._lrus.values() for m, tokens in lru if m == model]

    def insert_cache(self, model: Any, tokens: list[int], prompt_cache: list[Any], **kw: Any) -> None:
        before = [(m, t) for lru in self._lru._lrus.values() for m, t in lru]
        super().insert_cache(model, tokens, prompt_cache, **kw)
        kept = {id(t) for lru in self._lru._lrus.values() for _, t in lru}
        gone = [(m, t) for m, t in before if id(t) not in kept and t is not tokens]
        # A shorter prefix of the new sequence is superseded by it, not evicted.
        dropped = [(m, t) for m, t in gone if not (m == model and common_prefix(t, tokens) == len(t))]
        over_count = len(before) + 1 - (len(gone) - len(dropped)) > self.max_size
        for i, (m, t) in enumerate(dropped):
            bound = (
                f"max entries ({self.max_size})"
                if i == 0 and over_count
                else f"max bytes ({self.max_bytes / GB:.2f} GB)"
            )
            self.evicted.append((m, array("l", t), bound))

    def explain(
        self, model: Any, prompt: Sequence[int], cached: int, decode: Callable[[list[int]], str]
    ) -> CacheMiss | None:
        """Why `cached` tokens of `prompt` came from the cache and not more; None when every
        token the cache knows of for this prompt was reused (the rest is new)."""
        usable = len(prompt) - 1  # the last prompt token always runs
        live = max(((common_prefix(t, prompt), t) for t in self.entries(model)), default=(0, []))
        gone = max(((common_prefix(t, prompt), b) for m, t, b in self.evicted if m == model), default=(0, ""))
        shared, entry = live
        if gone[0] > max(shared, cached) and cached < usable:
            return CacheMiss("evicted", at=min(gone[0], usable), bound=gone[1])
        if 0 < shared < len(entry) and shared < usable:
            lo, hi = max(0, shared - AROUND), shared + AROUND
            return CacheMiss(
                "diverged",
                at=shared,
                cached_text=decode(list(entry[lo:hi])),
                prompt_text=decode(list(prompt[lo:hi])),
            )
        if cached == 0 and usable > 0:
            return CacheMiss("no_entry")
        return None


@dataclass(frozen=True)
class PromptStore:
    """The prompt cache as one generation uses it: the cache, the key its entries are under (the
    model id; with the KV storage's label for a quantized cache) and the tokenizer's decode."""

    cache: ExplainedPromptCache
    key: str
    decode: Callable[[list[int]], str]
    disk: DiskTier | None = None  # the disk tier, under `disk_key` (the key and where the weights are)
    disk_key: str = ""

    def reuse(self, prompt: Sequence[int]) -> tuple[list[Any] | None, int, CacheMiss | None]:
        """A KV cache of the longest cached prefix of `prompt` (None: nothing cached), how many
        tokens it holds (never all: the last prompt token must run for its logits), and why no more."""
        prompt = list(prompt)
        kv, rest = self.cache.fetch_nearest_cache(self.key, prompt)
        if kv is not None and not rest:  # an exact hit: rewind one token
            if can_trim_prompt_cache(kv):
                trim_prompt_cache(kv, 1)
                rest = prompt[-1:]
            else:
                kv, rest = None, prompt
        cached = len(prompt) - len(rest)
        if self.disk is not None:  # a longer prefix on disk (from before a restart, or evicted here)
            entry, length = self.disk.best(self.disk_key, prompt)
            if entry is not None and length > cached and (loaded := self.disk.load(entry, length)):
                kv, cached = loaded, length
        return kv, cached, self.cache.explain(self.key, prompt, cached, self.decode)

    def keep(self, tokens: Sequence[int], kv: list[Any]) -> None:
        """Remember `kv`, the KV cache of `tokens`, evaluated first: a cache taken out of a batch
        is a lazy slice of the whole batch's buffers, which it would otherwise pin (every
        sequence's rows, padded) while the byte bound counts only its own rows."""
        mx.eval([c.state for c in kv])
        self.cache.insert_cache(self.key, list(tokens), kv)
        if self.disk is not None:
            self.disk.put(self.disk_key, tokens, kv)


def prefill(
    model: Any,
    cache: list[Any],
    tokens: Sequence[int],
    start: int,
    end: int,
    step: int,
    after: Callable[[list[Any]], None] | None = None,
) -> Iterator[None]:
    """Run tokens[start:end] through `model` into `cache`, `step` tokens at a time (`after` sees
    the cache after each chunk, before it is evaluated); None after each chunk."""
    for i in range(start, end, step):
        model(mx.array(list(tokens[i : min(i + step, end)]))[None], cache=cache)
        if after is not None:
            after(cache)
        mx.eval([c.state for c in cache])
        yield None
