"""Anthropic stream events: their models, and the event sequence of a message built from
engine chunks as they come (content blocks opened and closed, text and tool-input deltas).
Knows no HTTP (api/sse.py frames them, named by `type`) or engine thread."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Annotated, Any, Literal

from pydantic import Field

from api.anthropic.responses import (
    ContentBlock,
    MessageHeader,
    MessageReply,
    MessageUsage,
    StopReason,
    TextBlock,
    ThinkingBlock,
    ToolUseBlock,
    signature,
    stop_reason,
    tool_use_id,
    usage,
)
from api.wire import ReplyModel, Timings, call_events, timings
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


class ThinkingDelta(ReplyModel):
    type: Literal["thinking_delta"] = "thinking_delta"
    thinking: str


class SignatureDelta(ReplyModel):
    type: Literal["signature_delta"] = "signature_delta"
    signature: str


Delta = TextDelta | InputJsonDelta | ThinkingDelta | SignatureDelta


class ContentBlockDelta(ReplyModel):
    type: Literal["content_block_delta"] = "content_block_delta"
    index: int
    delta: Annotated[Delta, Field(discriminator="type")]


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


class Blocks:
    """The content blocks of one streamed message: which one is open (its index and kind:
    "thinking", "text" or "tool"), opening the next one closes it (a thinking block with its
    signature first)."""

    def __init__(self) -> None:
        self.index, self.kind, self.thought = -1, "", ""

    def open(self, kind: str, tool: str | None = None) -> list[StreamEvent]:
        events = self.close()
        self.index, self.kind = self.index + 1, kind
        if kind == "thinking":
            block: ContentBlock = ThinkingBlock(thinking="", signature="")
        else:
            block = ToolUseBlock(id=tool_use_id(), name=tool, input={}) if tool else TextBlock(text="")
        return [*events, ContentBlockStart(index=self.index, content_block=block)]

    def close(self) -> list[StreamEvent]:
        if self.index < 0 or not self.kind:
            return []
        events: list[StreamEvent] = []
        if self.kind == "thinking":
            events.append(
                ContentBlockDelta(index=self.index, delta=SignatureDelta(signature=signature(self.thought)))
            )
        self.kind, self.thought = "", ""
        return [*events, ContentBlockStop(index=self.index)]

    def think(self, text: str) -> list[StreamEvent]:
        events = self.open("thinking") if self.kind != "thinking" else []
        self.thought += text
        return [*events, ContentBlockDelta(index=self.index, delta=ThinkingDelta(thinking=text))]

    def say(self, event: tuple[Any, ...]) -> list[StreamEvent]:
        """A CallSplitter event: text, a call's start, or a piece of its arguments."""
        events: list[StreamEvent] = []
        if event[0] == "text" and self.kind != "text":
            events = self.open("text")
        elif event[0] == "call":
            events = self.open("tool", event[2])
        if event[0] == "text":
            events.append(ContentBlockDelta(index=self.index, delta=TextDelta(text=event[1])))
        elif event[0] == "args":
            events.append(ContentBlockDelta(index=self.index, delta=InputJsonDelta(partial_json=event[2])))
        return events


def message_delta(stats: GenerationStats, called: bool = False) -> MessageDelta:
    return MessageDelta(
        delta=StopDelta(stop_reason=stop_reason(stats, called), stop_sequence=stats.stop_sequence),
        usage=usage(stats),
        timings=timings([stats]),
    )


async def message_events(
    head: MessageHeader,
    items: AsyncIterator[tuple[int, Chunk]],
    input_tokens: int,
    tools: bool,
    text_first: bool = True,
) -> AsyncIterator[StreamEvent]:
    """message_start, then content blocks as they come (a plain reply from a model known not
    to reason, `text_first`: one text block, opened at once), message_delta and message_stop."""
    yield message_start(head, input_tokens)
    split, blocks, native = CallSplitter(mode="?" if tools else "text"), Blocks(), False
    if text_first and not tools:
        for event in blocks.open("text"):
            yield event
    yield Ping()
    stats = None
    # Closing this generator (sse_response does) must close `items`, and so the engine stream.
    async with aclosing(items) as stream:
        async for _, chunk in stream:
            out = blocks.think(chunk.reasoning) if chunk.reasoning else []
            for event in call_events(split, chunk, native):
                out += blocks.say(event)
            native = native or bool(chunk.calls)
            for event in out:
                yield event
            stats = chunk.stats or stats
    if stats is None:  # stream_all raises first; this keeps the type checker honest
        raise EngineStoppedError("the stream ended without its final chunk")
    if blocks.index < 0 or blocks.kind == "thinking":  # no answer at all: one empty text block
        for event in blocks.open("text"):
            yield event
    for event in blocks.close():
        yield event
    yield message_delta(stats, split.index >= 0 or native)
    yield MessageStop()
