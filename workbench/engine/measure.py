"""The engine's measuring and model-making calls (tokenize, reference decode, next-token comparison,
quantization, fine-tuning, fusing, memory, deleting a cached hub model) and notebooks' chat(), part
of the Engine facade; each hands its work to the engine thread. Knows no HTTP, Gradio or pandas."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from workbench.engine.errors import InvalidRequestError
from workbench.engine.types import (
    Completion,
    GenerationRequest,
    MemoryInfo,
    Message,
    ModelInfo,
    SamplingParams,
    TokenComparison,
)

if TYPE_CHECKING:
    from workbench.config import Settings
    from workbench.engine.kv_quality import KVPoint
    from workbench.engine.kv_quant import KVQuant
    from workbench.engine.models.downloads import Downloads
    from workbench.engine.models.recipes import QuantRecipe, QuantResult
    from workbench.engine.models.registry import ModelRegistry
    from workbench.engine.status import StatusBoard
    from workbench.engine.streams import CancelToken
    from workbench.engine.tuning import TuneConfig, TuneReport, TuneResult
    from workbench.engine.worker import EngineWorker


def _check_ids(ids: Sequence[int], vocab: int, param: str) -> None:
    bad = [i for i in ids if not (isinstance(i, int) and 0 <= i < vocab)]
    if bad:
        raise InvalidRequestError(f"token id {bad[0]!r} is outside the vocabulary (size {vocab})", param)


class MeasureCalls:
    """Mixed into Engine, whose worker, registry, board and _load these use."""

    _worker: EngineWorker
    _board: StatusBoard
    registry: ModelRegistry
    _load: Callable[[str | None], tuple[Any, float | None]]
    _alone: Callable[[str], None]
    generate: Callable[[GenerationRequest], Completion]
    downloads: Downloads
    settings: Settings
    device: str

    def tokenize(self, text: str, model_id: str | None = None) -> list[int]:
        work = lambda: list(self._load(model_id)[0].tokenizer.encode(text))  # noqa: E731
        return self._worker.call_mirrored(("load", model_id), work)

    def detokenize(self, ids: Sequence[int], model_id: str | None = None) -> str:
        """Text of token ids; ids outside the vocabulary are an InvalidRequestError."""

        def work() -> str:
            lm, _ = self._load(model_id)
            _check_ids(ids, lm.vocab_size, "prompt_ids")
            return lm.tokenizer.decode(list(ids))

        return self._worker.call_mirrored(("load", model_id), work)

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
        self._alone("a reference decode")
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
        self._alone("quantizing")
        from workbench.engine.models.recipes import QuantRecipe

        recipe = recipe if isinstance(recipe, QuantRecipe) else QuantRecipe.parse(recipe)

        def work() -> QuantResult:
            from workbench.engine.models.quantize import quantize

            model = source or self.registry.default_id()
            with self._board.busy(f"quantizing {model} ({recipe.name})"):
                return quantize(self.registry, model, recipe)

        return self._worker.call(work)

    def compare_next_tokens(
        self, reference: str | None, model: str | None, ids: Sequence[int]
    ) -> TokenComparison:
        """`model`'s next-token predictions against `reference`'s on the token window
        `ids` (both loaded; one forward pass each). See workbench.quant for the metrics."""
        self._alone("comparing next-token distributions")

        def work() -> TokenComparison:
            from workbench.engine.quality import compare_next_tokens

            ref, _ = self._load(reference)
            ref.busy += 1  # keep it loaded while the other model loads
            try:
                lm, _ = self._load(model)
            finally:
                ref.busy -= 1
            _check_ids(ids, ref.vocab_size, "ids")
            return compare_next_tokens(ref, lm, ids)

        return self._worker.call(work)

    def kv_divergence(
        self,
        model: str | None,
        text: str,
        depths: Sequence[int],
        storages: Sequence[KVQuant],
        *,
        window: int = 32,
        on_point: Callable[[KVPoint], None] | None = None,
    ) -> list[KVPoint]:
        """Each KV storage against the model's own-precision cache at each context depth of
        `text` (engine.kv_quality); holds the engine thread throughout (minutes at 8k on a CPU)."""
        self._alone("the KV-cache lab")

        def work() -> list[KVPoint]:
            from workbench.engine.kv_quality import kv_divergence
            from workbench.engine.kv_steps import head_dim

            lm, _ = self._load(model)
            for kv in storages:
                kv.check_head_dim(head_dim(lm.model), lm.entry.id)
            step = self.settings.prefill_step or (256 if self.device == "cpu" else 2048)  # as served
            tokens = list(lm.tokenizer.encode(text))
            with self._board.busy("KV quality"):
                return kv_divergence(
                    lm.model,
                    tokens,
                    depths,
                    storages,
                    window=window,
                    prefill_step=step,
                    context_length=lm.context_length,
                    on_point=on_point,
                )

        return self._worker.call(work)

    def delete_cached(self, repo: str) -> bool:
        """Delete a hub repo from the local cache (not while it downloads or is loaded);
        False when it was not there."""
        self._alone("deleting a cached model")
        from workbench.engine.errors import ModelBusyError
        from workbench.engine.models.hub import delete_cached

        def work() -> bool:
            if self.downloads.running(repo):
                raise ModelBusyError(f"{repo!r} is downloading: cancel the download first")
            if self.registry.is_loaded(repo):
                raise ModelBusyError(f"{repo!r} is loaded: unload it first")
            gone = delete_cached(repo)
            self.registry.refresh()
            return gone

        return self._worker.call(work)

    def finetune(
        self,
        config: TuneConfig,
        on_report: Callable[[TuneReport], None] | None = None,
        cancel: CancelToken | None = None,
    ) -> TuneResult:
        """Train a LoRA/DoRA adapter with mlx-lm's trainer on the engine thread (hold
        exclusive() around it, as a lab does) and register it as `<base>+<name>`.
        `on_report` gets every step's loss and each validation loss on the engine thread;
        cancelling `cancel` stops after the current step, keeping the weights so far."""
        self._alone("fine-tuning")
        from workbench.engine.streams import CancelToken
        from workbench.engine.tuning import finetune

        token, report = cancel or CancelToken(), on_report or (lambda r: None)
        job = self._worker.submit(lambda: finetune(self.registry, config, report, token))
        try:
            return job.result()
        except KeyboardInterrupt:  # Ctrl-C / SIGTERM: stop after this step, its weights saved
            token.cancel()
            job.result()
            raise

    def fuse(self, model_id: str) -> ModelInfo:
        """Fuse an adapter variant into a standalone MLX folder in the models directory,
        registered by its folder name (`<base>-<name>-fused`)."""
        self._alone("fusing an adapter")
        from workbench.engine.models.adapters import fuse

        def work() -> ModelInfo:
            out = fuse(self.registry, self.registry.resolve(model_id))
            return self.registry.info(self.registry.resolve(str(out)))

        return self._worker.call(work)

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
