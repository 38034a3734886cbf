"""Anthropic Messages wire models for /v1/messages and /v1/messages/count_tokens:
pydantic with explicit bounds, and the one conversion into an engine GenerationRequest.

Text content only: a block, tool or option we cannot honour is rejected with a 400
that names it; `metadata` only describes the caller and is accepted; unknown fields
are accepted and logged. Knows no HTTP or engine thread.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import Field

from api.errors import ApiError, unsupported
from api.protocol_openai import WireModel
from workbench.engine import GenerationRequest, Message, SamplingParams
from workbench.engine.types import MAX_STOP_STRINGS

log = logging.getLogger(__name__)

ANTHROPIC_DEFAULT_TEMPERATURE = 1.0  # Anthropic's documented default; send 0 for greedy


class ContentBlock(WireModel):
    """One block of `content` or `system`; only `text` blocks are supported."""

    type: str
    text: str | None = None
    cache_control: dict[str, Any] | None = None  # a prompt-caching hint: accepted, no effect
    citations: list[Any] | None = None  # only meaningful on replies; accepted when null or empty

    def to_text(self, where: str) -> str:
        if self.type == "image":
            raise unsupported(
                where,
                "image content blocks are not supported: this server runs text-only models; "
                "send text blocks (or a string) instead",
            )
        if self.type != "text":
            raise unsupported(where, f"content block type {self.type!r} is not supported (only 'text')")
        if self.text is None:
            raise ApiError(400, f"{where}.text: required for a text block", param=f"{where}.text")
        if self.citations:
            raise unsupported(f"{where}.citations", "citations are not supported")
        return self.text


def _text_of(content: str | list[ContentBlock], where: str) -> str:
    if isinstance(content, str):
        return content
    return "".join(block.to_text(f"{where}.{j}") for j, block in enumerate(content))


class AnthropicMessage(WireModel):
    role: Literal["user", "assistant"]
    content: str | list[ContentBlock]


class Metadata(WireModel):
    user_id: str | None = Field(None, max_length=256)


class Thinking(WireModel):
    type: str


class OutputConfig(WireModel):
    effort: str | None = None  # how hard a reasoning model should think: no effect here (logged)
    format: dict[str, Any] | None = None


class MessagesBase(WireModel):
    """Fields that define the prompt, shared by create and count_tokens."""

    model: str = Field(min_length=1, max_length=1024)
    messages: list[AnthropicMessage] = Field(min_length=1, max_length=4096)
    system: str | list[ContentBlock] | None = None
    # Known Anthropic parameters we cannot honour: rejected when they ask for something.
    tools: list[Any] | None = None
    tool_choice: dict[str, Any] | None = None
    thinking: Thinking | None = None
    mcp_servers: list[Any] | None = None
    output_config: OutputConfig | None = None
    cache_control: dict[str, Any] | None = None  # a prompt-caching hint: accepted, no effect

    def check_prompt(self) -> None:
        if self.tools:
            raise unsupported("tools", "tool use is not supported")
        if self.tool_choice is not None and self.tool_choice.get("type") not in ("auto", "none"):
            raise unsupported("tool_choice", "tool use is not supported")
        if self.thinking is not None and self.thinking.type != "disabled":
            raise unsupported("thinking", "extended thinking is not supported")
        if self.mcp_servers:
            raise unsupported("mcp_servers", "MCP servers are not supported")
        if self.output_config is not None and self.output_config.format is not None:
            raise unsupported("output_config.format", "structured output formats are not supported")
        if self.output_config is not None and self.output_config.effort is not None:
            log.info("messages: output_config.effort has no effect on this server's models")
        if self.messages[-1].role == "assistant":
            raise unsupported(
                f"messages.{len(self.messages) - 1}",
                "a final assistant message (prefilling the reply) is not supported; end with a user turn",
            )

    def engine_messages(self) -> tuple[Message, ...]:
        """The system prompt (when given) as the first turn, then the messages as text."""
        self.check_prompt()
        out = []
        if self.system is not None:
            out.append(Message("system", _text_of(self.system, "system")))
        for i, m in enumerate(self.messages):
            out.append(Message(m.role, _text_of(m.content, f"messages.{i}.content")))
        return tuple(out)


class CountTokensRequest(MessagesBase):
    def to_engine_request(self, model_id: str) -> GenerationRequest:
        """The request whose prompt is counted (nothing is generated for it)."""
        return GenerationRequest(messages=self.engine_messages(), model=model_id)


class MessagesRequest(MessagesBase):
    max_tokens: int = Field(ge=1, le=1_000_000)
    stop_sequences: list[str] | None = Field(None, max_length=MAX_STOP_STRINGS)
    temperature: float | None = Field(None, ge=0, le=1)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=0, le=100_000)
    stream: bool = False
    # Describe the caller only: accepted, no effect on generation.
    metadata: Metadata | None = None
    service_tier: str | None = None

    def sampling(self) -> SamplingParams:
        temperature = ANTHROPIC_DEFAULT_TEMPERATURE if self.temperature is None else self.temperature
        top_p = 1.0 if self.top_p is None else self.top_p
        if top_p == 0.0:  # only the most likely token survives: that is greedy decoding
            temperature, top_p = 0.0, 1.0
        return SamplingParams(temperature=temperature, top_p=top_p, top_k=self.top_k or 0)

    def to_engine_request(self, model_id: str) -> GenerationRequest:
        messages = self.engine_messages()
        stops = tuple(self.stop_sequences or ())
        for i, s in enumerate(stops):
            if s == "":
                raise ApiError(400, f"stop_sequences.{i}: must not be empty", param=f"stop_sequences.{i}")
        return GenerationRequest(
            messages=messages,
            model=model_id,
            sampling=self.sampling(),
            max_tokens=self.max_tokens,
            stop=stops,
        )
