"""SSE framing (sse-starlette) of reply models in OpenAI's and Anthropic's dialects, and a
generation's life tied to its client (a dropped connection cancels the engine's work).
Knows no API field names beyond each dialect's error event, `[DONE]` and `type`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel
from sse_starlette.sse import EventSourceResponse
from starlette.requests import Request

from api.errors import ApiError, ClientDisconnectedError, from_exception

log = logging.getLogger(__name__)
T = TypeVar("T")
PING_S = 15  # a comment line now and then keeps proxies from closing quiet streams


async def _wait_for_disconnect(request: Request) -> None:
    # The body has been read, so the next ASGI message can only be the disconnect.
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it (and so its generation) if the client leaves first."""
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:  # the server is shutting down: stop the work first
        await _cancel(task)
        raise
    finally:
        watch.cancel()
    if task.done():
        return task.result()
    await _cancel(task)
    raise ClientDisconnectedError


async def _cancel(task: asyncio.Future[Any]) -> None:
    """Cancel and wait, so nothing it was iterating is still running afterwards."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def start_stream(request: Request, items: AsyncIterator[T]) -> AsyncIterator[T]:
    """Wait for the first item before any header is sent, so errors that come before
    the first token (unknown model, prompt too long) still get their HTTP status."""
    try:
        first = await until_disconnect(request, anext(items))  # type: ignore[arg-type]
    except BaseException:
        await items.aclose()  # type: ignore[attr-defined]
        raise

    async def chained() -> AsyncIterator[T]:
        try:
            yield first
            async for item in items:
                yield item
        finally:
            await items.aclose()  # type: ignore[attr-defined]

    return chained()


@dataclass(frozen=True)
class SseDialect:
    """How one API frames its stream."""

    named: bool  # each payload's "type" is also sent as the SSE `event:` name
    error_body: Callable[[ApiError], dict[str, Any]]  # the event a late failure becomes
    done: str | None  # the `data:` sent after the last event, if any


# OpenAI: bare `data:` events, `data: [DONE]` at the end.
OPENAI_SSE = SseDialect(named=False, error_body=ApiError.body, done="[DONE]")
# Anthropic: `event: <type>` + `data:`, `event: error` for failures, no end marker.
ANTHROPIC_SSE = SseDialect(named=True, error_body=ApiError.anthropic_body, done=None)


def _responses_error(err: ApiError) -> dict[str, Any]:
    # A failure the event sequence could not report itself (it ends with response.failed).
    return {
        "type": "error",
        "code": err.code or err.type,
        "message": err.message,
        "param": err.param,
        "sequence_number": 0,
    }


# Responses: `event: <type>` + `data:`, no end marker (the last event is response.completed).
RESPONSES_SSE = SseDialect(named=True, error_body=_responses_error, done=None)


def _frame(payload: dict[str, Any], named: bool) -> dict[str, str]:
    frame = {"data": json.dumps(payload, separators=(",", ":"), ensure_ascii=False)}
    if named:
        frame["event"] = str(payload["type"])
    return frame


def sse_response(
    events: AsyncIterator[BaseModel] | AsyncIterator[dict[str, Any]], dialect: SseDialect = OPENAI_SSE
) -> EventSourceResponse:
    """Frame reply models (or plain JSON payloads) as SSE events in `dialect` (OpenAI's by
    default: `data:` events ending with `data: [DONE]`), one model_dump each.

    A failure after the headers went out is sent as one error event and the stream is
    closed without the end marker. A client that disconnects cancels the iteration
    (sse-starlette cancels it), which cancels the generation behind it.
    """

    async def framed() -> AsyncIterator[dict[str, str]]:
        try:
            async for event in events:
                payload = event.model_dump() if isinstance(event, BaseModel) else event
                yield _frame(payload, dialect.named)
        except Exception as exc:
            err = from_exception(exc)
            log.warning("stream failed after headers: %s", err.message)
            yield _frame(dialect.error_body(err), dialect.named)
            return
        finally:
            await events.aclose()  # type: ignore[attr-defined]
        if dialect.done is not None:
            yield {"data": dialect.done}

    return EventSourceResponse(framed(), ping=PING_S, sep="\n")
