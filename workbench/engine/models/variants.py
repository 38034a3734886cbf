"""The models directory's layout: where converted, quantized and adapter variants live and the
records their folders carry. Constants and one reader; imports nothing of the engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CONVERTED_DIR = "converted"  # under settings.models_dir: GGUF files converted to MLX folders
QUANTIZED_DIR = "quantized"  # under settings.models_dir: variants made by `workbench quantize`
RECIPE_FILE = "workbench-recipe.json"  # beside a variant's weights: how it was made
ADAPTERS_DIR = "adapters"  # under settings.models_dir: adapters made by `workbench finetune`
ADAPTER_RECORD = "workbench-adapter.json"  # beside an adapter's weights: its base and run


def read_recipe_record(folder: Path) -> dict[str, Any] | None:
    """The recipe record of a variant folder made here, or None when there is none."""
    try:
        record = json.loads((folder / RECIPE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and (folder / "config.json").exists() else None


def read_adapter_record(folder: Path) -> dict[str, Any] | None:
    """The record of an adapter folder made by `workbench finetune`, or None."""
    try:
        record = json.loads((folder / ADAPTER_RECORD).read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(record, dict) and (folder / "adapters.safetensors").exists()
    return record if ok and record.get("base_model") and record.get("variant") else None
