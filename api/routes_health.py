"""GET /health and its reply model: engine state, its ranks, what holds it, loaded models and memory;
503 while starting or loading the default model, after that load failed, draining, a rank lost, stopped.
Open even with an API key; never waits for a busy engine (published state only)."""

from __future__ import annotations

import socket
import time
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import Field
from pydantic.json_schema import SkipJsonSchema

from api.engine_calls import engine_of, fresh_status
from api.openapi import errors
from api.wire import ReplyModel, omitted
from workbench.engine import Engine, MemoryInfo, ModelInfo

router = APIRouter()
ALONE = {"ranks": 1, "backend": "none", "parallelism": "none", "hosts": [socket.gethostname()], "members": []}
DRAINING = "the server is shutting down (SIGTERM): requests in flight finish, new ones get 503"


class RankFacts(ReplyModel):
    """How many processes the engine spans (1: this one), over what and where."""

    ranks: int
    backend: str = Field(description="mx.distributed backend (ring, jaccl, mpi, nccl); 'none' alone")
    parallelism: str = Field(description="'tensor' or 'pipeline'; 'none' alone")
    hosts: list[str]
    members: list[dict[str, Any]] = Field(description="each rank's rank, host and pid")
    lost: str | SkipJsonSchema[None] = omitted("why the group can no longer compute")


class EngineFacts(ReplyModel):
    """What the engine is doing now, from the state it publishes."""

    running: bool
    device: str
    blas: str
    versions: dict[str, str]
    default_model: str | None
    active_streams: int
    queued_generations: int
    activity: list[str] = Field(description="what holds the engine: 'loading <id>', 'benchmark <name>, ...'")
    distributed: RankFacts


class StoppedEngine(ReplyModel):
    running: Literal[False] = False


class Health(ReplyModel):
    """200 with status "ok"; 503 with "loading", "failed", "draining", "rank_lost" or "stopped"."""

    status: Literal["ok", "loading", "failed", "draining", "rank_lost", "stopped"]
    detail: str | SkipJsonSchema[None] = omitted("why it is not ok (503 but 'stopped')")
    engine: EngineFacts | StoppedEngine
    loaded_models: list[ModelInfo] | SkipJsonSchema[None] = omitted("when ok")
    memory: MemoryInfo | SkipJsonSchema[None] = omitted("when ok: GB of 1e9 bytes")
    memory_age_s: float | SkipJsonSchema[None] = omitted("when ok: how old the memory figures are")


def _engine_facts(engine: Engine) -> EngineFacts:
    """What the engine is doing now, from state it publishes (never waits for it)."""
    status = engine.status()
    return EngineFacts(
        running=engine.running,
        device=engine.device,
        blas=engine.blas,
        versions=engine.versions,
        default_model=status.default_model if status else None,
        active_streams=engine.active_streams,
        queued_generations=engine.queued_generations,
        activity=list(engine.activity()),
        distributed=RankFacts(**(engine.distributed or ALONE)),
    )


@router.get(
    "/health",
    response_model=None,
    responses={
        200: {"model": Health, "description": "The engine runs and its default model is loaded"},
        503: {
            "model": Health,
            "description": "Loading the default model, failed to, draining, a rank lost, stopped",
        },
        **errors((403,)),
    },
)
async def health(request: Request) -> Health | JSONResponse:
    """Answers within a second whatever the engine is doing (a load, a benchmark): everything
    here comes from the state the engine publishes (Engine.status, Engine.activity), refreshed
    first when the engine can do that at once. `engine.activity` names what holds the engine
    ('loading <id>', 'benchmark <name>, run <id>')."""
    engine = engine_of(request)
    lost = (engine.distributed or {}).get("lost")
    if lost:
        return _unavailable(Health(status="rank_lost", detail=lost, engine=_engine_facts(engine)))
    if not engine.running:
        return _unavailable(Health(status="stopped", engine=StoppedEngine()))
    status, detail = getattr(request.app.state, "status", ("ok", ""))
    if request.app.state.drain.draining:  # whatever the default model's load did meanwhile
        status, detail = "draining", DRAINING
    published = await fresh_status(engine)
    facts = _engine_facts(engine)
    if status != "ok" or published is None:
        status = status if status != "ok" else "loading"
        return _unavailable(Health(status=status, detail=detail or "the engine is starting", engine=facts))
    return Health(
        status="ok",
        engine=facts,
        loaded_models=[m for m in published.models if m.loaded],
        memory=published.memory,
        memory_age_s=round(max(time.time() - published.memory_at, 0.0), 3),
    )


def _unavailable(reply: Health) -> JSONResponse:
    return JSONResponse(reply.model_dump(), status_code=503)
