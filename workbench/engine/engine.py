"""Engine: the facade every consumer uses (API, UI, benchmarks, notebooks, CLI).

Owns one EngineWorker; every method hands its MLX work to that thread. mlx is
imported on the thread itself, after the optimized BLAS is loaded, so importing
this module is cheap and side-effect free. Knows no HTTP, Gradio or pandas.
"""

from __future__ import annotations

import atexit
import logging
import platform
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, aclosing, closing
from functools import partial
from typing import TYPE_CHECKING, Any

from workbench.config import ApiModels, Settings
from workbench.engine.errors import EngineStoppedError, InvalidRequestError, QueueFullError
from workbench.engine.streams import CancelToken, StreamState
from workbench.engine.types import (
    Chunk,
    Completion,
    GenerationRequest,
    GenerationStats,
    MemoryInfo,
    Message,
    ModelInfo,
    SamplingParams,
    TokenComparison,
    TokenLogprob,
)
from workbench.engine.worker import EngineWorker

if TYPE_CHECKING:
    from workbench.engine.recipes import QuantRecipe, QuantResult
    from workbench.engine.registry import ModelRegistry

log = logging.getLogger(__name__)


class Engine:
    """One MLX engine per process. `Engine(settings)` starts its thread at once
    (pass start=False to defer); use it as a context manager or call stop()."""

    def __init__(self, settings: Settings | None = None, *, start: bool = True) -> None:
        self.settings = settings or Settings.from_env()
        self._worker = EngineWorker(on_start=self._start_runtime, on_stop=self._stop_runtime)
        self._registry: ModelRegistry | None = None
        self.device = "unknown"
        self.blas = "unknown"
        self.versions: dict[str, str] = {}
        # Generations admitted (running, or waiting on the thread or in a batch).
        self._inflight = 0
        self._inflight_lock = threading.Lock()
        self._listeners: list[Callable[[GenerationStats], None]] = []
        self.model_loads = 0  # models loaded by this engine (counted on its thread)
        if start:
            self.start()

    # ---- lifecycle -------------------------------------------------------
    def _start_runtime(self) -> None:
        """Runs first on the engine thread: BLAS, then mlx, then the registry."""
        from workbench.engine import blas

        blas.preload(self.settings.blas)
        import mlx.core as mx
        import mlx_lm
        from mlx_lm.utils import maybe_set_recommended_wired_limit

        from workbench.engine.registry import ModelRegistry

        self.device = "cpu" if mx.default_device() == mx.cpu else "gpu"
        self.blas = blas.describe_blas() if self.device == "cpu" else "gpu"
        self.versions = {
            "python": platform.python_version(),
            "mlx": mx.__version__,
            "mlx_lm": mlx_lm.__version__,
        }
        maybe_set_recommended_wired_limit()  # Metal only; keeps weights resident
        self._registry = ModelRegistry(self.settings, float32=self.device == "cpu")
        log.info("engine started: device=%s blas=%s", self.device, self.blas)

    def _stop_runtime(self) -> None:
        """Runs last on the engine thread, after running streams were cancelled."""
        import mlx.core as mx

        if self._registry is not None:
            self._registry.unload_all()
        # MLX streams made on this thread must be destroyed on it before it exits;
        # left to thread-exit destructors they abort the process at interpreter exit.
        mx.synchronize()
        mx.clear_streams()

    def start(self) -> None:
        self._worker.start()
        # A script that never calls stop() must still shut the thread down cleanly.
        ref = weakref.ref(self)
        self._atexit = lambda: (engine := ref()) is not None and engine.stop()
        atexit.register(self._atexit)

    def stop(self) -> None:
        """Cancel running generations, unload every model, stop the thread. Idempotent."""
        self._worker.stop()
        if getattr(self, "_atexit", None) is not None:
            atexit.unregister(self._atexit)
            self._atexit = None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._worker.running

    @property
    def active_streams(self) -> int:
        """Generations currently running on the engine thread (0 = idle)."""
        return self._worker.active_streams

    @property
    def exclusive_held(self) -> bool:
        """A benchmark holds the engine (exclusive()): other work waits until it ends."""
        return self._worker.exclusive_held

    def _load(self, model_id: str | None) -> tuple[Any, float | None]:
        """registry.load on the engine thread, counting the loads it performs."""
        lm, load_s = self.registry.load(model_id)
        if load_s is not None:
            self.model_loads += 1
        return lm, load_s

    def add_stats_listener(self, listener: Callable[[GenerationStats], None]) -> None:
        """Call `listener(stats)` with every finished generation's stats (API, UI,
        benchmarks alike), on the consumer's thread; its errors are logged, never raised."""
        self._listeners.append(listener)

    def remove_stats_listener(self, listener: Callable[[GenerationStats], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _observe(self, chunk: Chunk) -> None:
        if chunk.stats is None:
            return
        for listener in list(self._listeners):
            try:
                listener(chunk.stats)
            except Exception:
                log.warning("stats listener failed", exc_info=True)

    @property
    def registry(self) -> ModelRegistry:
        if self._registry is None:
            raise EngineStoppedError("the engine has not started")
        return self._registry

    # ---- models ----------------------------------------------------------
    @property
    def default_model(self) -> str:
        return self._worker.call(lambda: self.registry.default_id())

    def models(self) -> list[ModelInfo]:
        """Every registered id (loaded or not), with variant, size and state."""
        return self._worker.call(lambda: self.registry.infos())

    def model_info(self, model_id: str | None = None, *, scope: ApiModels = "any") -> ModelInfo:
        """What is known of a model without loading it. The HTTP API passes its setting as
        `scope` (registry.resolve): registered ids only by default, never a path unless 'any'."""
        return self._worker.call(lambda: self.registry.info(self.registry.resolve(model_id, scope=scope)))

    def load(self, model_id: str | None = None) -> ModelInfo:
        """Load a model (converting a GGUF on first use); no-op if already loaded."""

        def work() -> ModelInfo:
            lm, _ = self._load(model_id)
            return self.registry.info(lm.entry)

        return self._worker.call(work)

    def unload(self, model_id: str) -> bool:
        """Unload a model and free MLX's cache; False if it was not loaded."""
        return self._worker.call(lambda: self.registry.unload(model_id))

    def tokenize(self, text: str, model_id: str | None = None) -> list[int]:
        return self._worker.call(lambda: list(self._load(model_id)[0].tokenizer.encode(text)))

    def detokenize(self, ids: Sequence[int], model_id: str | None = None) -> str:
        """Text of token ids; ids outside the vocabulary are an InvalidRequestError."""

        def work() -> str:
            lm, _ = self._load(model_id)
            vocab = lm.vocab_size
            bad = [i for i in ids if not (isinstance(i, int) and 0 <= i < vocab)]
            if bad:
                raise InvalidRequestError(
                    f"token id {bad[0]!r} is outside the vocabulary (size {vocab})", param="prompt_ids"
                )
            return lm.tokenizer.decode(list(ids))

        return self._worker.call(work)

    def memory(self) -> MemoryInfo:
        from workbench.engine import memory

        return self._worker.call(
            lambda: memory.snapshot(self.registry.budget_bytes, self.registry.loaded_bytes())
        )

    def reference_generate(
        self, prompt_ids: Sequence[int], max_tokens: int, model_id: str | None = None
    ) -> dict[str, Any]:
        """Raw mlx_lm.stream_generate on the engine thread (greedy, EOS ignored): the
        baseline the Engine's own overhead is measured against."""
        from workbench.engine.baseline import reference_stream_generate

        def work() -> dict[str, Any]:
            lm, _ = self._load(model_id)
            return reference_stream_generate(lm, list(prompt_ids), max_tokens)

        return self._worker.call(work)

    def quantize(self, source: str | None, recipe: QuantRecipe | str) -> QuantResult:
        """Make the `recipe` variant of `source` with mlx-lm's convert, on the engine
        thread, and register it (listed by models(), loadable by id at once). Reuses a
        variant made before from the same weights and recipe. An invalid recipe fails
        before anything is written; a failed conversion leaves nothing behind."""
        from workbench.engine.recipes import QuantRecipe

        recipe = recipe if isinstance(recipe, QuantRecipe) else QuantRecipe.parse(recipe)

        def work() -> QuantResult:
            from workbench.engine.quantize import quantize

            return quantize(self.registry, source or self.registry.default_id(), recipe)

        return self._worker.call(work)

    def compare_next_tokens(
        self, reference: str | None, model: str | None, ids: Sequence[int]
    ) -> TokenComparison:
        """`model`'s next-token predictions against `reference`'s on the token window
        `ids` (both loaded; one forward pass each). See workbench.quant for the metrics."""

        def work() -> TokenComparison:
            from workbench.engine.quality import compare_next_tokens

            ref, _ = self._load(reference)
            ref.busy += 1  # keep it loaded while the other model loads
            try:
                lm, _ = self._load(model)
            finally:
                ref.busy -= 1
            vocab = ref.vocab_size
            bad = [i for i in ids if not (isinstance(i, int) and 0 <= i < vocab)]
            if bad:
                raise InvalidRequestError(
                    f"token id {bad[0]!r} is outside the vocabulary (size {vocab})", "ids"
                )
            return compare_next_tokens(ref, lm, ids)

        return self._worker.call(work)

    def exclusive(self) -> AbstractContextManager[None]:
        """Sole use of the engine for this thread/task (benchmarks): waits for running
        generations to end and holds back everyone else's until the block exits."""
        return self._worker.exclusive()

    # ---- generation ------------------------------------------------------
    def _generation(self, request: GenerationRequest, state: StreamState) -> Iterator[Chunk | None]:
        """Runs on the engine thread, stepped one chunk at a time by the worker (None:
        a batched generation has nothing yet)."""
        from workbench.engine.generation import cancelled_before_start, stream_chunks
        from workbench.engine.scheduler import ModelBatch, batched_chunks

        if state.cancel.cancelled:  # cancelled while queued: do not load a model for it
            yield cancelled_before_start(request.model or self.registry.default_id(), state)
            return
        lm, load_s = self._load(request.model)
        lm.busy += 1
        try:
            if self.settings.max_batch > 1:
                if lm.batch is None:
                    lm.batch = ModelBatch(lm, self.settings)
                yield from batched_chunks(lm.batch, request, state, load_s=load_s)
            else:
                yield from stream_chunks(lm, request, state, load_s=load_s)
        finally:
            lm.busy -= 1
            lm.last_used = time.monotonic()

    @property
    def queued_generations(self) -> int:
        """Generations admitted and not yet finished (running or waiting)."""
        return self._inflight

    def _admit(self) -> None:
        limit = self.settings.max_batch + self.settings.max_queue
        with self._inflight_lock:
            if self._inflight >= limit:
                raise QueueFullError(
                    f"the engine is full: {self._inflight} generations are running or waiting "
                    f"(max_batch {self.settings.max_batch} + max_queue {self.settings.max_queue}); "
                    "retry in a moment"
                )
            self._inflight += 1

    def _leave(self) -> None:
        with self._inflight_lock:
            self._inflight -= 1

    def stream(self, request: GenerationRequest, cancel: CancelToken | None = None) -> Iterator[Chunk]:
        """Chunks as they are generated; the last one carries stats. Closing the
        iterator early, or cancelling `cancel`, stops generation within a token. The
        first next() raises QueueFullError when max_batch + max_queue generations are
        already running or waiting."""
        self._admit()
        try:
            # closing(): a consumer that leaves early closes the worker stream at once.
            with closing(
                self._worker.stream(partial(self._generation, request), cancel or CancelToken())
            ) as it:
                for chunk in it:
                    self._observe(chunk)
                    yield chunk
        finally:
            self._leave()

    async def astream(
        self, request: GenerationRequest, cancel: CancelToken | None = None
    ) -> AsyncIterator[Chunk]:
        """Async version of stream(); task cancellation (a dropped client) cancels."""
        self._admit()
        try:
            chunks = self._worker.astream(partial(self._generation, request), cancel or CancelToken())
            async with aclosing(chunks):
                async for chunk in chunks:
                    self._observe(chunk)
                    yield chunk
        finally:
            self._leave()

    def count_prompt_tokens(self, request: GenerationRequest) -> int:
        """How many prompt tokens `request` renders to (chat template included): the
        `prompt_tokens` its generation would report. Loads the model if needed."""
        from workbench.engine.generation import render_prompt

        return self._worker.call(lambda: len(render_prompt(self._load(request.model)[0].tokenizer, request)))

    def generate(self, request: GenerationRequest, cancel: CancelToken | None = None) -> Completion:
        """The whole completion at once."""
        return collect(self.stream(request, cancel))

    def chat(
        self,
        messages: str | Sequence[Message | Mapping[str, Any]],
        model: str | None = None,
        *,
        max_tokens: int = 256,
        stop: Sequence[str] = (),
        **sampling: Any,
    ) -> Completion:
        """Notebook convenience: chat("Hi") or chat([{"role": "user", ...}], temperature=0.7)."""
        if isinstance(messages, str):
            messages = [Message("user", messages)]
        request = GenerationRequest(
            messages=tuple(Message.coerce(m) for m in messages),
            model=model,
            sampling=SamplingParams(**sampling),
            max_tokens=max_tokens,
            stop=tuple(stop),
        )
        return self.generate(request)


def collect(chunks: Iterator[Chunk]) -> Completion:
    """Fold a chunk stream into a Completion. Reads the stream to its end, so the
    generation has left the engine thread when this returns (the next one, e.g. a
    benchmark's next trial, then starts on an idle engine)."""
    texts: list[str] = []
    ids: list[int] = []
    logprobs: list[TokenLogprob] = []
    stats = None
    for chunk in chunks:
        texts.append(chunk.text)
        if chunk.token_id is not None:
            ids.append(chunk.token_id)
        if chunk.logprob is not None:
            logprobs.append(chunk.logprob)
        stats = chunk.stats or stats
    if stats is None:
        raise EngineStoppedError("the stream ended without stats (engine stopped?)")
    return Completion("".join(texts), tuple(ids), stats, tuple(logprobs))
