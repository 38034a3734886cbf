"""POST /v1/responses, GET and DELETE /v1/responses/{id}, GET /v1/responses/{id}/input_items:
parse -> engine -> response object or named SSE events, and the store behind
previous_response_id. Knows the routes, not the reply shapes or the engine thread."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sse_starlette.sse import EventSourceResponse

from api.engine_calls import collect_all, resolve_model, stream_all
from api.errors import ApiError
from api.openai.responses_api.events import response_events
from api.openai.responses_api.objects import (
    DeletedResponse,
    InputItemList,
    ResponseObject,
    finished,
    new_id,
    output_items,
    skeleton,
)
from api.openai.responses_api.protocol import ResponsesRequest
from api.openai.responses_api.store import ResponseStore, StoredResponse, output_turns
from api.openapi import GENERATION_ERRORS, MODEL_ERRORS, errors, success
from api.sse import RESPONSES_SSE, sse_response, start_stream, until_disconnect

router = APIRouter()


def store_of(request: Request) -> ResponseStore:
    return request.app.state.responses


def _stored(request: Request, response_id: str, param: str = "response_id") -> StoredResponse:
    stored = store_of(request).get(response_id)
    if stored is None:
        raise ApiError(404, f"response {response_id!r} is not stored here (or was evicted)", param=param)
    return stored


@router.post(
    "/v1/responses",
    response_model=None,
    responses={**success(ResponseObject, streams=True), **errors(GENERATION_ERRORS)},
)
async def create_response(body: ResponsesRequest, request: Request) -> ResponseObject | EventSourceResponse:
    body.log_unknown("responses")
    previous = body.previous_response_id
    history = _stored(request, previous, "previous_response_id").conversation if previous else ()
    model_id = await resolve_model(request, body.model)
    req = body.to_engine_request(model_id, history)
    response = skeleton(body, new_id("resp"), model_id, previous)
    asked = (*history, *body.turns())
    inputs = (
        tuple(i.model_dump(exclude_none=True) for i in body.input)
        if isinstance(body.input, list)
        else ({"type": "message", "role": "user", "content": body.input},)
    )

    def keep(final: ResponseObject) -> None:
        if body.store:
            store_of(request).put(StoredResponse(final, (*asked, *output_turns(final)), inputs))

    if not body.stream:
        (result,) = await until_disconnect(request, collect_all(request, [req]))
        final = finished(
            response, output_items(result, req.tools, body.tool_kinds()), result.stats, req.cache
        )
        keep(final)
        return final
    items = await start_stream(request, stream_all(request, [req]))
    kinds = body.tool_kinds() if req.tools else {}
    return sse_response(response_events(response, items, kinds, req.cache, keep), RESPONSES_SSE)


@router.get(
    "/v1/responses/{response_id}",
    response_model=None,
    responses={**success(ResponseObject), **errors(MODEL_ERRORS)},
)
async def get_response(response_id: str, request: Request) -> ResponseObject:
    return _stored(request, response_id).response


@router.delete(
    "/v1/responses/{response_id}",
    response_model=None,
    responses={**success(DeletedResponse), **errors(MODEL_ERRORS)},
)
async def delete_response(response_id: str, request: Request) -> DeletedResponse:
    if not store_of(request).delete(response_id):
        raise ApiError(404, f"response {response_id!r} is not stored here", param="response_id")
    return DeletedResponse(id=response_id)


@router.get(
    "/v1/responses/{response_id}/input_items",
    response_model=None,
    responses={**success(InputItemList), **errors(MODEL_ERRORS)},
)
async def list_input_items(response_id: str, request: Request) -> InputItemList:
    items = list(_stored(request, response_id).input_items)
    ids = [i.get("id") for i in items]
    return InputItemList(data=items, first_id=ids[0] if ids else None, last_id=ids[-1] if ids else None)
