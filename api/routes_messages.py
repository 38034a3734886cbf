"""POST /v1/messages and /v1/messages/count_tokens (Anthropic Messages API):
parse -> engine -> Anthropic body or named SSE events. Errors under PREFIX leave in
Anthropic's shape (the app tells errors.py so)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from fastapi import APIRouter, Request
from sse_starlette.sse import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from api import responses_anthropic as fmt
from api.protocol_anthropic import CountTokensRequest, MessagesRequest
from api.runs import collect_all, engine_of, resolve_model, stream_all
from api.sse import ANTHROPIC_SSE, sse_response, start_stream, until_disconnect
from workbench.engine import Chunk, EngineStoppedError

PREFIX = "/v1/messages"
router = APIRouter()


@router.post(PREFIX, response_model=None)
async def create_message(body: MessagesRequest, request: Request) -> dict[str, Any] | EventSourceResponse:
    # anthropic-version / anthropic-beta headers are accepted as they come: the wire
    # format served here is the one every version shares.
    body.log_unknown("messages")
    engine = engine_of(request)
    model_id = await resolve_model(request, body.model)
    req = body.to_engine_request(model_id)
    head = fmt.MessageHeader(model_id)
    if not body.stream:
        (result,) = await until_disconnect(request, collect_all(request, [req]))
        return fmt.message(head, result)
    # message_start reports input_tokens before the last chunk's stats can say it.
    input_tokens = await run_in_threadpool(engine.count_prompt_tokens, req)
    items = await start_stream(request, stream_all(request, [req]))
    return sse_response(_events(head, items, input_tokens), ANTHROPIC_SSE)


@router.post(f"{PREFIX}/count_tokens")
async def count_tokens(body: CountTokensRequest, request: Request) -> dict[str, int]:
    """The prompt tokens a create with these messages would report as input_tokens."""
    body.log_unknown("messages.count_tokens")
    engine = engine_of(request)
    req = body.to_engine_request(await resolve_model(request, body.model))
    return {"input_tokens": await run_in_threadpool(engine.count_prompt_tokens, req)}


async def _events(
    head: fmt.MessageHeader, items: AsyncIterator[tuple[int, Chunk]], input_tokens: int
) -> AsyncIterator[dict[str, Any]]:
    yield fmt.message_start(head, input_tokens)
    yield fmt.content_block_start(0)
    yield fmt.ping()
    stats = None
    # Closing this generator (sse_response does) must close `items`, and so the engine stream.
    async with aclosing(items) as stream:
        async for _, chunk in stream:
            if chunk.text:
                yield fmt.text_delta(0, chunk.text)
            stats = chunk.stats or stats
    if stats is None:  # stream_all raises first; this keeps the type checker honest
        raise EngineStoppedError("the stream ended without its final chunk")
    yield fmt.content_block_stop(0)
    yield fmt.message_delta(stats)
    yield fmt.message_stop()
