"""POST /v1/chat/completions: parse -> engine -> OpenAI body or SSE chunks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from fastapi import APIRouter, Request
from sse_starlette.sse import EventSourceResponse

from api import responses_openai as fmt
from api.openapi import GENERATION_ERRORS, ChatCompletion, errors, success
from api.protocol_openai import ChatCompletionRequest
from api.runs import collect_all, engine_of, resolve_model, stream_all
from api.sse import sse_response, start_stream, until_disconnect
from workbench.engine import Chunk, GenerationStats
from workbench.engine.structured.tools import CallSplitter

router = APIRouter()


@router.post(
    "/v1/chat/completions",
    response_model=None,
    responses={**success(ChatCompletion, streams=True), **errors(GENERATION_ERRORS)},
)
async def chat_completions(
    body: ChatCompletionRequest, request: Request
) -> dict[str, Any] | EventSourceResponse:
    body.log_unknown("chat.completions")
    engine = engine_of(request)
    model_id = await resolve_model(request, body.model)
    requests = body.to_engine_requests(model_id)
    head = fmt.ResponseHeader("chat", model_id, engine.device)
    tools = body.offered_tools()
    if not body.stream:
        results = await until_disconnect(request, collect_all(request, requests))
        return fmt.chat_completion(head, results, tools)
    items = await start_stream(request, stream_all(request, requests))
    return sse_response(_chunks(head, items, body.include_usage, bool(tools)))


async def _chunks(
    head: fmt.ResponseHeader, items: AsyncIterator[tuple[int, Chunk]], include_usage: bool, tools: bool
) -> AsyncIterator[dict[str, Any]]:
    stats: list[GenerationStats] = []
    splitters: dict[int, CallSplitter] = {}  # with tools: text and calls apart, as generated
    # Closing this generator (sse_response does) must close `items`, and so the engine stream.
    async with aclosing(items) as stream:
        async for i, chunk in stream:
            if i not in splitters:
                splitters[i] = CallSplitter(mode="?" if tools else "text")
                yield fmt.chat_chunk(head, i, {"role": "assistant", "content": ""})
            split = splitters[i]
            events = split.feed(chunk.text) + (split.finish(chunk.stats.at_eos) if chunk.stats else [])
            logprobs = [chunk.logprob] if chunk.logprob is not None else None
            for delta in _deltas(events):
                yield fmt.chat_chunk(head, i, delta, logprobs=logprobs)
                logprobs = None
            if logprobs:
                yield fmt.chat_chunk(head, i, {"content": ""}, logprobs=logprobs)
            if chunk.stats is not None:
                stats.append(chunk.stats)
                yield fmt.chat_chunk(head, i, {}, stats=chunk.stats, called=split.index >= 0)
    if include_usage:
        yield fmt.usage_chunk(head, stats, len(stats))


def _deltas(events: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """OpenAI deltas for CallSplitter events: content text; a call's id and name (with
    empty arguments) when it starts; then pieces of its arguments."""
    out: list[dict[str, Any]] = []
    for event in events:
        if event[0] == "text":
            out.append({"content": event[1]})
        elif event[0] == "call":
            out.append({"tool_calls": [fmt.tool_call(event[2], "", index=event[1])]})
        else:
            out.append({"tool_calls": [{"index": event[1], "function": {"arguments": event[2]}}]})
    return out
