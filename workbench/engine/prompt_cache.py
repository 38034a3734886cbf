"""The prompt cache: mlx-lm's LRUPromptCache that remembers what it evicted, so it can say why a
prompt did not reuse more of it (a cache_miss.CacheMiss)."""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from mlx_lm.models.cache import LRUPromptCache

from workbench.engine.cache_miss import CacheMiss, common_prefix
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
