"""Memory figures: MLX allocator (active / peak / cache), process RSS, system RAM.

Runs on the engine thread (it calls mlx). Returns bytes or MemoryInfo; knows
nothing of models beyond the byte counts it is given.
"""

from __future__ import annotations

import gc

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
