"""PrefillBudget: how many prompt tokens the batch processes in its next step, so that while
streams decode a step's prompt work takes about `share` decode steps; no mlx."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MIN_CHUNK = 4  # below this a chunk's fixed cost (every layer, once) outweighs its tokens


@dataclass
class PrefillBudget:
    """`most` tokens per prompting sequence per step (the prefill step); while streams decode and
    a prompt longer than that is processed, fewer: `share` x a decode step's time (smoothed) over
    the last measured cost per prompt token (which grows with the context's depth), at least
    MIN_CHUNK. share 0: always `most`."""

    most: int
    share: float = 1.0
    decode_s: float | None = None
    token_s: float | None = None

    def observe(self, prompt_tokens: int, prompt_s: float, decode_steps: int, decode_s: float) -> None:
        """What the last step did (mlx-lm's BatchStats of it)."""
        if decode_steps and decode_s > 0:
            step = decode_s / decode_steps
            self.decode_s = step if self.decode_s is None else 0.7 * self.decode_s + 0.3 * step
        if prompt_tokens and prompt_s > 0:
            self.token_s = prompt_s / prompt_tokens

    def size(self, decoding: int, prompts: Sequence[int]) -> int:
        """Tokens per prompting sequence for the next step, with `decoding` streams decoding and
        `prompts` the lengths (uncached) of the prompts being processed. Prompts that fit one
        chunk go in one step as they are (short prompts arriving under load: cutting them only
        idles their slots); a longer one is cut while others decode."""
        if not self.share or not decoding or not prompts or max(prompts) <= self.most:
            return self.most
        if self.decode_s is None or self.token_s is None:
            return self.most
        tokens = self.share * self.decode_s / self.token_s / len(prompts)
        return max(MIN_CHUNK, min(self.most, int(tokens)))
