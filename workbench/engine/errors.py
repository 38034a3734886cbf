"""Engine exceptions: one small hierarchy that the HTTP layer maps to statuses and the CLI to
messages; the engine knows neither."""

from __future__ import annotations


class EngineError(Exception):
    """Base class for every error the engine raises on purpose."""


class InvalidRequestError(EngineError, ValueError):
    """A request parameter is out of range or inconsistent; `param` names it."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class ContextLengthError(InvalidRequestError):
    """The prompt (plus max_tokens, when those are refused) does not fit the model's context
    window; `n_prompt_tokens` and `n_ctx` say by how much (as llama.cpp's error does)."""

    def __init__(
        self,
        message: str,
        param: str | None = None,
        *,
        n_prompt_tokens: int | None = None,
        n_ctx: int | None = None,
    ) -> None:
        super().__init__(message, param)
        self.n_prompt_tokens = n_prompt_tokens
        self.n_ctx = n_ctx


class ModelNotFoundError(EngineError, LookupError):
    """No registered model, local folder, GGUF file or allowed hub id matches."""

    def __init__(self, message: str, model_id: str | None = None) -> None:
        super().__init__(message)
        self.model_id = model_id


class ModelLoadError(EngineError):
    """A model was found but could not be converted or loaded."""


class UnsupportedModelError(ModelLoadError):
    """The model uses an architecture, tensor type or tokenizer we cannot import."""


class MemoryBudgetError(EngineError):
    """Loading would exceed the memory budget even after evicting idle models."""


class EngineStoppedError(EngineError, RuntimeError):
    """The engine thread is not running (never started, or shut down)."""


class ModelBusyError(EngineError):
    """The model is generating right now, so it cannot be unloaded."""


class QueueFullError(EngineError):
    """Too many generations are running or waiting; retry after `retry_after_s`."""

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RequestTimeoutError(EngineError, TimeoutError):
    """A generation ran past its deadline (the request timeout) and was stopped."""


class RankLostError(EngineError):
    """A rank of a distributed engine died or stalled: the group cannot compute any more, so
    generations in flight end and new ones are refused until the server is restarted."""


class DistributedUnsupportedError(EngineError):
    """An engine call that a distributed engine does not run (it would drive one rank alone)."""
