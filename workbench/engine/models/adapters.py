"""Adapter variants' weights: a fresh copy of a model (an adapter loaded over it, half precision
upcast on the CPU backend) and fusing an adapter into a standalone MLX folder. Engine thread only."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.engine.errors import InvalidRequestError

if TYPE_CHECKING:
    from workbench.engine.models.catalog import ModelEntry
    from workbench.engine.models.registry import ModelRegistry


def load_copy(folder: Path, *, float32: bool, adapter: str | None = None) -> tuple[Any, Any, dict[str, Any]]:
    """mlx-lm's load of `folder` (with `adapter` over it): a copy of its own, not the served one."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.utils import load

    model, tokenizer, config = load(
        str(folder),
        adapter_path=adapter,
        return_config=True,
        trust_remote_code=False,
        tokenizer_config={"trust_remote_code": False},
    )
    if float32 and any(v.dtype in (mx.float16, mx.bfloat16) for _, v in tree_flatten(model.parameters())):
        model.set_dtype(mx.float32)
    return model, tokenizer, config


def fuse(registry: ModelRegistry, entry: ModelEntry) -> Path:
    """A standalone MLX folder of an adapter variant (its LoRA layers fused into the base
    weights) in the models directory, where it is registered by its folder name."""
    from mlx.utils import tree_unflatten
    from mlx_lm.utils import save

    if entry.source != "adapter":
        raise InvalidRequestError(
            f"{entry.id!r} is not an adapter variant (made by `workbench finetune`)", "model"
        )
    folder = registry.folder_for(entry)
    model, tokenizer, config = load_copy(folder, float32=registry.float32, adapter=entry.location)
    fused = [(n, m.fuse()) for n, m in model.named_modules() if hasattr(m, "fuse")]
    if fused:
        model.update_modules(tree_unflatten(fused))
    out = registry.settings.models_dir / f"{entry.id.replace('+', '-')}-fused"
    shutil.rmtree(out, ignore_errors=True)
    save(out, str(folder), model, tokenizer, config, donate_model=False)
    registry.refresh()
    return out
