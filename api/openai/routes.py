"""POST /v1/chat/completions, POST /v1/completions, GET /v1/models[/{id}]: parse -> engine ->
reply model or SSE chunks. Knows the OpenAI routes, not the reply shapes or the engine thread."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sse_starlette.sse import EventSourceResponse

from api.engine_calls import collect_all, engine_of, on_engine, resolve_model, stream_all
from api.openai import responses as fmt
from api.openai.protocol import ChatCompletionRequest, CompletionRequest
from api.openai.streams import chat_chunks, text_chunks
from api.openapi import GENERATION_ERRORS, MODEL_ERRORS, MODELS_ERRORS, errors, success
from api.sse import sse_response, start_stream, until_disconnect
from workbench.engine import Engine, EngineStatus, EngineStoppedError, ModelNotFoundError

router = APIRouter()


@router.post(
    "/v1/chat/completions",
    response_model=None,
    responses={**success(fmt.ChatCompletion, streams=True), **errors(GENERATION_ERRORS)},
)
async def chat_completions(
    body: ChatCompletionRequest, request: Request
) -> fmt.ChatCompletion | EventSourceResponse:
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
    return sse_response(chat_chunks(head, items, body.include_usage, bool(tools)))


@router.post(
    "/v1/completions",
    response_model=None,
    responses={**success(fmt.TextCompletion, streams=True), **errors(GENERATION_ERRORS)},
)
async def completions(body: CompletionRequest, request: Request) -> fmt.TextCompletion | EventSourceResponse:
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
    return sse_response(text_chunks(head, items, body.n, echoes, body.include_usage))


async def _echoes(request: Request, body: CompletionRequest, model_id: str) -> list[str]:
    """With echo, each prompt's text (token-id prompts decoded) leads its choices."""
    if not body.echo:
        return []
    return [
        p if isinstance(p, str) else await on_engine(request, engine_of(request).detokenize, p, model_id)
        for p in body.prompts()
    ]


@router.get("/v1/models", response_model=None, responses={**success(fmt.ModelList), **errors(MODELS_ERRORS)})
async def list_models(request: Request) -> fmt.ModelList:
    """Every registered id, loaded or not, from the state the engine publishes (answers at
    once while the engine loads a model or runs a benchmark)."""
    models = _published(engine_of(request)).models
    return fmt.ModelList(data=[fmt.model_object(i) for i in models])


@router.get(
    "/v1/models/{model_id:path}",
    response_model=None,
    responses={**success(fmt.ModelObject), **errors(MODEL_ERRORS)},
)
async def get_model(model_id: str, request: Request) -> fmt.ModelObject:
    """A registered id, or an alias of one ('default' included): the model object of the id."""
    info = _published(engine_of(request)).find(model_id)
    if info is None:
        raise ModelNotFoundError(
            f"model {model_id!r} is not registered; GET /v1/models lists the ids", model_id
        )
    return fmt.model_object(info)


def _published(engine: Engine) -> EngineStatus:
    status = engine.status()
    if status is None:
        raise EngineStoppedError("the engine is starting; try again in a moment")
    return status
