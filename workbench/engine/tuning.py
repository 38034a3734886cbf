"""Fine-tuning on the engine thread with mlx-lm's trainer (LoRA, DoRA) on a fresh copy of the base
model: a report per step, a cancel between steps, the adapter saved as a variant folder with its
record. mlx is imported only when called."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Literal

from workbench.engine.errors import InvalidRequestError
from workbench.engine.models.adapters import load_copy
from workbench.engine.models.variants import ADAPTER_RECORD, ADAPTERS_DIR
from workbench.engine.streams import CancelToken

if TYPE_CHECKING:
    from workbench.engine.models.registry import ModelRegistry

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class TuneConfig:
    """One fine-tuning run: the base model, the name of the variant it makes
    (`<base>+<name>`), records in one of mlx-lm's formats (`messages`, `prompt` +
    `completion`, `text`), and the trainer's settings (`layers` -1: every layer)."""

    base_model: str
    name: str
    train: tuple[Mapping[str, Any], ...]
    valid: tuple[Mapping[str, Any], ...]
    method: Literal["lora", "dora"] = "lora"
    rank: int = 8
    scale: float = 20.0
    dropout: float = 0.0
    layers: int = 8
    learning_rate: float = 1e-4
    iterations: int = 100
    batch_size: int = 4
    max_seq_length: int = 512
    seed: int = 0
    val_interval: int = 20
    val_batches: int = -1
    mask_prompt: bool = True
    details: Mapping[str, Any] = field(default_factory=dict)  # the spec, kept in the record

    def __post_init__(self) -> None:
        if not NAME.match(self.name):
            raise InvalidRequestError(f"name {self.name!r}: letters, digits, '_', '.', '-' (1-64)", "name")
        if self.method not in ("lora", "dora"):
            raise InvalidRequestError(f"method {self.method!r}: lora or dora", "method")
        for key in ("rank", "iterations", "batch_size", "max_seq_length", "val_interval"):
            if int(getattr(self, key)) < 1:
                raise InvalidRequestError(f"{key} must be at least 1", key)
        if not self.learning_rate > 0:
            raise InvalidRequestError("learning_rate must be above 0", "learning_rate")
        for part in ("train", "valid"):
            if len(getattr(self, part)) < self.batch_size:
                raise InvalidRequestError(
                    f"{part} has {len(getattr(self, part))} examples; batch_size {self.batch_size} needs "
                    "at least that many",
                    part,
                )


@dataclass(frozen=True)
class TuneReport:
    """One step's training loss ('train') or a validation loss ('valid'), as mlx-lm reports."""

    kind: Literal["train", "valid"]
    iteration: int
    loss: float
    learning_rate: float | None = None
    iterations_per_second: float | None = None
    tokens_per_second: float | None = None
    trained_tokens: int | None = None
    peak_memory_gb: float | None = None


@dataclass(frozen=True)
class TuneResult:
    """The variant a run made (also when stopped: its last weights), and how it went."""

    variant: str
    folder: str
    iterations: int
    stopped: bool
    first_val_loss: float | None
    last_val_loss: float | None
    train_s: float
    peak_memory_gb: float


class _Stop(Exception):
    """Raised from the trainer's callback when the run is cancelled."""


def _datasets(config: TuneConfig, tokenizer: Any) -> tuple[Any, Any]:
    from mlx_lm.tuner.datasets import CacheDataset, create_dataset

    options = SimpleNamespace(mask_prompt=config.mask_prompt)
    sets = []
    for part in ("train", "valid"):
        try:
            sets.append(CacheDataset(create_dataset(list(getattr(config, part)), tokenizer, options)))
        except (ValueError, KeyError) as exc:
            raise InvalidRequestError(f"{part}: {str(exc).splitlines()[0]}", part) from exc
    return sets[0], sets[1]


class _Callback:
    """mlx-lm's TrainingCallback: each report to `on_report`; a cancel stops between steps."""

    def __init__(self, on_report: Callable[[TuneReport], None], cancel: CancelToken) -> None:
        self.on_report, self.cancel = on_report, cancel
        self.val_losses: list[float] = []
        self.last_iteration = 0
        self.peak_gb = 0.0

    def on_train_loss_report(self, info: dict[str, Any]) -> None:
        self.last_iteration = int(info["iteration"])
        self.peak_gb = max(self.peak_gb, float(info.get("peak_memory", 0.0)))
        self.on_report(
            TuneReport(
                "train",
                self.last_iteration,
                float(info["train_loss"]),
                float(info["learning_rate"]),
                float(info["iterations_per_second"]),
                float(info["tokens_per_second"]),
                int(info["trained_tokens"]),
                float(info.get("peak_memory", 0.0)),
            )
        )
        if self.cancel.cancelled:
            raise _Stop

    def on_val_loss_report(self, info: dict[str, Any]) -> None:
        self.val_losses.append(float(info["val_loss"]))
        self.on_report(TuneReport("valid", int(info["iteration"]), float(info["val_loss"])))
        if self.cancel.cancelled:
            raise _Stop


def _record(
    variant: str, base: str, config: TuneConfig, callback: _Callback, stopped: bool
) -> dict[str, Any]:
    return {
        "variant": variant,
        "base_model": base,
        "name": config.name,
        "method": config.method,
        "iterations": callback.last_iteration,
        "stopped": stopped,
        "val_losses": callback.val_losses,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": {k: v for k, v in asdict(config).items() if k not in ("train", "valid")},
    }


def _save(registry: ModelRegistry, model: Any, tmp: Path, out: Path, record: dict[str, Any]) -> None:
    """The trained weights and the record into `tmp`, renamed to `out`, registered."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    mx.save_safetensors(str(tmp / "adapters.safetensors"), dict(tree_flatten(model.trainable_parameters())))
    (tmp / ADAPTER_RECORD).write_text(json.dumps(record, indent=2, default=str))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    registry.add_adapter(out)


def finetune(
    registry: ModelRegistry, config: TuneConfig, on_report: Callable[[TuneReport], None], cancel: CancelToken
) -> TuneResult:
    """Train an adapter of `config.base_model` and register it as `<base>+<name>` (replacing
    an earlier one of that name). A cancel ends the run after the current step; the weights
    so far are saved and registered all the same."""
    import mlx.core as mx
    import mlx.optimizers as optim
    import numpy as np
    from mlx_lm.tuner import trainer
    from mlx_lm.tuner.utils import linear_to_lora_layers

    base = registry.resolve(config.base_model)
    if base.source == "adapter":
        raise InvalidRequestError(
            f"{base.id!r} is an adapter variant: tune its base model instead", "base_model"
        )
    model, tokenizer, _ = load_copy(registry.folder_for(base), float32=registry.float32)
    n_layers = len(model.layers)
    layers = n_layers if config.layers == -1 else config.layers
    if not 1 <= layers <= n_layers:
        raise InvalidRequestError(f"layers must be -1 or 1..{n_layers} for {base.id}", "layers")
    train_set, valid_set = _datasets(config, tokenizer)
    variant = f"{base.id}+{config.name}"
    out = registry.settings.models_dir / ADAPTERS_DIR / variant
    tmp = out.with_name(f".{variant}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    lora = {"rank": config.rank, "scale": config.scale, "dropout": config.dropout}
    adapter_config = {"fine_tune_type": config.method, "num_layers": layers, "lora_parameters": lora}
    (tmp / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2))
    model.freeze()
    mx.random.seed(config.seed)  # before the adapters are made: their initial weights are random
    np.random.seed(config.seed)  # mlx-lm's batch order
    linear_to_lora_layers(model, layers, lora, use_dora=config.method == "dora")
    args = trainer.TrainingArgs(
        batch_size=config.batch_size,
        iters=config.iterations,
        val_batches=config.val_batches,
        steps_per_report=1,
        steps_per_eval=config.val_interval,
        steps_per_save=config.iterations + 1,  # saved below, stopped or not
        max_seq_length=config.max_seq_length,
        adapter_file=str(tmp / "adapters.safetensors"),
    )
    callback = _Callback(on_report, cancel)
    quiet, started, stopped = trainer.TrainUI, time.perf_counter(), False
    # mlx-lm's trainer draws a terminal progress display; rank > 0 keeps it silent.
    trainer.TrainUI = lambda iters, rank=0: quiet(iters, rank=1)  # type: ignore[misc]
    try:
        optimizer = optim.Adam(learning_rate=config.learning_rate)
        trainer.train(model, optimizer, train_set, valid_set, args=args, training_callback=callback)  # type: ignore[arg-type]
    except _Stop:
        stopped = True
    finally:
        trainer.TrainUI = quiet  # type: ignore[misc]
    _save(registry, model, tmp, out, _record(variant, base.id, config, callback, stopped))
    vals = callback.val_losses
    return TuneResult(
        variant,
        str(out),
        callback.last_iteration,
        stopped,
        vals[0] if vals else None,
        vals[-1] if vals else None,
        time.perf_counter() - started,
        callback.peak_gb,
    )
