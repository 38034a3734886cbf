"""POST /v1/chat/completions, POST /v1/completions, GET /v1/models[/{id}]: parse -> engine
-> OpenAI body or SSE chunks. Knows the OpenAI wire format, not how the engine runs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from sse_starlette.sse import EventSourceResponse

from api.engine_calls import collect_all, engine_of, on_engine, resolve_model, stream_all
from api.openai import responses as fmt
from api.openai.protocol import ChatCompletionRequest, CompletionRequest
from api.openapi import (
    GENERATION_ERRORS,
    MODEL_ERRORS,
    MODELS_ERRORS,
    ChatCompletion,
    ModelList,
    ModelObject,
    TextCompletion,
    errors,
    success,
)
from api.sse import sse_response, start_stream, until_disconnect
from workbench.engine import (
    Chunk,
    Engine,
    EngineStatus,
    EngineStoppedError,
    GenerationStats,
    ModelInfo,
    ModelNotFoundError,
)
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
    tools = requests[0].tools  # the same for every choice
    if not body.stream:
        results = await until_disconnect(request, collect_all(request, requests))
        return fmt.chat_completion(head, results, tools)
    items = await start_stream(request, stream_all(request, requests))
    return sse_response(_chat_chunks(head, items, body.include_usage, bool(tools)))


async def _chat_chunks(
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
    return sse_response(_text_chunks(head, items, body.n, echoes, body.include_usage))


async def _text_chunks(
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


def _model(info: ModelInfo) -> dict[str, Any]:
    """OpenAI's model object; our extras (source, variant, bits, size, loaded) beside it."""
    created = 0
    if info.path and Path(info.path).exists():
        created = int(Path(info.path).stat().st_mtime)
    extras = asdict(info)
    extras.pop("id")
    return {"id": info.id, "object": "model", "created": created, "owned_by": info.source, **extras}


def _published(engine: Engine) -> EngineStatus:
    status = engine.status()
    if status is None:
        raise EngineStoppedError("the engine is starting; try again in a moment")
    return status


@router.get("/v1/models", response_model=None, responses={**success(ModelList), **errors(MODELS_ERRORS)})
async def list_models(request: Request) -> dict[str, Any]:
    """Every registered id, loaded or not, from the state the engine publishes (answers at
    once while the engine loads a model or runs a benchmark)."""
    return {"object": "list", "data": [_model(i) for i in _published(engine_of(request)).models]}


@router.get(
    "/v1/models/{model_id:path}",
    response_model=None,
    responses={**success(ModelObject), **errors(MODEL_ERRORS)},
)
async def get_model(model_id: str, request: Request) -> dict[str, Any]:
    """A registered id, or an alias of one ('default' included): the model object of the id."""
    info = _published(engine_of(request)).find(model_id)
    if info is None:
        raise ModelNotFoundError(
            f"model {model_id!r} is not registered; GET /v1/models lists the ids", model_id
        )
    return _model(info)
