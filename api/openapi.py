"""The `responses=` entries of each route: its reply model (the class that builds it), its
error statuses in the API's error shape, a stream as `text/event-stream` (no schema: its
events are not one JSON document); FastAPI's 422 dropped. Knows no route or engine."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from api.errors import AnthropicError, OpenAIError

_WHY = {
    400: "Invalid request: a bad, missing or unsupported parameter, or a body that is not valid JSON",
    401: "An API key is configured and the request did not carry it",
    403: "The Host header names a host this server does not serve",
    404: "The model is not registered (or not allowed by the api_models setting)",
    409: "The model is busy (being unloaded or replaced)",
    413: "The request body is over the server's limit",
    429: "The generation queue is full (see Retry-After)",
    500: "Internal error, or the model could not be loaded",
    503: "The server is shutting down, the engine stopped, or the model would not fit the memory budget",
    504: "The request ran past the server's request timeout",
}
MODELS_ERRORS = (401, 403, 500, 503)
MODEL_ERRORS = (401, 403, 404, 500, 503)
GENERATION_ERRORS = (400, 401, 403, 404, 409, 413, 429, 500, 503, 504)


def errors(statuses: tuple[int, ...], *, anthropic: bool = False) -> dict[int | str, dict[str, Any]]:
    """FastAPI `responses=` entries for these error statuses, in the route's error shape."""
    model = AnthropicError if anthropic else OpenAIError
    return {status: {"model": model, "description": _WHY[status]} for status in statuses}


def success(model: type[BaseModel], *, streams: bool = False) -> dict[int | str, dict[str, Any]]:
    """The 200 entry: `model` as JSON, and with `streams` also an SSE stream."""
    entry: dict[str, Any] = {"model": model, "description": "Successful Response"}
    if streams:
        entry["content"] = {"text/event-stream": {}}  # no schema: a stream of JSON events
        entry["description"] = "The reply as JSON, or with `stream: true` as server-sent events"
    return {200: entry}


def drop_validation_422(app: FastAPI) -> None:
    """FastAPI documents a 422 for every route with a body; ours answer validation
    failures with 400 in the API's error shape (errors.py), so the 422 is removed."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            for item in schema.get("paths", {}).values():
                for operation in item.values():
                    operation.get("responses", {}).pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
