"""The models directory's layout: where converted and quantized variants live and the recipe
record a variant folder carries. Constants and one reader; imports nothing of the engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CONVERTED_DIR = "converted"  # under settings.models_dir: GGUF files converted to MLX folders
QUANTIZED_DIR = "quantized"  # under settings.models_dir: variants made by `workbench quantize`
RECIPE_FILE = "workbench-recipe.json"  # beside a variant's weights: how it was made


def read_recipe_record(folder: Path) -> dict[str, Any] | None:
    """The recipe record of a variant folder made here, or None when there is none."""
    try:
        record = json.loads((folder / RECIPE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and (folder / "config.json").exists() else None
