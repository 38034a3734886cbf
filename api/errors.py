"""ApiError, the error reply models of both APIs (they build the bodies and document them),
and the one mapping from engine exceptions and validation failures to HTTP statuses.
Knows no routes: the app says which path prefix speaks Anthropic."""

from __future__ import annotations

import logging
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema
from starlette.exceptions import HTTPException as StarletteHTTPException

from workbench.engine.errors import (
    ContextLengthError,
    DistributedUnsupportedError,
    EngineError,
    EngineStoppedError,
    InvalidRequestError,
    MemoryBudgetError,
    ModelBusyError,
    ModelLoadError,
    ModelNotFoundError,
    QueueFullError,
    RankLostError,
    RequestTimeoutError,
    UnsupportedModelError,
)

log = logging.getLogger(__name__)

# Most specific first: (exception class, HTTP status, OpenAI error type, code).
_ENGINE_ERRORS: tuple[tuple[type[EngineError], int, str, str | None], ...] = (
    (ContextLengthError, 400, "invalid_request_error", "context_length_exceeded"),
    (InvalidRequestError, 400, "invalid_request_error", "invalid_value"),
    (ModelNotFoundError, 404, "invalid_request_error", "model_not_found"),
    (UnsupportedModelError, 400, "invalid_request_error", "unsupported_model"),
    (ModelLoadError, 500, "server_error", "model_load_failed"),
    (MemoryBudgetError, 503, "server_error", "memory_budget_exceeded"),
    (ModelBusyError, 409, "invalid_request_error", "model_busy"),
    (RankLostError, 503, "server_error", "rank_lost"),
    (DistributedUnsupportedError, 400, "invalid_request_error", "unsupported_on_distributed"),
    (EngineStoppedError, 503, "server_error", "engine_stopped"),
    (QueueFullError, 429, "rate_limit_error", "queue_full"),
    (RequestTimeoutError, 504, "timeout_error", "request_timeout"),
    (EngineError, 500, "server_error", None),
)

# Anthropic's error type for each status (4xx/5xx not listed fall back by class).
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def anthropic_type(status: int) -> str:
    """Anthropic's `error.type` for an HTTP status."""
    return _ANTHROPIC_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")


def _absent(description: str) -> Any:
    """A field left out of the body when None (documented as optional, never null)."""
    return Field(None, exclude_if=lambda v: v is None, description=description)


_N_PROMPT = "context_length_exceeded only: the prompt's tokens"
_N_CTX = "context_length_exceeded only: the model's context, in tokens"


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None
    n_prompt_tokens: int | SkipJsonSchema[None] = _absent(_N_PROMPT)
    n_ctx: int | SkipJsonSchema[None] = _absent(_N_CTX)


class OpenAIError(BaseModel):
    """OpenAI's error body."""

    error: OpenAIErrorDetail


class AnthropicErrorDetail(BaseModel):
    type: str
    message: str
    n_prompt_tokens: int | SkipJsonSchema[None] = _absent(_N_PROMPT)
    n_ctx: int | SkipJsonSchema[None] = _absent(_N_CTX)


class AnthropicError(BaseModel):
    """Anthropic's error body (and its stream's `error` event)."""

    type: Literal["error"]
    error: AnthropicErrorDetail


class ApiError(Exception):
    """An error response decided at the HTTP edge (bad parameter, auth, ...)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        n_prompt_tokens: int | None = None,
        n_ctx: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers
        self.n_prompt_tokens = n_prompt_tokens  # with n_ctx: how far a prompt is past the context
        self.n_ctx = n_ctx

    def openai_error(self) -> OpenAIError:
        detail = OpenAIErrorDetail(
            message=self.message,
            type=self.type,
            param=self.param,
            code=self.code,
            n_prompt_tokens=self.n_prompt_tokens,
            n_ctx=self.n_ctx,
        )
        return OpenAIError(error=detail)

    def anthropic_error(self) -> AnthropicError:
        """The type follows the status; the message is the same."""
        detail = AnthropicErrorDetail(
            type=anthropic_type(self.status),
            message=self.message,
            n_prompt_tokens=self.n_prompt_tokens,
            n_ctx=self.n_ctx,
        )
        return AnthropicError(type="error", error=detail)

    def body(self) -> dict[str, Any]:
        """OpenAI's shape."""
        return self.openai_error().model_dump()

    def anthropic_body(self) -> dict[str, Any]:
        """Anthropic's shape."""
        return self.anthropic_error().model_dump()


class ClientDisconnectedError(Exception):
    """The client went away before the response was ready; nothing can be sent."""


def from_exception(exc: BaseException) -> ApiError:
    """The ApiError for any exception (engine errors mapped, the rest a 500)."""
    if isinstance(exc, ApiError):
        return exc
    for cls, status, kind, code in _ENGINE_ERRORS:
        if isinstance(exc, cls):
            param = getattr(exc, "param", None)
            if isinstance(exc, ModelNotFoundError):
                param = "model"
            headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, QueueFullError) else None
            sizes: dict[str, int | None] = {}
            if isinstance(exc, ContextLengthError) and exc.n_ctx is not None:
                sizes = {"n_prompt_tokens": exc.n_prompt_tokens, "n_ctx": exc.n_ctx}
            return ApiError(status, str(exc), type=kind, param=param, code=code, headers=headers, **sizes)
    log.error("unexpected error", exc_info=exc)
    return ApiError(500, f"internal error: {type(exc).__name__}: {exc}", type="server_error")


def _validation_error(exc: RequestValidationError) -> ApiError:
    errors = list(exc.errors())
    parts = []
    first_param: str | None = None
    code = "invalid_value"
    for err in errors[:3]:
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        param = ".".join(loc) or None
        first_param = first_param or param
        if err.get("type") == "json_invalid":
            code = "invalid_json"
            parts.append(f"the body is not valid JSON: {err.get('ctx', {}).get('error', err.get('msg'))}")
            continue
        if err.get("type") == "missing":
            code = "missing_required_parameter"
        parts.append(f"{param or 'request body'}: {err.get('msg')}")
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return ApiError(400, "; ".join(parts) + more, param=first_param, code=code)


def error_response(err: ApiError, *, anthropic: bool = False) -> JSONResponse:
    body = err.anthropic_body() if anthropic else err.body()
    return JSONResponse(body, status_code=err.status, headers=err.headers)


def install_error_handlers(app: FastAPI, *, anthropic_prefix: str | None = None) -> None:
    """Every error leaves in the OpenAI shape, except under `anthropic_prefix` (a path
    and everything below it), where it has Anthropic's; validation failures are 400, not 422."""

    def respond(request: Request, err: ApiError) -> JSONResponse:
        path = request.url.path
        anthropic = anthropic_prefix is not None and (
            path == anthropic_prefix or path.startswith(anthropic_prefix.rstrip("/") + "/")
        )
        return error_response(err, anthropic=anthropic)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return respond(request, _validation_error(exc))

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        message = str(exc.detail)
        if exc.status_code == 404:
            message = f"no route {request.method} {request.url.path}"
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        return respond(request, ApiError(exc.status_code, message, type=kind, headers=exc.headers))

    async def on_error(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, ClientDisconnectedError):
            return JSONResponse({}, status_code=499)  # nobody is listening
        return respond(request, from_exception(exc))

    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    for cls in (ApiError, EngineError, ClientDisconnectedError, Exception):
        app.add_exception_handler(cls, on_error)
