"""POST /v1/chat/completions: parse -> engine -> OpenAI body or SSE chunks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from fastapi import APIRouter, Request
from sse_starlette.sse import EventSourceResponse

from api import responses_openai as fmt
from api.protocol_openai import ChatCompletionRequest
from api.runs import collect_all, engine_of, resolve_model, stream_all
from api.sse import sse_response, start_stream, until_disconnect
from workbench.engine import Chunk, GenerationStats

router = APIRouter()


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(
    body: ChatCompletionRequest, request: Request
) -> dict[str, Any] | EventSourceResponse:
    body.log_unknown("chat.completions")
    engine = engine_of(request)
    model_id = await resolve_model(request, body.model)
    requests = body.to_engine_requests(model_id)
    head = fmt.ResponseHeader("chat", model_id, engine.device)
    if not body.stream:
        results = await until_disconnect(request, collect_all(request, requests))
        return fmt.chat_completion(head, results)
    items = await start_stream(request, stream_all(request, requests))
    return sse_response(_chunks(head, items, body.include_usage))


async def _chunks(
    head: fmt.ResponseHeader, items: AsyncIterator[tuple[int, Chunk]], include_usage: bool
) -> AsyncIterator[dict[str, Any]]:
    stats: list[GenerationStats] = []
    started: set[int] = set()
    # Closing this generator (sse_response does) must close `items`, and so the engine stream.
    async with aclosing(items) as stream:
        async for i, chunk in stream:
            if i not in started:
                started.add(i)
                yield fmt.chat_chunk(head, i, {"role": "assistant", "content": ""})
            logprobs = [chunk.logprob] if chunk.logprob is not None else None
            if chunk.text or logprobs:
                yield fmt.chat_chunk(head, i, {"content": chunk.text}, logprobs=logprobs)
            if chunk.stats is not None:
                stats.append(chunk.stats)
                yield fmt.chat_chunk(head, i, {}, stats=chunk.stats)
    if include_usage:
        yield fmt.usage_chunk(head, stats, len(stats))
