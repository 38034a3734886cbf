"""MLX Workbench: chat with, compare, quantize and benchmark local models on one MLX engine.
The public API is deliberately narrow; importing it loads no model and no mlx."""

from workbench.config import Settings
from workbench.engine import (
    CancelToken,
    Chunk,
    Completion,
    ContextLengthError,
    Engine,
    EngineError,
    GenerationRequest,
    GenerationStats,
    InvalidRequestError,
    MemoryInfo,
    Message,
    ModelInfo,
    ModelNotFoundError,
    SamplingParams,
)

__version__ = "0.1.0"

__all__ = [
    "CancelToken",
    "Chunk",
    "Completion",
    "ContextLengthError",
    "Engine",
    "EngineError",
    "GenerationRequest",
    "GenerationStats",
    "InvalidRequestError",
    "MemoryInfo",
    "Message",
    "ModelInfo",
    "ModelNotFoundError",
    "SamplingParams",
    "Settings",
    "__version__",
]
