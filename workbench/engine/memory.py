"""Memory figures: MLX allocator (active / peak / cache), process RSS, system RAM; engine thread
only (it calls mlx). Knows nothing of models beyond their parameters' sizes and dtypes."""

from __future__ import annotations

import gc
from typing import Any

import mlx.core as mx
import psutil

from workbench.engine.types import MemoryInfo

GB = 1e9


def active_bytes() -> int:
    return int(mx.get_active_memory())


def peak_bytes() -> int:
    return int(mx.get_peak_memory())


def reset_peak() -> None:
    mx.reset_peak_memory()


def release_cached() -> None:
    """Drop Python references first, then MLX's buffer cache, so memory returns."""
    gc.collect()
    mx.clear_cache()


def params_dtype(model: Any) -> str:
    """The floating dtype holding most of a model's parameter bytes ('float32', ...); lazy
    arrays are fine (only dtypes and sizes are read)."""
    from mlx.utils import tree_flatten

    totals: dict[str, int] = {}
    for _, v in tree_flatten(model.parameters()):
        if mx.issubdtype(v.dtype, mx.floating):
            name = str(v.dtype).removeprefix("mlx.core.")
            totals[name] = totals.get(name, 0) + v.nbytes
    return max(totals, key=totals.__getitem__) if totals else "unknown"


def system_total_bytes() -> int:
    return int(psutil.virtual_memory().total)


def snapshot(budget_bytes: int, loaded_bytes: int) -> MemoryInfo:
    vm = psutil.virtual_memory()
    return MemoryInfo(
        active_gb=mx.get_active_memory() / GB,
        peak_gb=mx.get_peak_memory() / GB,
        cache_gb=mx.get_cache_memory() / GB,
        process_rss_gb=psutil.Process().memory_info().rss / GB,
        system_total_gb=vm.total / GB,
        system_available_gb=vm.available / GB,
        budget_gb=budget_bytes / GB,
        loaded_models_gb=loaded_bytes / GB,
    )
