"""Model ids (through the catalog it holds) -> folders -> loaded models, within a memory budget:
converting GGUF files, fetching hub ids when allowed, evicting idle models. Engine thread only."""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlx.core as mx
from mlx.utils import tree_flatten

from workbench.config import ApiModels, Settings
from workbench.engine import memory
from workbench.engine.errors import (
    EngineError,
    MemoryBudgetError,
    ModelBusyError,
    ModelLoadError,
    ModelNotFoundError,
)
from workbench.engine.models import gguf, lean_rope, lean_swiglu
from workbench.engine.models.catalog import ModelCatalog, ModelEntry
from workbench.engine.models.embedded import dense_dtype, dense_variant
from workbench.engine.models.hub import cached_snapshot, hub_folder
from workbench.engine.models.variants import CONVERTED_DIR
from workbench.engine.types import ModelInfo

if TYPE_CHECKING:
    from workbench.engine.distributed import RankGroup

log = logging.getLogger(__name__)

DEFAULT_BUDGET_FRACTION = 0.6
__all__ = ["CONVERTED_DIR", "LoadedModel", "ModelEntry", "ModelRegistry"]


@dataclass
class LoadedModel:
    entry: ModelEntry
    model: Any
    tokenizer: Any
    config: dict[str, Any]
    folder: Path
    nbytes: int
    load_s: float
    last_used: float = field(default_factory=time.monotonic)
    busy: int = 0
    dtype: str = "unknown"  # the floating dtype of most parameter bytes, as loaded
    batch: Any = None  # scheduler.ModelBatch: the running batch and prompt cache, made on first use
    guidance: Any = None  # constrain.py's llguidance tokenizer, made on first constrained request
    renders_tools: bool | None = None  # its template shows `tools` (learnt on the first tool request)

    @property
    def context_length(self) -> int:
        return config_context_length(self.config) or 4096

    @property
    def vocab_size(self) -> int:
        """Rows of the model's output (token ids at or past it are out of the vocabulary)."""
        return int(self.config.get("vocab_size") or len(self.tokenizer))


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


def config_context_length(config: dict[str, Any]) -> int | None:
    """The context window a model config declares, if it says."""
    for key in ("max_position_embeddings", "max_seq_len", "n_ctx", "seq_length"):
        if isinstance(config.get(key), int):
            return int(config[key])
    return None


def _folder_context(folder: Path) -> int | None:
    try:
        return config_context_length(json.loads((folder / "config.json").read_text()))
    except (OSError, ValueError):
        return None


def _folder_facts(folder: Path, *, float32: bool) -> tuple[int | None, int | None, str | None]:
    """(weight bits, group size, dtype) of an MLX folder as it will load: on the CPU
    backend (`float32`) half-precision weights and scales are upcast to float32."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None, None, None
    dtype = str(config.get("torch_dtype") or config.get("dtype") or "") or None
    if dtype not in DTYPE_BYTES:
        dtype = None
    if float32 and dtype is not None:
        dtype = "float32"
    q = config.get("quantization") or {}
    if q:
        return q.get("bits"), q.get("group_size"), dtype
    return (8 * DTYPE_BYTES[dtype] if dtype else None), None, dtype


class ModelRegistry:
    """Resolves ids through the catalog it holds and owns loaded models. Call only on the
    engine thread."""

    def __init__(self, settings: Settings, *, float32: bool, ranks: RankGroup | None = None) -> None:
        self.settings = settings
        self.float32 = float32  # CPU backend: float32 everywhere (half precision is ~30x slower)
        self.ranks = ranks  # a distributed engine's group: models load sharded over it
        self.catalog = ModelCatalog(settings, float32=float32)
        self._loaded: dict[str, LoadedModel] = {}
        self._load_changes = 0
        # GGUF facts per (path, size, mtime): listings and loads would otherwise re-read them.
        self._gguf_facts: dict[tuple[str, int, int], tuple[str, list[gguf.GGUFTensorInfo]]] = {}
        budget_gb = settings.memory_budget_gb
        self.budget_bytes = (
            int(budget_gb * 1e9) if budget_gb else int(memory.system_total_bytes() * DEFAULT_BUDGET_FRACTION)
        )
        if ranks is not None:  # the ranks on one host share its memory
            here = next((m["host"] for m in ranks.members if m.get("rank") == ranks.rank), None)
            self.budget_bytes //= max(1, sum(1 for m in ranks.members if m.get("host") == here))
        self.refresh()

    # ---- the catalog's table ---------------------------------------------
    @property
    def changes(self) -> int:
        """Moves with every change to the id table or to what is loaded (the engine
        republishes its model list when it does)."""
        return self.catalog.changes + self._load_changes

    def refresh(self) -> None:
        """Rescan for models; loaded ones keep their entries."""
        self.catalog.refresh(keep=[lm.entry for lm in self._loaded.values()])

    def resolve(self, model_id: str | None, *, scope: ApiModels = "any") -> ModelEntry:
        """See ModelCatalog.resolve."""
        return self.catalog.resolve(model_id, scope=scope)

    def aliases(self) -> dict[str, str]:
        return self.catalog.aliases()

    def default_id(self) -> str:
        return self.catalog.default_id()

    def add_quantized(self, folder: Path) -> ModelEntry | None:
        return self.catalog.add_quantized(folder)

    def add_adapter(self, folder: Path) -> ModelEntry | None:
        """Register an adapter folder; a loaded older copy of it is unloaded first."""
        if (entry := self.catalog.add_adapter(folder)) is not None and entry.id in self._loaded:
            self.unload(entry.id)
        return entry

    # ---- loading ---------------------------------------------------------
    def _gguf(self, src: Path) -> tuple[str, list[gguf.GGUFTensorInfo]]:
        """(content fingerprint, tensor infos) of a GGUF file, cached per file version."""
        st = src.stat()
        key = (str(src), st.st_size, st.st_mtime_ns)
        if key not in self._gguf_facts:
            self._gguf_facts[key] = (gguf.fingerprint(src), gguf.read_tensor_infos(src))
        return self._gguf_facts[key]

    def converted_dir(self, entry: ModelEntry) -> Path:
        """Where a GGUF entry's MLX folder is cached (keyed by content and variant)."""
        src = Path(entry.location)
        dense = dense_variant(self.float32)
        variant = dense if entry.dequantize else f"q-{dense}"
        return self.settings.models_dir / CONVERTED_DIR / f"{src.stem}-{self._gguf(src)[0]}" / variant

    def folder_for(self, entry: ModelEntry) -> Path:
        """The MLX folder to load, converting or fetching it first when needed."""
        if entry.source in ("embedded", "gguf"):
            src = Path(entry.location)
            dst = self.converted_dir(entry)
            if not (dst / "config.json").exists():
                log.info("converting %s -> %s", src, dst)
                gguf.convert_gguf_apart(src, dst, dequantize=entry.dequantize, float32=self.float32)
            return dst
        if entry.source == "hub":
            return hub_folder(entry.location, self.settings.allow_download)
        if entry.source == "adapter":  # the base model's folder (the adapter loads over it)
            return self.folder_for(self.resolve(entry.base))
        return Path(entry.location)

    def _local_folder(self, entry: ModelEntry) -> Path | None:
        """An MLX folder's path; a hub id's cached snapshot (None when not cached)."""
        return cached_snapshot(entry.location) if entry.source == "hub" else Path(entry.location)

    def _estimate_bytes(self, entry: ModelEntry) -> int:
        if entry.source == "adapter":
            return self._estimate_bytes(self.resolve(entry.base)) + _dir_bytes(Path(entry.location))
        if entry.source in ("embedded", "gguf"):
            src = Path(entry.location)
            if entry.dequantize:
                infos = self._gguf(src)[1]
                return sum(DTYPE_BYTES[dense_dtype(self.float32)] * math.prod(i.shape) for i in infos)
            return int(src.stat().st_size * (1.25 if self.float32 else 1.0))
        folder = self._local_folder(entry)
        if folder is not None and folder.is_dir():
            stored = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
            bits, _, dtype = _folder_facts(folder, float32=False)
            # The CPU backend upcasts half-precision weights to float32 as it loads them.
            grows = self.float32 and dtype in ("float16", "bfloat16") and bits in (16, None)
            return stored * 2 if grows else stored
        return 0

    def loaded_bytes(self) -> int:
        return sum(lm.nbytes for lm in self._loaded.values())

    def _make_room(self, entry: ModelEntry) -> None:
        # Sharded over ranks, this process holds about its share of the weights.
        need = self._estimate_bytes(entry) // (self.ranks.size if self.ranks is not None else 1)
        if need > self.budget_bytes:
            raise MemoryBudgetError(
                f"model {entry.id!r} needs about {need / 1e9:.2f} GB but the memory budget is "
                f"{self.budget_bytes / 1e9:.2f} GB (WORKBENCH_MEMORY_BUDGET_GB)"
            )
        idle = sorted((lm for lm in self._loaded.values() if lm.busy == 0), key=lambda lm: lm.last_used)
        while self.loaded_bytes() + need > self.budget_bytes and idle:
            victim = idle.pop(0)
            log.info("evicting %s to stay within the memory budget", victim.entry.id)
            self.unload(victim.entry.id)
        if self.loaded_bytes() + need > self.budget_bytes:
            busy = ", ".join(lm.entry.id for lm in self._loaded.values())
            raise MemoryBudgetError(
                f"model {entry.id!r} needs about {need / 1e9:.2f} GB; the budget is "
                f"{self.budget_bytes / 1e9:.2f} GB and busy models hold the rest ({busy})"
            )

    def load(self, model_id: str | None) -> tuple[LoadedModel, float | None]:
        """Load (if needed) and return the model, with the load time when this call loaded it."""
        entry = self.resolve(model_id)
        if entry.id in self._loaded:
            lm = self._loaded[entry.id]
            lm.last_used = time.monotonic()
            return lm, None
        start = time.perf_counter()
        if self.ranks is not None:
            folder, (model, tokenizer, config) = self._load_sharded(entry)
            return self._keep(entry, model, tokenizer, config, folder, start)
        self._make_room(entry)
        try:
            from mlx_lm.utils import load as mlx_lm_load

            folder = self.folder_for(entry)
            # Never run code shipped with a model (a config-file CVE made that an attack).
            model, tokenizer, config = mlx_lm_load(
                str(folder),
                adapter_path=entry.location if entry.source == "adapter" else None,
                return_config=True,
                trust_remote_code=False,
                tokenizer_config={"trust_remote_code": False},
            )
        except (ModelNotFoundError, ModelLoadError):
            raise
        except Exception as exc:
            raise ModelLoadError(f"could not load model {entry.id!r}: {exc}") from exc
        return self._keep(entry, model, tokenizer, config, folder, start)

    def _load_sharded(self, entry: ModelEntry) -> tuple[Path, tuple[Any, Any, dict[str, Any]]]:
        """Every rank's part of a model (distributed.load_sharded), each rank making room (its
        share of the budget) and preparing the folder in its turn (distributed.in_turns)."""
        from workbench.engine.distributed import in_turns, load_sharded

        assert self.ranks is not None
        if entry.source == "adapter":
            raise ModelLoadError(f"adapter {entry.id!r}: a distributed engine loads no adapters (fuse it)")

        def prepare() -> Path:
            self._make_room(entry)
            return self.folder_for(entry)

        folder = in_turns(self.ranks, prepare, f"could not load model {entry.id!r}")
        return folder, load_sharded(folder, self.ranks)

    def _keep(
        self, entry: ModelEntry, model: Any, tokenizer: Any, config: dict[str, Any], folder: Path, t0: float
    ) -> tuple[LoadedModel, float]:
        if self.float32 and _has_half_precision(model):
            # Upcasting is lossless and keeps the CPU backend on its fast float32 path.
            model.set_dtype(mx.float32)
        if self.settings.cpu_rope == "lean":
            lean_rope.install(model)
        if self.settings.cpu_swiglu == "lean":
            lean_swiglu.install(model)
        nbytes = sum(v.nbytes for _, v in tree_flatten(model.parameters()))
        load_s = time.perf_counter() - t0
        lm = LoadedModel(
            entry, model, tokenizer, config, folder, nbytes, load_s, dtype=memory.params_dtype(model)
        )
        self._loaded[entry.id] = lm
        self._load_changes += 1
        log.info("loaded %s in %.2fs (%.3f GB)", entry.id, load_s, nbytes / 1e9)
        return lm, load_s

    def unload(self, model_id: str) -> bool:
        """Drop a loaded model and free MLX's cache; False if it was not loaded."""
        entry = self.resolve(model_id)
        lm = self._loaded.get(entry.id)
        if lm is None:
            return False
        if lm.busy:
            raise ModelBusyError(f"model {entry.id!r} is generating; cancel it before unloading")
        del self._loaded[entry.id]
        self._load_changes += 1
        del lm
        memory.release_cached()
        return True

    def unload_all(self) -> None:
        for model_id in list(self._loaded):
            self.unload(model_id)

    def is_loaded(self, model_id: str) -> bool:
        return model_id in self._loaded

    def loaded(self) -> list[LoadedModel]:
        return list(self._loaded.values())

    # ---- listing ---------------------------------------------------------
    def infos(self) -> list[ModelInfo]:
        return [self.info(entry) for entry in self.catalog.entries()]

    def info(self, entry: ModelEntry) -> ModelInfo:
        lm = self._loaded.get(entry.id)
        bits: int | None = None
        group: int | None = None
        size: int | None = None
        dtype: str | None = None
        context: int | None = None
        path = entry.location
        if entry.source in ("embedded", "gguf"):
            src = Path(entry.location)
            dtype = dense_dtype(self.float32)  # dense weights, or the quantized ones' scales
            try:
                if entry.dequantize:
                    bits = 8 * DTYPE_BYTES[dtype]
                    size = self._estimate_bytes(entry)
                else:
                    bits, group = gguf.weight_bits(self._gguf(src)[1]), gguf.GROUP_SIZE
                    size = src.stat().st_size
                converted = self.converted_dir(entry)
                if (converted / "config.json").exists():
                    path, size = str(converted), _dir_bytes(converted)
                    context = _folder_context(converted)
            except (OSError, EngineError) as exc:
                # A listing must not fail because one file went missing or is unreadable.
                log.warning("cannot describe %s: %s", entry.id, exc)
        elif entry.source == "adapter":
            size = _dir_bytes(Path(entry.location))
        elif (folder := self._local_folder(entry)) is not None and folder.is_dir():
            bits, group, dtype = _folder_facts(folder, float32=self.float32)
            size, context, path = _dir_bytes(folder), _folder_context(folder), str(folder)
        if lm is not None and lm.dtype in DTYPE_BYTES:  # loaded: what it really holds
            dtype = lm.dtype
            if group is None and bits is not None:
                bits = 8 * DTYPE_BYTES[dtype]
        return ModelInfo(
            id=entry.id,
            source=entry.source,
            variant=entry.variant,
            path=path,
            size_bytes=size,
            bits=bits,
            group_size=group,
            dtype=dtype,
            context_length=lm.context_length if lm is not None else context,
            loaded=lm is not None,
            memory_gb=lm.nbytes / 1e9 if lm is not None else None,
            description=entry.description,
            load_s=lm.load_s if lm is not None else None,
            reasoning=bool(lm.tokenizer.has_thinking) if lm is not None else None,
            tool_dialect=tool_dialect(lm.tokenizer) if lm is not None else None,
        )


def tool_dialect(tokenizer: Any) -> str | None:
    """The name of mlx-lm's parser for the tool calls the model's template asks for
    (`json_tools` for Hermes/Qwen2.5 `<tool_call>`, `mistral`, ...), or None."""
    parser = getattr(tokenizer, "tool_parser", None)
    return parser.__module__.rsplit(".", 1)[-1] if parser is not None else None


def _has_half_precision(model: Any) -> bool:
    return any(v.dtype in (mx.float16, mx.bfloat16) for _, v in tree_flatten(model.parameters()))
