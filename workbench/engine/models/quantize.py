"""Quantized and dequantized variants: mlx-lm's convert() on the engine thread into a hidden folder,
renamed into place when complete, the recipe beside it, reused when made before. No consumers."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.engine.errors import EngineError, InvalidRequestError
from workbench.engine.models.embedded import dense_variant
from workbench.engine.models.recipes import DEQUANTIZE, MIXED_RECIPES, QuantRecipe, QuantResult
from workbench.engine.models.variants import QUANTIZED_DIR, RECIPE_FILE, read_recipe_record

if TYPE_CHECKING:
    from workbench.engine.models.registry import ModelEntry, ModelRegistry

log = logging.getLogger(__name__)


class QuantizationError(EngineError):
    """mlx-lm could not make the variant (nothing was left behind)."""


def variant_id(source: ModelEntry, recipe: QuantRecipe, *, float32: bool) -> str:
    """'<source>-<recipe>', dropping the source's '-f32' / '-f16' (its weights are what we
    quantize). Dequantized variants are named by their real dtype: '-f16' off the CPU."""
    base = source.id
    for dense in ("-f32", "-f16"):
        if base.endswith(dense) and recipe.kind != DEQUANTIZE:
            base = base[: -len(dense)]
    suffix = dense_variant(float32) if recipe.kind == DEQUANTIZE else recipe.name
    return f"{base}-{suffix}"


def folder_fingerprint(folder: Path) -> str:
    """Names, sizes and mtimes of a model folder's files: changes when its weights do."""
    h = hashlib.sha256()
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.name != RECIPE_FILE:
            st = p.stat()
            h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:16]


def quantize(registry: ModelRegistry, source: str, recipe: QuantRecipe) -> QuantResult:
    """Make (or reuse) the `recipe` variant of `source` and register it."""
    entry = registry.resolve(source)
    if entry.source == "adapter":  # its adapter fused into the weights first
        from workbench.engine.models.adapters import fuse

        folder = fuse(registry, entry)
    else:
        folder = registry.folder_for(entry)
    config = json.loads((folder / "config.json").read_text())
    quantized = bool(config.get("quantization") or config.get("quantization_config"))
    if recipe.kind == DEQUANTIZE and not quantized:
        raise InvalidRequestError(f"model {entry.id!r} is not quantized: nothing to dequantize", "recipe")
    if recipe.kind != DEQUANTIZE and quantized:
        raise InvalidRequestError(
            f"model {entry.id!r} is already quantized; quantize an unquantized (float) variant, "
            "or dequantize this one first with recipe 'f32'",
            "model",
        )
    new_id = variant_id(entry, recipe, float32=registry.float32)
    root = registry.settings.models_dir / QUANTIZED_DIR
    dst = root / new_id
    wanted = {
        "source_model": entry.id,
        "recipe": recipe.name,
        "source_fingerprint": folder_fingerprint(folder),
    }
    record = read_recipe_record(dst)
    if record is not None and all(record.get(k) == v for k, v in wanted.items()):
        registry.add_quantized(dst)
        return _result(record, cached=True)
    if new_id in {lm.entry.id for lm in registry.loaded()}:
        registry.unload(new_id)  # a stale variant of an older source is about to be replaced
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(f".{new_id}.tmp-*"):  # left by a process that died mid-way
        shutil.rmtree(stale, ignore_errors=True)
    tmp = root / f".{new_id}.tmp-{os.getpid()}"
    start = time.perf_counter()
    try:
        quantize_s, bpw, dtype = _convert(folder, tmp, recipe, float32=registry.float32)
        import mlx_lm

        record = {
            **wanted,
            "model": new_id,
            "kind": recipe.kind,
            "mode": recipe.mode,
            "bits": recipe.bits if recipe.kind != DEQUANTIZE else 8 * (4 if registry.float32 else 2),
            "dtype": dtype,
            "group_size": recipe.group_size,
            "bits_per_weight": bpw,
            "quantize_s": quantize_s,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "mlx_lm_version": mlx_lm.__version__,
        }
        (tmp / RECIPE_FILE).write_text(json.dumps(record, indent=2) + "\n")
        if dst.exists():
            shutil.rmtree(dst)
        os.replace(tmp, dst)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, Exception) and not isinstance(exc, EngineError):
            raise QuantizationError(f"could not make {recipe.name} of {entry.id!r}: {exc}") from exc
        raise
    log.info("made %s in %.1fs (%.2f bits per weight)", new_id, time.perf_counter() - start, bpw)
    registry.add_quantized(dst)
    return _result(record, cached=False)


def _convert(src: Path, dst: Path, recipe: QuantRecipe, *, float32: bool) -> tuple[float, float, str]:
    """mlx_lm.convert src -> dst; returns (seconds, bits per weight, dtype of the result's
    dense weights or scales)."""
    from mlx_lm.convert import convert
    from mlx_lm.utils import compute_bits_per_weight, load

    from workbench.engine.memory import params_dtype

    start = time.perf_counter()
    mixed = recipe.kind in MIXED_RECIPES
    # convert() prints its progress; stdout belongs to the CLI's tables, so it goes to
    # the log. (The swap is process-wide, for the second or so the conversion takes.)
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        convert(
            str(src),
            str(dst),
            quantize=recipe.kind != DEQUANTIZE,
            q_bits=recipe.bits if recipe.kind != DEQUANTIZE else None,
            q_group_size=recipe.group_size,
            q_mode=recipe.mode if recipe.kind != DEQUANTIZE else "affine",
            quant_predicate=recipe.kind if mixed else None,
            dequantize=recipe.kind == DEQUANTIZE,
            # CPU backend: float32 scales and dense weights (half precision is ~30x slower there);
            # elsewhere the source's dtype, or float16 for dequantized weights (named -f16).
            dtype="float32" if float32 else ("float16" if recipe.kind == DEQUANTIZE else None),
        )
    log.info("mlx_lm.convert: %s", " | ".join(printed.getvalue().split("\n")).strip(" |"))
    seconds = time.perf_counter() - start
    model, _ = load(str(dst), lazy=True)  # lazy: only shapes and dtypes are read
    return seconds, float(compute_bits_per_weight(model)), params_dtype(model)


def _result(record: dict[str, Any], *, cached: bool) -> QuantResult:
    return QuantResult(
        model=str(record["model"]),
        source_model=str(record["source_model"]),
        recipe=str(record["recipe"]),
        cached=cached,
        quantize_s=float(record.get("quantize_s") or 0.0),
        bits_per_weight=record.get("bits_per_weight"),
    )
