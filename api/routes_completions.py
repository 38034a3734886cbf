"""POST /v1/completions (raw text or token-id prompts): parse -> engine -> OpenAI body or SSE."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from fastapi import APIRouter, Request
from sse_starlette.sse import EventSourceResponse

from api import responses_openai as fmt
from api.openapi import GENERATION_ERRORS, TextCompletion, errors, success
from api.protocol_openai import CompletionRequest
from api.runs import collect_all, engine_of, on_engine, resolve_model, stream_all
from api.sse import sse_response, start_stream, until_disconnect
from workbench.engine import Chunk, GenerationStats

router = APIRouter()


async def _echoes(request: Request, body: CompletionRequest, model_id: str) -> list[str]:
    """With echo, each prompt's text (token-id prompts decoded) leads its choices."""
    if not body.echo:
        return []
    return [
        p if isinstance(p, str) else await on_engine(request, engine_of(request).detokenize, p, model_id)
        for p in body.prompts()
    ]


@router.post(
    "/v1/completions",
    response_model=None,
    responses={**success(TextCompletion, streams=True), **errors(GENERATION_ERRORS)},
)
async def completions(body: CompletionRequest, request: Request) -> dict[str, Any] | EventSourceResponse:
    body.log_unknown("completions")
    engine = engine_of(request)
    model_id = await resolve_model(request, body.model)
    requests = body.to_engine_requests(model_id)
    echoes = await _echoes(request, body, model_id)
    head = fmt.ResponseHeader("text", model_id, engine.device)
    if not body.stream:
        results = await until_disconnect(request, collect_all(request, requests))
        return fmt.text_completion(head, results, body.n, echoes)
    items = await start_stream(request, stream_all(request, requests))
    return sse_response(_chunks(head, items, body.n, echoes, body.include_usage))


async def _chunks(
    head: fmt.ResponseHeader,
    items: AsyncIterator[tuple[int, Chunk]],
    per_prompt: int,
    echoes: list[str],
    include_usage: bool,
) -> AsyncIterator[dict[str, Any]]:
    stats: list[GenerationStats] = []
    offsets: dict[int, int] = {}  # text sent so far per choice, for logprobs' text_offset
    # Closing this generator (sse_response does) must close `items`, and so the engine stream.
    async with aclosing(items) as stream:
        async for i, chunk in stream:
            if i not in offsets:
                echo = echoes[i // per_prompt] if echoes else ""
                offsets[i] = len(echo)
                if echo:
                    yield fmt.text_chunk(head, i, echo)
            logprobs = [chunk.logprob] if chunk.logprob is not None else None
            if chunk.text or logprobs:
                yield fmt.text_chunk(head, i, chunk.text, logprobs=logprobs, offset=offsets[i])
                offsets[i] += len(chunk.text)
            if chunk.stats is not None:
                stats.append(chunk.stats)
                yield fmt.text_chunk(head, i, "", stats=chunk.stats)
    if include_usage:
        yield fmt.usage_chunk(head, stats, per_prompt)
