"""Anthropic stream events: their models, and the event sequence of a message built from
engine chunks as they come (content blocks opened and closed, text and tool-input deltas).
Knows no HTTP (api/sse.py frames them, named by `type`) or engine thread."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Annotated, Literal

from pydantic import Field

from api.anthropic.responses import (
    ContentBlock,
    MessageHeader,
    MessageReply,
    MessageUsage,
    StopReason,
    TextBlock,
    ToolUseBlock,
    stop_reason,
    tool_use_id,
    usage,
)
from api.wire import ReplyModel, Timings, timings
from workbench.engine import Chunk, EngineStoppedError, GenerationStats
from workbench.engine.structured.tools import CallSplitter

# ---- event models, in the order they are sent -------------------------------------


class MessageStart(ReplyModel):
    type: Literal["message_start"] = "message_start"
    message: MessageReply


class ContentBlockStart(ReplyModel):
    type: Literal["content_block_start"] = "content_block_start"
    index: int
    content_block: ContentBlock


class Ping(ReplyModel):
    type: Literal["ping"] = "ping"


class TextDelta(ReplyModel):
    type: Literal["text_delta"] = "text_delta"
    text: str


class InputJsonDelta(ReplyModel):
    type: Literal["input_json_delta"] = "input_json_delta"
    partial_json: str


class ContentBlockDelta(ReplyModel):
    type: Literal["content_block_delta"] = "content_block_delta"
    index: int
    delta: Annotated[TextDelta | InputJsonDelta, Field(discriminator="type")]


class ContentBlockStop(ReplyModel):
    type: Literal["content_block_stop"] = "content_block_stop"
    index: int


class StopDelta(ReplyModel):
    stop_reason: StopReason
    stop_sequence: str | None


class MessageDelta(ReplyModel):
    """Why the reply ended, the final (cumulative) usage, and the timings extension."""

    type: Literal["message_delta"] = "message_delta"
    delta: StopDelta
    usage: MessageUsage
    timings: Timings


class MessageStop(ReplyModel):
    type: Literal["message_stop"] = "message_stop"


StreamEvent = (
    MessageStart
    | ContentBlockStart
    | Ping
    | ContentBlockDelta
    | ContentBlockStop
    | MessageDelta
    | MessageStop
)

# ---- builders -------------------------------------------------------------------


def message_start(head: MessageHeader, input_tokens: int) -> MessageStart:
    body = MessageReply(
        id=head.id,
        content=[],
        model=head.model,
        stop_reason=None,
        stop_sequence=None,
        usage=MessageUsage(input_tokens=input_tokens, output_tokens=0),
    )
    return MessageStart(message=body)


def block_start(index: int, tool: str | None = None) -> ContentBlockStart:
    """A text block, or a tool_use block calling `tool` (its input then streams)."""
    block = ToolUseBlock(id=tool_use_id(), name=tool, input={}) if tool else TextBlock(text="")
    return ContentBlockStart(index=index, content_block=block)


def message_delta(stats: GenerationStats, called: bool = False) -> MessageDelta:
    return MessageDelta(
        delta=StopDelta(stop_reason=stop_reason(stats, called), stop_sequence=stats.stop_sequence),
        usage=usage(stats),
        timings=timings([stats]),
    )


async def message_events(
    head: MessageHeader, items: AsyncIterator[tuple[int, Chunk]], input_tokens: int, tools: bool
) -> AsyncIterator[StreamEvent]:
    """message_start, then content blocks as they come (without tools: one text block,
    opened at once), message_delta and message_stop."""
    yield message_start(head, input_tokens)
    split = CallSplitter(mode="?" if tools else "text")
    block, kind = -1, None  # the open block: its index and "text" / "tool"
    if not tools:
        block, kind = 0, "text"
        yield block_start(0)
    yield Ping()
    stats = None
    # Closing this generator (sse_response does) must close `items`, and so the engine stream.
    async with aclosing(items) as stream:
        async for _, chunk in stream:
            events = split.feed(chunk.text) + (split.finish(chunk.stats.at_eos) if chunk.stats else [])
            for event in events:
                opens = "text" if event[0] == "text" else "tool" if event[0] == "call" else None
                if opens and (opens != kind or opens == "tool"):  # a new block
                    if block >= 0:
                        yield ContentBlockStop(index=block)
                    block, kind = block + 1, opens
                    yield block_start(block, event[2] if opens == "tool" else None)
                if event[0] == "text":
                    yield ContentBlockDelta(index=block, delta=TextDelta(text=event[1]))
                elif event[0] == "args":
                    yield ContentBlockDelta(index=block, delta=InputJsonDelta(partial_json=event[2]))
            stats = chunk.stats or stats
    if stats is None:  # stream_all raises first; this keeps the type checker honest
        raise EngineStoppedError("the stream ended without its final chunk")
    if block < 0:  # nothing was said at all: one empty text block
        block = 0
        yield block_start(0)
    yield ContentBlockStop(index=block)
    yield message_delta(stats, split.index >= 0)
    yield MessageStop()
