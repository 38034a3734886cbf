"""POST /v1/messages and /v1/messages/count_tokens (Anthropic Messages API):
parse -> engine -> Anthropic body or named SSE events. Errors under PREFIX leave in
Anthropic's shape (the app tells errors.py so)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from fastapi import APIRouter, Request
from sse_starlette.sse import EventSourceResponse

from api.anthropic import responses as fmt
from api.anthropic.protocol import CountTokensRequest, MessagesRequest
from api.engine_calls import collect_all, engine_of, on_engine, resolve_model, stream_all
from api.openapi import GENERATION_ERRORS, MessageReply, TokenCount, errors, success
from api.sse import ANTHROPIC_SSE, sse_response, start_stream, until_disconnect
from workbench.engine import Chunk, EngineStoppedError
from workbench.engine.structured.tools import CallSplitter

PREFIX = "/v1/messages"
router = APIRouter()


@router.post(
    PREFIX,
    response_model=None,
    responses={**success(MessageReply, streams=True), **errors(GENERATION_ERRORS, anthropic=True)},
)
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
        return fmt.message(head, result, req.tools)
    # message_start reports input_tokens before the last chunk's stats can say it.
    input_tokens = await on_engine(request, engine.count_prompt_tokens, req)
    items = await start_stream(request, stream_all(request, [req]))
    return sse_response(_events(head, items, input_tokens, bool(req.tools)), ANTHROPIC_SSE)


@router.post(
    f"{PREFIX}/count_tokens",
    response_model=None,
    responses={**success(TokenCount), **errors(GENERATION_ERRORS, anthropic=True)},
)
async def count_tokens(body: CountTokensRequest, request: Request) -> dict[str, int]:
    """The prompt tokens a create with these messages would report as input_tokens; what a
    create would refuse (a schema or tool that cannot be enforced, a prompt past the
    context) is refused here with the same error."""
    body.log_unknown("messages.count_tokens")
    engine = engine_of(request)
    req = body.to_engine_request(await resolve_model(request, body.model))
    count = await on_engine(request, lambda: engine.count_prompt_tokens(req, check=True))
    return {"input_tokens": count}


async def _events(
    head: fmt.MessageHeader, items: AsyncIterator[tuple[int, Chunk]], input_tokens: int, tools: bool
) -> AsyncIterator[dict[str, Any]]:
    """message_start, then content blocks as they come (without tools: one text block,
    opened at once), message_delta and message_stop."""
    yield fmt.message_start(head, input_tokens)
    split = CallSplitter(mode="?" if tools else "text")
    block, kind = -1, None  # the open block: its index and "text" / "tool"
    if not tools:
        block, kind = 0, "text"
        yield fmt.content_block_start(0)
    yield fmt.ping()
    stats = None
    # Closing this generator (sse_response does) must close `items`, and so the engine stream.
    async with aclosing(items) as stream:
        async for _, chunk in stream:
            events = split.feed(chunk.text) + (split.finish(chunk.stats.at_eos) if chunk.stats else [])
            for event in events:
                opens = "text" if event[0] == "text" else "tool" if event[0] == "call" else None
                if opens and (opens != kind or opens == "tool"):  # a new block
                    if block >= 0:
                        yield fmt.content_block_stop(block)
                    block, kind = block + 1, opens
                    yield fmt.content_block_start(block, event[2] if opens == "tool" else None)
                if event[0] == "text":
                    yield fmt.text_delta(block, event[1])
                elif event[0] == "args":
                    yield fmt.input_json_delta(block, event[2])
            stats = chunk.stats or stats
    if stats is None:  # stream_all raises first; this keeps the type checker honest
        raise EngineStoppedError("the stream ended without its final chunk")
    if block < 0:  # nothing was said at all: one empty text block
        block = 0
        yield fmt.content_block_start(0)
    yield fmt.content_block_stop(block)
    yield fmt.message_delta(stats, split.index >= 0)
    yield fmt.message_stop()
