"""What /openapi.json documents beyond the request models: the error bodies (OpenAI's
and Anthropic's shapes), the statuses each route can answer with, and the core fields
of each success body. Documentation only: responses_*.py build the bodies, errors.py
the errors; the fuzz test (tests/test_fuzz.py) holds both to what is written here.

The success models name the fields clients rely on and allow more (the `timings`
extension, our model extras); a streamed reply is documented as `text/event-stream`
without a schema, since its events are not one JSON document.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict

# ---- errors ---------------------------------------------------------------------


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIError(BaseModel):
    error: OpenAIErrorDetail


class AnthropicErrorDetail(BaseModel):
    type: str
    message: str


class AnthropicError(BaseModel):
    type: Literal["error"]
    error: AnthropicErrorDetail


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


# ---- success bodies -------------------------------------------------------------


class Open(BaseModel):
    """Documents required fields; more may come."""

    model_config = ConfigDict(extra="allow")


class Usage(Open):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class FunctionCall(Open):
    name: str
    arguments: str


class ToolCall(Open):
    id: str
    type: Literal["function"]
    function: FunctionCall


class AssistantMessage(Open):
    role: Literal["assistant"]
    content: str | None
    tool_calls: list[ToolCall] | None = None


class ChatChoice(Open):
    index: int
    message: AssistantMessage
    finish_reason: Literal["stop", "length", "tool_calls"]
    logprobs: dict[str, Any] | None


class ChatCompletion(Open):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    timings: dict[str, Any]


class TextChoice(Open):
    index: int
    text: str
    finish_reason: Literal["stop", "length"]
    logprobs: dict[str, Any] | None


class TextCompletion(Open):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[TextChoice]
    usage: Usage
    timings: dict[str, Any]


class TextBlock(Open):
    type: Literal["text"]
    text: str


class ToolUseBlock(Open):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


class MessageUsage(Open):
    input_tokens: int
    output_tokens: int


class MessageReply(Open):
    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    content: list[TextBlock | ToolUseBlock]
    model: str
    stop_reason: Literal["end_turn", "max_tokens", "stop_sequence", "tool_use"]
    stop_sequence: str | None
    usage: MessageUsage


class TokenCount(Open):
    input_tokens: int


class ModelObject(Open):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(Open):
    object: Literal["list"]
    data: list[ModelObject]


class Health(Open):
    """200 with status "ok"; 503 with "loading", "failed", "draining" or "stopped"."""

    status: Literal["ok", "loading", "failed", "draining", "stopped"]
    detail: str | None = None
    engine: dict[str, Any]
