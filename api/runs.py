"""Running engine requests for a route without blocking the event loop: model
resolution, whole completions, and chunk streams over several choices.

Every MLX call still happens on the engine thread; the loop only awaits it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from workbench.config import Settings
from workbench.engine import (
    CancelToken,
    Chunk,
    Completion,
    Engine,
    EngineStoppedError,
    GenerationRequest,
    GenerationStats,
    RequestTimeoutError,
    collect,
)


def engine_of(request: Request) -> Engine:
    return request.app.state.engine


def settings_of(request: Request) -> Settings:
    """The app's settings (an engine shared by several apps keeps its own)."""
    return request.app.state.settings


async def resolve_model(request: Request, model: str) -> str:
    """The registered id behind `model`: a registered id or alias, plus hub ids or server
    paths only as far as the api_models setting allows; 404s when unknown. The pool
    thread only waits for the engine thread's answer."""
    engine, scope = engine_of(request), settings_of(request).api_models
    info = await run_in_threadpool(lambda: engine.model_info(model, scope=scope))
    return info.id


def deadline(request: Request) -> CancelToken:
    """The request's clock: a parent token every generation of one HTTP request shares,
    cancelled once the request_timeout_s setting has passed (0 = never)."""
    return CancelToken(timeout_s=settings_of(request).request_timeout_s or None)


def check_finished(stats: GenerationStats, clock: CancelToken) -> None:
    """A generation cancelled under a live client ran out of time, or the engine is
    shutting down."""
    if stats.finish_reason != "cancelled":
        return
    if clock.timed_out:
        raise RequestTimeoutError(
            f"the request ran past the server's request timeout ({clock.timeout_s:g} s, "
            f"WORKBENCH_REQUEST_TIMEOUT_S) after {stats.generation_tokens} generated tokens"
        )
    raise EngineStoppedError("the engine stopped during this generation")


async def collect_all(request: Request, requests: Sequence[GenerationRequest]) -> list[Completion]:
    """Each request to completion, one after the other (their tok/s stay comparable),
    all within one request timeout."""
    engine, clock = engine_of(request), deadline(request)
    results = []
    for req in requests:
        async with aclosing(engine.astream(req, clock.child())) as stream:
            chunks = [chunk async for chunk in stream]
        result = collect(iter(chunks))
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
            async for chunk in stream:
                if chunk.stats is not None:
                    check_finished(chunk.stats, clock)
                    finished = True
                yield i, chunk
        if not finished:
            raise EngineStoppedError("the stream ended without its final chunk (engine stopped?)")
