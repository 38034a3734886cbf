"""GET /health: engine state, loaded models and memory; 503 while the engine starts or
loads its default model, after that load failed, while draining (SIGTERM) and once it
stopped. Open even when an API key is set."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.openapi import Health, errors
from api.runs import engine_of

router = APIRouter()
DRAINING = "the server is shutting down (SIGTERM): requests in flight finish, new ones get 503"


@router.get(
    "/health",
    response_model=None,
    responses={
        200: {"model": Health, "description": "The engine runs and its default model is loaded"},
        503: {"model": Health, "description": "Loading the default model, failed to, draining or stopped"},
        **errors((403,)),
    },
)
def health(request: Request) -> dict[str, Any] | JSONResponse:
    engine = engine_of(request)
    if not engine.running:
        return JSONResponse({"status": "stopped", "engine": {"running": False}}, status_code=503)
    status, detail = getattr(request.app.state, "status", ("ok", ""))
    if request.app.state.drain.draining:  # whatever the default model's load did meanwhile
        status, detail = "draining", DRAINING
    if status != "ok":
        return JSONResponse(
            {"status": status, "detail": detail, "engine": {"running": True}}, status_code=503
        )
    models = engine.models()
    return {
        "status": "ok",
        "engine": {
            "running": True,
            "device": engine.device,
            "blas": engine.blas,
            "versions": engine.versions,
            "default_model": engine.default_model,
            "active_streams": engine.active_streams,
        },
        "loaded_models": [asdict(m) for m in models if m.loaded],
        "memory": asdict(engine.memory()),
    }
