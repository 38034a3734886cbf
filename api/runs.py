"""Running engine requests for a route without blocking the event loop: model
resolution, whole completions, and chunk streams over several choices.

Every MLX call still happens on the engine thread; the loop only awaits it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from workbench.engine import (
    Chunk,
    Completion,
    Engine,
    EngineStoppedError,
    GenerationRequest,
    GenerationStats,
    collect,
)


def engine_of(request: Request) -> Engine:
    return request.app.state.engine


async def resolve_model(engine: Engine, model: str) -> str:
    """The registered id behind `model` (an id, alias or hub id; never a server path,
    which a remote caller has no business naming); 404s when unknown. The pool thread
    only waits for the engine thread's answer."""
    info = await run_in_threadpool(lambda: engine.model_info(model, allow_paths=False))
    return info.id


def check_finished(stats: GenerationStats) -> None:
    """A generation cancelled under a live client means the engine is shutting down."""
    if stats.finish_reason == "cancelled":
        raise EngineStoppedError("the engine stopped during this generation")


async def collect_all(engine: Engine, requests: Sequence[GenerationRequest]) -> list[Completion]:
    """Each request to completion, one after the other (their tok/s stay comparable)."""
    results = []
    for req in requests:
        async with aclosing(engine.astream(req)) as stream:
            chunks = [chunk async for chunk in stream]
        result = collect(iter(chunks))
        check_finished(result.stats)
        results.append(result)
    return results


async def stream_all(
    engine: Engine, requests: Sequence[GenerationRequest]
) -> AsyncIterator[tuple[int, Chunk]]:
    """(choice index, chunk) pairs, one request after the other; closing the iterator
    (a dropped client) cancels the running generation and skips the rest."""
    for i, req in enumerate(requests):
        finished = False
        # aclosing: a client that leaves mid-stream closes this generator, and with it
        # the engine stream at once (not whenever the garbage collector gets to it).
        async with aclosing(engine.astream(req)) as stream:
            async for chunk in stream:
                if chunk.stats is not None:
                    check_finished(chunk.stats)
                    finished = True
                yield i, chunk
        if not finished:
            raise EngineStoppedError("the stream ended without its final chunk (engine stopped?)")
