"""Anthropic reply models (the message, its content blocks, the token count) and the message
built from an engine result: stop_reason / stop_sequence, usage and our `timings`. The same
classes build the replies and document them (stream events: streams.py); knows no HTTP."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import Field
from pydantic.json_schema import SkipJsonSchema

from api.wire import ReplyModel, Timings, omitted, reply_calls, timings
from workbench.engine import Completion, GenerationStats
from workbench.engine.structured.tools import ToolSpec

StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use"]


class TextBlock(ReplyModel):
    type: Literal["text"] = "text"
    text: str


class ThinkingBlock(ReplyModel):
    """The model's thinking section (models whose template has one); `signature` lets a
    client send the block back in the history, where it is left out of the next prompt."""

    type: Literal["thinking"] = "thinking"
    thinking: str
    signature: str


class ToolUseBlock(ReplyModel):
    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: Any = Field(description="the call's arguments: they follow the tool's input_schema")


ContentBlock = Annotated[TextBlock | ThinkingBlock | ToolUseBlock, Field(discriminator="type")]


class MessageUsage(ReplyModel):
    input_tokens: int
    output_tokens: int


class MessageReply(ReplyModel):
    """The message: the whole reply, or (in a stream's message_start) its empty beginning."""

    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    content: list[ContentBlock]
    model: str
    stop_reason: StopReason | None = Field(description="null only in a stream's message_start")
    stop_sequence: str | None = Field(description="the stop sequence that ended the reply, if one did")
    usage: MessageUsage
    timings: Timings | SkipJsonSchema[None] = omitted("not in a stream's message_start")


class TokenCount(ReplyModel):
    input_tokens: int


@dataclass
class MessageHeader:
    """What the body and every event of one response share."""

    model: str
    id: str = field(default_factory=lambda: f"msg_{uuid.uuid4().hex[:24]}")


def stop_reason(stats: GenerationStats, called: bool = False) -> StopReason:
    """`max_tokens` when the limit (or the context) ended the reply, `stop_sequence`
    when one of the request's stop strings did, `tool_use` when it made calls,
    `end_turn` at end-of-sequence."""
    if stats.finish_reason == "length":
        return "max_tokens"
    if stats.stop_sequence is not None:
        return "stop_sequence"
    return "tool_use" if called else "end_turn"


def signature(thinking: str) -> str:
    """A block's signature: a digest of its text (nothing here checks it when it comes back)."""
    return hashlib.sha256(thinking.encode("utf-8")).hexdigest()


def tool_use_id() -> str:
    return f"toolu_{uuid.uuid4().hex[:24]}"


def usage(stats: GenerationStats) -> MessageUsage:
    return MessageUsage(input_tokens=stats.prompt_tokens, output_tokens=stats.generation_tokens)


def message(head: MessageHeader, result: Completion, tools: Sequence[ToolSpec] = ()) -> MessageReply:
    """The whole (non-streaming) reply: a thinking block when the model reasoned, then a text
    block, or (with `tools`) the reply's tool_use blocks when it made calls."""
    text, calls = reply_calls(result, tools)
    content: list[TextBlock | ThinkingBlock | ToolUseBlock] = []
    if result.reasoning:
        content.append(ThinkingBlock(thinking=result.reasoning, signature=signature(result.reasoning)))
    if text.strip() or not calls:
        content.append(TextBlock(text=text))
    for c in calls:
        content.append(ToolUseBlock(id=tool_use_id(), name=c.name, input=c.parsed_arguments()))
    return MessageReply(
        id=head.id,
        content=content,
        model=head.model,
        stop_reason=stop_reason(result.stats, bool(calls)),
        stop_sequence=result.stats.stop_sequence,
        usage=usage(result.stats),
        timings=timings([result.stats]),
    )
