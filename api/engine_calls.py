"""Awaiting the engine from a route without blocking the event loop, within the request
timeout: model resolution, whole completions, chunk streams over several choices, and the
published status (fresh when idle). Every MLX call stays on the engine thread; no wire format."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing
from typing import Any, TypeVar

import anyio.to_thread
from starlette.requests import Request

from workbench.config import Settings
from workbench.engine import (
    CancelToken,
    Chunk,
    Completion,
    Engine,
    EngineStatus,
    EngineStoppedError,
    GenerationRequest,
    GenerationStats,
    RequestTimeoutError,
    collect,
)

T = TypeVar("T")


def engine_of(request: Request) -> Engine:
    return request.app.state.engine


def settings_of(request: Request) -> Settings:
    """The app's settings (an engine shared by several apps keeps its own)."""
    return request.app.state.settings


async def on_engine(request: Request, fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` (an Engine call: it waits for the engine thread) from a worker thread,
    within the request's time limit (past it, the thread is left to finish alone)."""
    call = anyio.to_thread.run_sync(fn, *args, abandon_on_cancel=True)
    return await within(deadline(request), call)


async def resolve_model(request: Request, model: str) -> str:
    """The registered id behind `model`: a registered id or alias, plus hub ids or server
    paths only as far as the api_models setting allows; 404s when unknown."""
    engine, scope = engine_of(request), settings_of(request).api_models
    info = await on_engine(request, lambda: engine.model_info(model, scope=scope))
    return info.id


def deadline(request: Request) -> CancelToken:
    """The request's clock, started by its first engine call: a parent token every
    generation of one HTTP request shares, cancelled once the request_timeout_s setting
    has passed (0 = never)."""
    clock = getattr(request.state, "clock", None)
    if clock is None:
        clock = request.state.clock = CancelToken(timeout_s=settings_of(request).request_timeout_s or None)
    return clock


def _timeout(clock: CancelToken, doing: str) -> RequestTimeoutError:
    return RequestTimeoutError(
        f"the request ran past the server's request timeout ({clock.timeout_s:g} s, "
        f"WORKBENCH_REQUEST_TIMEOUT_S) {doing}"
    )


# A generation the engine is stepping ends at the deadline by itself (its last chunk
# says what was made); `within` is the backstop for work the engine thread has not
# reached (it is busy elsewhere), this much later.
_BACKSTOP_S = 1.0


async def within(clock: CancelToken, awaitable: Awaitable[T]) -> T:
    """`awaitable`'s result, or RequestTimeoutError once `clock` has run out, even while
    the engine thread is busy elsewhere (a model load, a benchmark holding it); the
    clock is then cancelled, which stops the generations it governs."""
    left = clock.remaining_s
    if left is None:
        return await awaitable
    try:
        return await asyncio.wait_for(awaitable, max(left, 0.0) + _BACKSTOP_S)
    except TimeoutError:
        clock.cancel()
        raise _timeout(clock, "waiting for the engine") from None


def note_generation(request: Request, stats: GenerationStats) -> None:
    """Leave a finished generation's stats where the request middleware reads them (the
    dashboard's recent requests, api/metrics.py)."""
    held = request.scope.get("workbench.generations")
    if isinstance(held, list):
        held.append(stats)


def check_finished(stats: GenerationStats, clock: CancelToken) -> None:
    """A generation cancelled under a live client ran out of time, or the engine is
    shutting down."""
    if stats.finish_reason != "cancelled":
        return
    if clock.timed_out:
        raise _timeout(clock, f"after {stats.generation_tokens} generated tokens")
    raise EngineStoppedError("the engine stopped during this generation")


async def _chunks(stream: AsyncIterator[Chunk]) -> list[Chunk]:
    return [chunk async for chunk in stream]


async def collect_all(request: Request, requests: Sequence[GenerationRequest]) -> list[Completion]:
    """Each request to completion, one after the other (their tok/s stay comparable),
    all within one request timeout."""
    engine, clock = engine_of(request), deadline(request)
    results = []
    for req in requests:
        async with aclosing(engine.astream(req, clock.child())) as stream:
            chunks = await within(clock, _chunks(stream))
        result = collect(iter(chunks))
        note_generation(request, result.stats)
        check_finished(result.stats, clock)
        results.append(result)
    return results


async def stream_all(
    request: Request, requests: Sequence[GenerationRequest]
) -> AsyncIterator[tuple[int, Chunk]]:
    """(choice index, chunk) pairs, one request after the other, all within one request
    timeout; closing the iterator (a dropped client) cancels the running generation and
    skips the rest."""
    engine, clock = engine_of(request), deadline(request)
    for i, req in enumerate(requests):
        finished = False
        # aclosing: a client that leaves mid-stream closes this generator, and with it
        # the engine stream at once (not whenever the garbage collector gets to it).
        async with aclosing(engine.astream(req, clock.child())) as stream:
            while not finished:
                try:
                    chunk = await within(clock, anext(stream))
                except StopAsyncIteration:
                    break
                if chunk.stats is not None:
                    note_generation(request, chunk.stats)
                    check_finished(chunk.stats, clock)
                    finished = True
                yield i, chunk
        if not finished:
            raise EngineStoppedError("the stream ended without its final chunk (engine stopped?)")


# How long /health and /metrics wait for fresh figures from an idle engine before they
# answer with the last published ones (a busy engine never makes them wait longer).
FRESH_STATUS_S = 0.25


async def fresh_status(engine: Engine) -> EngineStatus | None:
    """The engine's published status, refreshed first when the engine is idle (it answers
    within FRESH_STATUS_S then); while it loads, generates or is held, the last one
    published (it republishes at least twice a second while generating)."""
    if engine.activity() or engine.active_streams or engine.exclusive_held:
        return engine.status()
    refresh = engine.refresh_status()
    if refresh is not None:
        # shield: a timeout leaves the refresh queued (one at most), it does not cancel it.
        with contextlib.suppress(TimeoutError, EngineStoppedError):
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(refresh)), FRESH_STATUS_S)
    return engine.status()
