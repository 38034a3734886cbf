"""OpenAI stream chunks: their models, and the chunk sequences of chat and text completions
built from engine chunks as they come (text, tool-call deltas, logprobs, the usage chunk).
Knows no HTTP (api/sse.py frames them) or engine thread."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from typing import Any, Literal, TypeVar

from pydantic.json_schema import SkipJsonSchema

from api.openai.responses import (
    ChatFinish,
    ChatLogprobs,
    CompletionBase,
    ResponseHeader,
    TextFinish,
    TextLogprobs,
    Usage,
    call_id,
    chat_logprobs,
    finish_reason,
    text_logprobs,
    usage,
)
from api.wire import ReplyModel, Timings, call_events, omitted, timings
from workbench.engine import Chunk, GenerationStats, TokenLogprob
from workbench.engine.structured.tools import CallSplitter

# ---- chunk models --------------------------------------------------------------


class FunctionDelta(ReplyModel):
    name: str | SkipJsonSchema[None] = omitted("in a call's first delta")
    arguments: str


class ToolCallDelta(ReplyModel):
    index: int
    id: str | SkipJsonSchema[None] = omitted("in a call's first delta")
    type: Literal["function"] | SkipJsonSchema[None] = omitted("in a call's first delta")
    function: FunctionDelta


class ChatDelta(ReplyModel):
    role: Literal["assistant"] | SkipJsonSchema[None] = omitted()
    content: str | SkipJsonSchema[None] = omitted()
    reasoning_content: str | SkipJsonSchema[None] = omitted("the thinking section, as generated")
    tool_calls: list[ToolCallDelta] | SkipJsonSchema[None] = omitted()


class ChunkChoice(ReplyModel):
    index: int
    delta: ChatDelta
    logprobs: ChatLogprobs | None = None
    finish_reason: ChatFinish | None = None


class TextChunkChoice(ReplyModel):
    index: int
    text: str
    logprobs: TextLogprobs | None = None
    finish_reason: TextFinish | None = None


_LAST_USAGE = "the extra last chunk only (stream_options.include_usage), whose choices are empty"
_LAST_TIMINGS = "on each choice's last chunk, and on the usage chunk"


class ChatCompletionChunk(CompletionBase):
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    choices: list[ChunkChoice]
    usage: Usage | SkipJsonSchema[None] = omitted(_LAST_USAGE)
    timings: Timings | SkipJsonSchema[None] = omitted(_LAST_TIMINGS)


class TextCompletionChunk(CompletionBase):
    object: Literal["text_completion"] = "text_completion"
    choices: list[TextChunkChoice]
    usage: Usage | SkipJsonSchema[None] = omitted(_LAST_USAGE)
    timings: Timings | SkipJsonSchema[None] = omitted(_LAST_TIMINGS)


C = TypeVar("C", ChatCompletionChunk, TextCompletionChunk)

# ---- builders -------------------------------------------------------------------


def call_deltas(events: Sequence[tuple[Any, ...]]) -> list[ChatDelta]:
    """Deltas for CallSplitter events: content text; a call's id and name (with empty
    arguments) when it starts; then pieces of its arguments."""
    out = []
    for event in events:
        if event[0] == "text":
            out.append(ChatDelta(content=event[1]))
            continue
        if event[0] == "call":
            function = FunctionDelta(name=event[2], arguments="")
            delta = ToolCallDelta(index=event[1], id=call_id(), type="function", function=function)
        else:
            delta = ToolCallDelta(index=event[1], function=FunctionDelta(arguments=event[2]))
        out.append(ChatDelta(tool_calls=[delta]))
    return out


def chat_chunk(
    head: ResponseHeader,
    index: int,
    delta: ChatDelta,
    *,
    logprobs: Sequence[TokenLogprob] | None = None,
    stats: GenerationStats | None = None,
    called: bool = False,
) -> ChatCompletionChunk:
    """One chunk; `called`: the choice made tool calls (its finish_reason says so when
    the model ended the reply; a call cut by max_tokens or a stop string keeps 'length'
    / 'stop', as the non-stream reply does)."""
    finish: ChatFinish | None = finish_reason(stats) if stats else None
    if called and stats and stats.at_eos:
        finish = "tool_calls"
    choice = ChunkChoice(
        index=index,
        delta=delta,
        logprobs=chat_logprobs(logprobs) if logprobs else None,
        finish_reason=finish,
    )
    return ChatCompletionChunk(
        **head.fields, choices=[choice], timings=timings([stats]) if stats is not None else None
    )


def text_chunk(
    head: ResponseHeader,
    index: int,
    text: str,
    *,
    logprobs: Sequence[TokenLogprob] | None = None,
    offset: int = 0,
    stats: GenerationStats | None = None,
) -> TextCompletionChunk:
    choice = TextChunkChoice(
        index=index,
        text=text,
        logprobs=text_logprobs(logprobs, offset) if logprobs else None,
        finish_reason=finish_reason(stats) if stats else None,
    )
    return TextCompletionChunk(
        **head.fields, choices=[choice], timings=timings([stats]) if stats is not None else None
    )


def usage_chunk(kind: type[C], head: ResponseHeader, stats: Sequence[GenerationStats], per_prompt: int) -> C:
    """The extra last chunk stream_options.include_usage asks for: no choices, usage set."""
    return kind(**head.fields, choices=[], usage=usage(stats, per_prompt), timings=timings(stats))


async def chat_chunks(
    head: ResponseHeader, items: AsyncIterator[tuple[int, Chunk]], include_usage: bool, tools: bool
) -> AsyncIterator[ChatCompletionChunk]:
    """Per choice: the assistant role, content or tool-call deltas as generated (with their
    logprobs), a last chunk with finish_reason and timings; then, if asked, the usage chunk."""
    stats: list[GenerationStats] = []
    splitters: dict[int, CallSplitter] = {}  # with tools: text and calls apart, as generated
    native: set[int] = set()  # choices whose calls the engine parsed (the template's format)
    # Closing this generator (sse_response does) must close `items`, and so the engine stream.
    async with aclosing(items) as stream:
        async for i, chunk in stream:
            if i not in splitters:
                splitters[i] = CallSplitter(mode="?" if tools else "text")
                yield chat_chunk(head, i, ChatDelta(role="assistant", content=""))
            split = splitters[i]
            if chunk.reasoning:
                yield chat_chunk(head, i, ChatDelta(reasoning_content=chunk.reasoning))
            events = call_events(split, chunk, i in native)
            if chunk.calls:
                native.add(i)
            logprobs = [chunk.logprob] if chunk.logprob is not None else None
            for delta in call_deltas(events):
                yield chat_chunk(head, i, delta, logprobs=logprobs)
                logprobs = None
            if logprobs:
                yield chat_chunk(head, i, ChatDelta(content=""), logprobs=logprobs)
            if chunk.stats is not None:
                stats.append(chunk.stats)
                called = split.index >= 0 or i in native
                yield chat_chunk(head, i, ChatDelta(), stats=chunk.stats, called=called)
    if include_usage:
        yield usage_chunk(ChatCompletionChunk, head, stats, len(stats))


async def text_chunks(
    head: ResponseHeader,
    items: AsyncIterator[tuple[int, Chunk]],
    per_prompt: int,
    echoes: Sequence[str],
    include_usage: bool,
) -> AsyncIterator[TextCompletionChunk]:
    """Per choice: its echoed prompt (with echo), its text as generated (with logprobs), a
    last chunk with finish_reason and timings; then, if asked, the usage chunk."""
    stats: list[GenerationStats] = []
    offsets: dict[int, int] = {}  # text sent so far per choice, for logprobs' text_offset
    # Closing this generator (sse_response does) must close `items`, and so the engine stream.
    async with aclosing(items) as stream:
        async for i, chunk in stream:
            if i not in offsets:
                echo = echoes[i // per_prompt] if echoes else ""
                offsets[i] = len(echo)
                if echo:
                    yield text_chunk(head, i, echo)
            logprobs = [chunk.logprob] if chunk.logprob is not None else None
            if chunk.text or logprobs:
                yield text_chunk(head, i, chunk.text, logprobs=logprobs, offset=offsets[i])
                offsets[i] += len(chunk.text)
            if chunk.stats is not None:
                stats.append(chunk.stats)
                yield text_chunk(head, i, "", stats=chunk.stats)
    if include_usage:
        yield usage_chunk(TextCompletionChunk, head, stats, per_prompt)
