"""The KV-cache lab: each KV precision's next-token KL divergence and top-1 agreement against the
model's own-precision cache at growing context depths, with the cache's memory; one CSV row per
(precision, depth) with provenance, and a plot. Knows the Engine, not mlx."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from workbench.engine import Engine
from workbench.engine.kv_quant import KVQuant
from workbench.reports.schema import KV_QUALITY_FIELDS
from workbench.reports.store import append_rows
from workbench.runs.provenance import capture

# Natural English prose long enough for an 8k context (~8.8k SmolLM2 tokens): the Apache-2.0,
# MPL-2.0, CC0-1.0 and Artistic license texts, verbatim (each permits verbatim copies).
LONG_TEXT_PATH = Path(__file__).parent / "data" / "long_text.txt"
DEFAULT_DEPTHS = (512, 2048, 4096, 8160)
DEFAULT_BITS = (16, 8, 4)
WINDOW = 32


@cache
def long_text() -> str:
    return LONG_TEXT_PATH.read_text(encoding="utf-8")


def parse_storages(bits: Sequence[int], group_size: int = 64) -> list[KVQuant]:
    """KV storages to measure (each checked: a bad value is an InvalidRequestError)."""
    return [KVQuant(b, group_size, 0) for b in bits]


def kv_quality(
    engine: Engine,
    model: str | None,
    storages: Sequence[KVQuant],
    depths: Sequence[int] = DEFAULT_DEPTHS,
    *,
    csv_path: Path,
    window: int = WINDOW,
    text: str | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Measure `storages` against the reference at `depths` of `text` (default: the shipped long
    text) on `model`; rows appended to `csv_path` as each depth is measured, and returned."""
    text = text if text is not None else long_text()
    sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    model_id = engine.model_info(model).id
    own = engine.model_info(model_id).dtype or "model"
    provenance = capture(engine)
    rows: list[dict[str, Any]] = []

    def row_of(point: Any) -> None:
        row = {
            **provenance,
            "model": model_id,
            "kv_cache": point.kv or own,
            "kv_bits": point.bits,
            "kv_group_size": point.group_size,
            "depth": point.depth,
            "window": point.window,
            "kl_mean": point.kl_mean,
            "kl_max": point.kl_max,
            "top1_agreement": point.top1_agreement,
            "kv_cache_gb": point.kv_cache_bytes / 1e9,
            "kv_ratio": point.kv_cache_bytes / point.reference_bytes if point.reference_bytes else 0.0,
            "text_sha256": sha,
        }
        append_rows(csv_path, KV_QUALITY_FIELDS, [row])
        rows.append(row)
        if on_row is not None:
            on_row(row)

    engine.kv_divergence(model_id, text, depths, storages, window=window, on_point=row_of)
    return rows
