"""GET /health: engine state, what it is busy with, loaded models and memory; 503 while the
engine starts or loads its default model, after that load failed, while draining (SIGTERM)
and once it stopped. Open even when an API key is set; never waits for the engine."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.engine_calls import engine_of, fresh_status
from api.openapi import Health, errors
from workbench.engine import Engine

router = APIRouter()
DRAINING = "the server is shutting down (SIGTERM): requests in flight finish, new ones get 503"


def _engine_facts(engine: Engine) -> dict[str, Any]:
    """What the engine is doing now, from state it publishes (never waits for it)."""
    status = engine.status()
    return {
        "running": engine.running,
        "device": engine.device,
        "blas": engine.blas,
        "versions": engine.versions,
        "default_model": status.default_model if status else None,
        "active_streams": engine.active_streams,
        "queued_generations": engine.queued_generations,
        "activity": list(engine.activity()),
    }


@router.get(
    "/health",
    response_model=None,
    responses={
        200: {"model": Health, "description": "The engine runs and its default model is loaded"},
        503: {"model": Health, "description": "Loading the default model, failed to, draining or stopped"},
        **errors((403,)),
    },
)
async def health(request: Request) -> dict[str, Any] | JSONResponse:
    """Answers within a second whatever the engine is doing (a load, a benchmark): everything
    here comes from the state the engine publishes (Engine.status, Engine.activity), refreshed
    first when the engine can do that at once. `engine.activity` names what holds the engine
    ('loading <id>', 'benchmark <name>, run <id>')."""
    engine = engine_of(request)
    if not engine.running:
        return JSONResponse({"status": "stopped", "engine": {"running": False}}, status_code=503)
    status, detail = getattr(request.app.state, "status", ("ok", ""))
    if request.app.state.drain.draining:  # whatever the default model's load did meanwhile
        status, detail = "draining", DRAINING
    published = await fresh_status(engine)
    facts = _engine_facts(engine)
    if status != "ok" or published is None:
        detail = detail or "the engine is starting"
        return JSONResponse(
            {"status": status if status != "ok" else "loading", "detail": detail, "engine": facts},
            status_code=503,
        )
    return {
        "status": "ok",
        "engine": facts,
        "loaded_models": [asdict(m) for m in published.models if m.loaded],
        "memory": asdict(published.memory),
        "memory_age_s": round(max(time.time() - published.memory_at, 0.0), 3),
    }
