"""Exact-length benchmark prompts: natural text tokenized by the model's own tokenizer and cut
to the wanted token count, and the hash that names them in rows. Knows the Engine's
tokenize(), nothing of mlx."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from workbench.engine import Engine

# Natural text (not random ids), so attention and the tokenizer see ordinary input.
FILLER = (
    "The history of computing is a story of abstraction. Engineers built machines that "
    "followed instructions, then languages that wrote instructions, then systems that "
    "learned their own. Each layer hid the one below and made the next one possible. "
)


def exact_prompt(engine: Engine, model: str, n_tokens: int) -> list[int]:
    """`n_tokens` token ids of FILLER, repeated as needed, for `model`'s tokenizer."""
    text = FILLER
    ids = engine.tokenize(text, model)
    if not ids:
        raise ValueError(f"{model!r}: its tokenizer gives no tokens for the filler text")
    # Grow the text in one step to (about) the length needed, then top up if short.
    text = FILLER * (n_tokens // len(ids) + 1)
    ids = engine.tokenize(text, model)
    while len(ids) < n_tokens:
        text += FILLER
        ids = engine.tokenize(text, model)
    return ids[:n_tokens]


def prompt_sha(ids: Sequence[int]) -> str:
    """First 16 hex digits of the sha256 of the ids: equal prompts, equal hash."""
    return hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()[:16]
