"""Speculation: how a request asks for speculative decoding (mode prompt_lookup or draft, draft
tokens, draft model), checked, with no mlx import; engine/drafting.py does the decoding."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from workbench.engine.errors import InvalidRequestError

SpeculationMode = Literal["off", "prompt_lookup", "draft"]
MODES: tuple[str, ...] = ("off", "prompt_lookup", "draft")
DEFAULT_DRAFT_TOKENS = {"prompt_lookup": 8, "draft": 3}
MAX_DRAFT_TOKENS = 32


def _fail(field: str, message: str) -> None:
    raise InvalidRequestError(f"speculative.{field}: {message}", param=f"speculative.{field}")


@dataclass(frozen=True)
class Speculation:
    """`mode` (off, prompt_lookup, draft); `draft_tokens` drafted per step (1..32; default 8
    for prompt lookup, 3 for a draft model); `draft_model`, the registered model id that drafts
    (mode draft only; it must share the model's tokenizer)."""

    mode: SpeculationMode = "off"
    draft_tokens: int | None = None
    draft_model: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            _fail("mode", f"must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.draft_tokens is not None:
            n = self.draft_tokens
            if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_DRAFT_TOKENS:
                _fail("draft_tokens", f"must be an integer in [1, {MAX_DRAFT_TOKENS}], got {n!r}")
        if self.mode == "draft" and not (isinstance(self.draft_model, str) and self.draft_model.strip()):
            _fail("draft_model", "mode 'draft' needs the id of a registered model to draft with")
        if self.mode != "draft" and self.draft_model is not None:
            _fail("draft_model", f"is only used by mode 'draft' (mode is {self.mode!r})")

    @property
    def on(self) -> bool:
        return self.mode != "off"

    @property
    def tokens(self) -> int:
        """Tokens drafted per step."""
        return self.draft_tokens or DEFAULT_DRAFT_TOKENS.get(self.mode, 0)

    def label(self) -> str:
        """How rows and stats name it: '' (off), 'prompt_lookup:8', 'draft:<model>:3'."""
        if not self.on:
            return ""
        model = f"{self.draft_model}:" if self.mode == "draft" else ""
        return f"{self.mode}:{model}{self.tokens}"

    @classmethod
    def coerce(cls, value: Any) -> Speculation | None:
        """From an API body's `speculative` field: an object {mode, draft_tokens, draft_model},
        a mode name, true (prompt_lookup), false (off); None stays None (the server default)."""
        if value is None or isinstance(value, Speculation):
            return value
        if isinstance(value, bool):
            return cls("prompt_lookup" if value else "off")
        if isinstance(value, str):
            return cls(value)  # type: ignore[arg-type]
        if not isinstance(value, Mapping):
            raise InvalidRequestError(
                "speculative: must be an object {mode, draft_tokens, draft_model}, a mode name or a boolean",
                param="speculative",
            )
        unknown = set(value) - {"mode", "draft_tokens", "draft_model"}
        if unknown:
            _fail(sorted(unknown)[0], "unknown field (known: mode, draft_tokens, draft_model)")
        mode = value.get("mode", "draft" if value.get("draft_model") else "prompt_lookup")
        return cls(mode, value.get("draft_tokens"), value.get("draft_model"))
