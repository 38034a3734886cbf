"""POST /v1/messages and /v1/messages/count_tokens: parse -> engine -> reply model or named
SSE events; errors under PREFIX leave in Anthropic's shape (the app tells errors.py so).
Knows the Anthropic routes, not the reply shapes or the engine thread."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sse_starlette.sse import EventSourceResponse

from api.anthropic import responses as fmt
from api.anthropic.protocol import CountTokensRequest, MessagesRequest
from api.anthropic.streams import message_events
from api.engine_calls import collect_all, engine_of, on_engine, resolve_model, stream_all
from api.openapi import GENERATION_ERRORS, errors, success
from api.sse import ANTHROPIC_SSE, sse_response, start_stream, until_disconnect

PREFIX = "/v1/messages"
router = APIRouter()


@router.post(
    PREFIX,
    response_model=None,
    responses={**success(fmt.MessageReply, streams=True), **errors(GENERATION_ERRORS, anthropic=True)},
)
async def create_message(body: MessagesRequest, request: Request) -> fmt.MessageReply | EventSourceResponse:
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
    # A model known not to reason opens its text block at once, as Anthropic's API does.
    info = status.find(model_id) if (status := engine.status()) is not None else None
    plain = info is not None and info.reasoning is False
    return sse_response(message_events(head, items, input_tokens, bool(req.tools), plain), ANTHROPIC_SSE)


@router.post(
    f"{PREFIX}/count_tokens",
    response_model=None,
    responses={**success(fmt.TokenCount), **errors(GENERATION_ERRORS, anthropic=True)},
)
async def count_tokens(body: CountTokensRequest, request: Request) -> fmt.TokenCount:
    """The prompt tokens a create with these messages would report as input_tokens; what a
    create would refuse (a schema or tool that cannot be enforced, a prompt past the
    context) is refused here with the same error."""
    body.log_unknown("messages.count_tokens")
    engine = engine_of(request)
    req = body.to_engine_request(await resolve_model(request, body.model))
    count = await on_engine(request, lambda: engine.count_prompt_tokens(req, check=True))
    return fmt.TokenCount(input_tokens=count)
