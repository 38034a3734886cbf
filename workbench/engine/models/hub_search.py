"""Finding models on the hub (huggingface_hub's list_models and model_info): MLX repos, or GGUF
repos to import, each with its size and what it would take in memory here. Downloads nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from workbench.engine.models.hub import hub_api

HubKind = Literal["mlx", "gguf"]
# Bytes per stored parameter by safetensors dtype (U32 holds packed quantized weights).
_DTYPE_BYTES = {
    "F64": 8,
    "I64": 8,
    "F32": 4,
    "I32": 4,
    "U32": 4,
    "F16": 2,
    "BF16": 2,
    "I16": 2,
    "I8": 1,
    "U8": 1,
}
_HALF = ("F16", "BF16")


@dataclass(frozen=True)
class HubModel:
    """One search result: its weights' size on disk and in memory on this engine (a CPU
    engine holds half-precision weights as float32), when the hub says."""

    id: str
    downloads: int
    likes: int
    updated: str
    size_bytes: int | None
    memory_bytes: int | None
    gguf: bool


def _sizes(info: Any, float32: bool) -> tuple[int | None, int | None]:
    params = getattr(getattr(info, "safetensors", None), "parameters", None) or {}
    if not params:
        return None, None
    stored = sum(n * _DTYPE_BYTES.get(dtype.upper(), 4) for dtype, n in params.items())
    grows = sum(n * 2 for dtype, n in params.items() if float32 and dtype.upper() in _HALF)
    return stored, stored + grows


def search_models(query: str, kind: HubKind = "mlx", *, float32: bool, limit: int = 20) -> list[HubModel]:
    """The most downloaded repos matching `query` with the `kind` tag (mlx, gguf)."""
    found = hub_api().list_models(
        search=query.strip() or None,
        filter=kind,
        sort="downloads",
        limit=limit,
        expand=["downloads", "likes", "lastModified", "safetensors", "tags"],
    )
    results = []
    for info in found:
        size, memory = _sizes(info, float32)
        updated = info.last_modified.date().isoformat() if info.last_modified else ""
        results.append(
            HubModel(
                id=info.id,
                downloads=int(info.downloads or 0),
                likes=int(info.likes or 0),
                updated=updated,
                size_bytes=size,
                memory_bytes=memory,
                gguf=kind == "gguf" or "gguf" in (info.tags or ()),
            )
        )
    return results


def repo_files(repo: str, suffix: str = "") -> list[tuple[str, int]]:
    """(file, bytes) of every file in `repo` ending with `suffix`, by name."""
    info = hub_api().model_info(repo, files_metadata=True)
    return sorted(
        (s.rfilename, int(s.size or 0)) for s in info.siblings or () if s.rfilename.endswith(suffix)
    )


def fits(memory_bytes: int | None, budget_gb: float, loaded_gb: float) -> str:
    """Whether weights of `memory_bytes` fit the loaded-model budget, in words."""
    if memory_bytes is None:
        return "size unknown"
    need = memory_bytes / 1e9
    if need > budget_gb:
        return f"too big: {need:.2f} GB > budget {budget_gb:.2f} GB"
    if need > budget_gb - loaded_gb:
        return f"fits after unloading ({need:.2f} GB)"
    return f"fits ({need:.2f} GB)"
