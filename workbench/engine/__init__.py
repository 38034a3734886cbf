"""The MLX engine: one thread owns every MLX call; everything else talks to `Engine`.
Importing this package does not import mlx (the engine thread does, after loading a BLAS)."""

from workbench.engine.cache_miss import CacheMiss
from workbench.engine.engine import Engine
from workbench.engine.errors import (
    ContextLengthError,
    EngineError,
    EngineStoppedError,
    InvalidRequestError,
    MemoryBudgetError,
    ModelBusyError,
    ModelLoadError,
    ModelNotFoundError,
    QueueFullError,
    RequestTimeoutError,
    UnsupportedModelError,
)
from workbench.engine.models.downloads import DownloadProgress
from workbench.engine.models.hub import CachedModel, cached_models
from workbench.engine.models.hub_search import HubModel, fits, repo_files, search_models
from workbench.engine.models.recipes import RECIPE_HELP, QuantRecipe, QuantResult
from workbench.engine.status import EngineStatus
from workbench.engine.streams import CancelToken, collect
from workbench.engine.tuning import TuneConfig, TuneReport, TuneResult
from workbench.engine.types import (
    Chunk,
    Completion,
    Constraint,
    GenerationRequest,
    GenerationStats,
    MemoryInfo,
    Message,
    ModelInfo,
    SamplingParams,
    TokenComparison,
    TokenLogprob,
)

__all__ = [
    "RECIPE_HELP",
    "CacheMiss",
    "CachedModel",
    "CancelToken",
    "Chunk",
    "Completion",
    "Constraint",
    "ContextLengthError",
    "DownloadProgress",
    "Engine",
    "EngineError",
    "EngineStatus",
    "EngineStoppedError",
    "GenerationRequest",
    "GenerationStats",
    "HubModel",
    "InvalidRequestError",
    "MemoryBudgetError",
    "MemoryInfo",
    "Message",
    "ModelBusyError",
    "ModelInfo",
    "ModelLoadError",
    "ModelNotFoundError",
    "QuantRecipe",
    "QuantResult",
    "QueueFullError",
    "RequestTimeoutError",
    "SamplingParams",
    "TokenComparison",
    "TokenLogprob",
    "TuneConfig",
    "TuneReport",
    "TuneResult",
    "UnsupportedModelError",
    "cached_models",
    "collect",
    "fits",
    "repo_files",
    "search_models",
]
