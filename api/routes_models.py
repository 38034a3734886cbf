"""GET /v1/models and /v1/models/{id}: every registered id, loaded or not, from the state
the engine publishes (answers at once while the engine loads a model or runs a benchmark)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request

from api.openapi import MODEL_ERRORS, MODELS_ERRORS, ModelList, ModelObject, errors, success
from api.runs import engine_of
from workbench.engine import Engine, EngineStatus, EngineStoppedError, ModelInfo, ModelNotFoundError

router = APIRouter()


def _model(info: ModelInfo) -> dict[str, Any]:
    """OpenAI's model object; our extras (source, variant, bits, size, loaded) beside it."""
    created = 0
    if info.path and Path(info.path).exists():
        created = int(Path(info.path).stat().st_mtime)
    extras = asdict(info)
    extras.pop("id")
    return {"id": info.id, "object": "model", "created": created, "owned_by": info.source, **extras}


def _published(engine: Engine) -> EngineStatus:
    status = engine.status()
    if status is None:
        raise EngineStoppedError("the engine is starting; try again in a moment")
    return status


@router.get("/v1/models", response_model=None, responses={**success(ModelList), **errors(MODELS_ERRORS)})
async def list_models(request: Request) -> dict[str, Any]:
    return {"object": "list", "data": [_model(i) for i in _published(engine_of(request)).models]}


@router.get(
    "/v1/models/{model_id:path}",
    response_model=None,
    responses={**success(ModelObject), **errors(MODEL_ERRORS)},
)
async def get_model(model_id: str, request: Request) -> dict[str, Any]:
    """A registered id, or an alias of one ('default' included): the model object of the id."""
    info = _published(engine_of(request)).find(model_id)
    if info is None:
        raise ModelNotFoundError(
            f"model {model_id!r} is not registered; GET /v1/models lists the ids", model_id
        )
    return _model(info)
