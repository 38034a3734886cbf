"""Engine: the facade every consumer uses (API, UI, benchmarks, notebooks, CLI); every method
hands its MLX work to the one EngineWorker thread. Knows no HTTP, Gradio or pandas."""

from __future__ import annotations

import atexit
import logging
import platform
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import aclosing, closing, contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

from workbench.config import ApiModels, Settings
from workbench.engine.decode_threads import DecodeThreads
from workbench.engine.errors import EngineStoppedError
from workbench.engine.measure import MeasureCalls
from workbench.engine.models.downloads import DownloadProgress, Downloads
from workbench.engine.ranks import RankCalls
from workbench.engine.status import EngineStatus, StatusBoard, StatusPublisher, TokenCounts
from workbench.engine.streams import Admission, CancelToken, QueueSink, StreamState, collect
from workbench.engine.types import (
    Chunk,
    Completion,
    GenerationRequest,
    GenerationStats,
    ModelInfo,
)
from workbench.engine.worker import EngineWorker

if TYPE_CHECKING:
    from workbench.engine.disk_cache import DiskTier
    from workbench.engine.models.registry import ModelRegistry

log = logging.getLogger(__name__)


class Engine(MeasureCalls, RankCalls):
    """One MLX engine per process. `Engine(settings)` starts its thread at once
    (pass start=False to defer); use it as a context manager or call stop()."""

    def __init__(self, settings: Settings | None = None, *, start: bool = True) -> None:
        self.settings = settings or Settings.from_env()
        self._worker = EngineWorker(
            on_start=self._start_runtime, on_stop=self._stop_runtime, on_tick=self._publish
        )
        self._registry: ModelRegistry | None = None
        self._disk: DiskTier | None = None  # the prompt cache's disk tier (WORKBENCH_PROMPT_CACHE_DIR)
        self._board = StatusBoard()
        self._publisher = StatusPublisher(self._board)
        self._refresh: Future[None] | None = None
        self.device = "unknown"
        self.blas = "unknown"
        self.threads = DecodeThreads(None, "auto")  # BLAS threads per batch step (set on the thread)
        self.versions: dict[str, str] = {}
        self._admission = Admission(self.settings.max_batch, self.settings.max_queue)
        self._listeners: list[Callable[[GenerationStats], None]] = []
        self.model_loads = 0  # models loaded by this engine (counted on its thread)
        self._generated = TokenCounts()  # tokens made per model, counted as each is made
        # Explicit downloads (child processes): a finished one is registered at once.
        self.downloads = Downloads(on_finished=self._downloaded)
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

        from workbench.engine import disk_cache  # mlx-lm, after the BLAS preload
        from workbench.engine.models.registry import ModelRegistry

        self.device = "cpu" if mx.default_device() == mx.cpu else "gpu"
        self.blas = blas.describe_blas() if self.device == "cpu" else "gpu"
        self.versions = {
            "python": platform.python_version(),
            "mlx": mx.__version__,
            "mlx_lm": mlx_lm.__version__,
        }
        maybe_set_recommended_wired_limit()  # Metal only; keeps weights resident
        ranks = self._join_ranks()  # started by mlx.launch: this engine is one of its ranks
        self._registry = ModelRegistry(self.settings, float32=self.device == "cpu", ranks=ranks)
        self._disk = disk_cache.of(self.settings)
        control = blas.thread_control() if self.device == "cpu" else None
        self.threads = DecodeThreads(control, self.settings.decode_threads)
        self._publish()
        log.info("engine started: device=%s blas=%s", self.device, self.blas)

    def _publish(self, force: bool = False) -> None:
        """On the engine thread, after every job and round (status.StatusPublisher)."""
        if self._registry is not None:
            self._publisher.publish(self._registry, self._worker.active_streams, force=force)
        if self._disk is not None and self._disk.pending and not self._worker.active_streams:
            self._disk.flush()  # idle: the prompt caches of the replies just made go to disk

    def _stop_runtime(self) -> None:
        """Runs last on the engine thread, after running streams were cancelled."""
        import mlx.core as mx

        if self._disk is not None:
            self._disk.flush()
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
        """Cancel running generations and downloads, unload every model, stop the thread. Idempotent."""
        self.downloads.cancel_all()
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

    def status(self) -> EngineStatus | None:
        """The state the engine published last (models, aliases, memory), at once, from
        any thread, whatever the engine is doing; None until the engine has started."""
        return self._board.status

    def refresh_status(self) -> Future[None] | None:
        """Ask the engine thread to republish its status now (fresh memory figures); returns
        at once with a future that completes when it has (None when the engine is not
        running). While a refresh is pending no other is queued, so pollers of a busy
        engine add no work; a caller that must not wait reads status() meanwhile."""
        pending = self._refresh
        if pending is not None and not pending.done():
            return pending
        if not self.running:
            return None
        self._refresh = self._worker.submit(self._publish, True)
        return self._refresh

    def activity(self) -> tuple[str, ...]:
        """What the engine is busy with beyond generating: 'loading <id>', the label of
        an exclusive() holder (a benchmark run), 'quantizing ...'. Empty when neither."""
        return self._board.activity()

    def _load(self, model_id: str | None) -> tuple[Any, float | None]:
        """registry.load on the engine thread, counting the loads it performs."""
        registry = self.registry
        entry = self._agreed(lambda: registry.resolve(model_id), f"model {model_id or 'default'!r}")
        if registry.is_loaded(entry.id):
            return registry.load(entry.id)
        self._alone(f"loading {entry.id} outside a generation")
        with self._board.busy(f"loading {entry.id}"):
            lm, load_s = registry.load(entry.id)
        if load_s is not None:
            self.model_loads += 1
        return lm, load_s

    def add_stats_listener(self, listener: Callable[[GenerationStats], None]) -> None:
        """Call `listener(stats)` with every finished generation's stats (API, UI,
        benchmarks alike; a cancelled one too, whether or not anyone still reads it), on the
        engine thread as the generation ends: keep it quick. Its errors are logged, never raised."""
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
        status = self._board.status
        if status is not None:
            return status.default_model
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

        return self._worker.call_mirrored(("load", model_id), work)

    def unload(self, model_id: str) -> bool:
        """Unload a model and free MLX's cache; False if it was not loaded."""
        return self._worker.call_mirrored(("unload", model_id), lambda: self.registry.unload(model_id))

    def _downloaded(self, progress: DownloadProgress) -> None:
        if progress.state == "done" and self.running:  # every rank (of one host) registers it
            self._worker.submit_mirrored(("refresh", None), lambda: self.registry.refresh())

    @contextmanager
    def exclusive(self, what: str = "exclusive use") -> Iterator[None]:
        """Sole use of the engine for this thread/task (benchmarks): waits for running
        generations to end and holds back everyone else's until the block exits. `what`
        (e.g. 'benchmark default, run 1a2b') is what /health says the engine is doing.
        Re-entrant: an inner block keeps the outer lease and label."""
        if self._worker.holds_lease():
            yield
            return
        with self._worker.exclusive(), self._board.busy(what):
            yield

    # ---- generation ------------------------------------------------------
    def _generation(self, request: GenerationRequest, state: StreamState) -> Iterator[Chunk | None]:
        """Runs on the engine thread, stepped one chunk at a time by the worker (None:
        a batched generation has nothing yet)."""
        from workbench.engine.drafting import pick_speculation
        from workbench.engine.generation import ReplyLimits, cancelled_before_start, stream_chunks
        from workbench.engine.kv_steps import request_kv
        from workbench.engine.scheduler import ModelBatch, batched_chunks

        if state.cancel.cancelled:  # cancelled while queued: do not load a model for it
            final = cancelled_before_start(request.model or self.registry.default_id(), state)
            self._observe(final)
            yield final
            return
        lm, load_s = self._load(request.model)
        lm.busy += 1
        held = [lm]  # models this generation keeps loaded: its own and a draft model
        try:
            self._no_draft(request)  # a distributed engine's ranks would each load the draft
            kv = request_kv(request, self.settings, lm)  # a quantized KV cache: alone, no speculation
            spec = (
                None
                if kv
                else pick_speculation(request, self.settings.speculative, lm, self.registry, self._load)
            )
            if spec is not None and spec[1] is not None:
                held.append(spec[1])
                spec[1].busy += 1
            if self.settings.max_batch > 1 and lm.batch is None:  # the batch, and its prompt cache
                lm.batch = ModelBatch(lm, self.settings, self._disk, self.threads, self.ranks is None)
            if lm.batch is not None and spec is None and kv is None:
                chunks = batched_chunks(lm.batch, request, state, load_s=load_s)
            else:  # alone: speculating, or a quantized KV cache
                limits = ReplyLimits.of(self.settings)
                chunks = stream_chunks(
                    lm, request, state, load_s=load_s, limits=limits, speculation=spec, kv=kv
                )
            counted = 0
            with closing(chunks):
                for chunk in chunks:
                    counted = self._generated.add(lm.entry.id, chunk, counted)
                    if chunk is not None and chunk.stats is not None:
                        chunk = self._with_rank_peaks(chunk)  # a distributed engine's every rank
                        self._observe(chunk)  # here, so a generation nobody reads is counted too
                    yield chunk
        finally:
            for model in held:
                model.busy -= 1
                model.last_used = time.monotonic()

    def tokens_generated(self) -> dict[str, int]:
        """Tokens generated so far per model id, counted on the engine thread as each is
        made (a running generation's too), from any thread without waiting."""
        return self._generated.snapshot()

    @property
    def queued_generations(self) -> int:
        """Generations admitted and not yet finished (running or waiting)."""
        return self._admission.count

    def stream(self, request: GenerationRequest, cancel: CancelToken | None = None) -> Iterator[Chunk]:
        """Chunks as they are generated; the last one carries stats. Closing the
        iterator early, or cancelling `cancel`, stops generation within a token. The
        first next() raises QueueFullError when max_batch + max_queue generations are
        already running or waiting."""
        self._admission.enter()
        try:
            # closing(): a consumer that leaves early closes the worker stream at once.
            with closing(
                self._worker.stream(
                    partial(self._generation, request), cancel or CancelToken(), ("gen", request)
                )
            ) as it:
                yield from it
        finally:
            self._admission.leave()

    async def astream(
        self, request: GenerationRequest, cancel: CancelToken | None = None
    ) -> AsyncIterator[Chunk]:
        """Async version of stream(); task cancellation (a dropped client) cancels."""
        self._admission.enter()
        try:
            factory = partial(self._generation, request)
            chunks = self._worker.astream(factory, cancel or CancelToken(), ("gen", request))
            async with aclosing(chunks):
                async for chunk in chunks:
                    yield chunk
        finally:
            self._admission.leave()

    def count_prompt_tokens(self, request: GenerationRequest, *, check: bool = False) -> int:
        """How many prompt tokens `request` renders to (chat template included): the
        `prompt_tokens` its generation would report. Loads the model if needed. With
        `check`, the request is also checked as its generation would check it (context,
        vocabulary, sampling, its constraint compiled), so what a generation would refuse
        is refused here too."""
        from workbench.engine.generation import ReplyLimits, prepare
        from workbench.engine.rendering import prompt_of

        def work() -> int:
            lm = self._load(request.model)[0]
            if not check:
                return len(prompt_of(lm, request)[0])
            return len(prepare(lm, request, ReplyLimits.of(self.settings)).prompt)

        return self._worker.call_mirrored(("load", request.model), work)

    def generate(self, request: GenerationRequest, cancel: CancelToken | None = None) -> Completion:
        """The whole completion at once."""
        return collect(self.stream(request, cancel))

    def generate_many(
        self, requests: Sequence[GenerationRequest], cancel: CancelToken | None = None
    ) -> list[Completion]:
        """Several completions submitted together, so they decode as one batch (up to the
        max_batch setting; the rest queue), each collected whole, in order. Cancelling
        `cancel` (or leaving early) cancels them all."""
        together = cancel.child() if cancel is not None else CancelToken()
        sinks: list[QueueSink[Chunk]] = []
        try:
            for request in requests:
                self._admission.enter()
                sinks.append(QueueSink())
                factory = partial(self._generation, request)
                self._worker.open_stream(factory, together.child(), sinks[-1], ("gen", request))
            return [collect(iter(sink)) for sink in sinks]
        finally:
            together.cancel()  # ends whatever still runs (nothing, after a normal return)
            for _ in sinks:
                self._admission.leave()
