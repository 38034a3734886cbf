"""`workbench finetune experiments/<name>`: a LoRA/DoRA run of the fine-tuning lab with a progress
bar (loss, tokens/s), rows in results/<name>.csv; `workbench fuse ID`: an adapter variant fused
into a standalone MLX folder."""

from __future__ import annotations

import argparse
import sys

from workbench.cli._common import INTERRUPTED, run_cancellable
from workbench.engine import Engine


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    tune = sub.add_parser(
        "finetune",
        parents=[common],
        help="train a LoRA/DoRA adapter of a model (the fine-tuning lab)",
        description="Train an adapter of the spec's base_model with mlx-lm's trainer on the engine, "
        "from JSONL data in mlx-lm's formats (messages, prompt/completion, text). One row per "
        "training step and per validation in results/<name>.csv (the spec in <name>.json). The "
        "adapter is saved under <models dir>/adapters/<base>+<name>/ and registered as the model "
        "<base>+<name> (chat, compare, arena, benchmarks, both APIs). Ctrl-C or SIGTERM stops "
        "after the current step; the weights so far are saved and registered (exit 130).",
    )
    tune.add_argument("spec", help="experiments/<name> or a path to a .toml file")
    tune.add_argument("--no-progress", action="store_true", help="no progress bar")
    tune.set_defaults(handler=cmd_finetune, needs_engine=True)
    fuse = sub.add_parser(
        "fuse",
        parents=[common],
        help="fuse an adapter variant into a standalone MLX folder",
        description="Fold an adapter variant's LoRA/DoRA layers into its base weights and save a "
        "standalone MLX folder <models dir>/<base>-<name>-fused, registered by that name.",
    )
    fuse.add_argument("model", help="an adapter variant id, <base>+<name>")
    fuse.set_defaults(handler=cmd_fuse, needs_engine=True)


def cmd_finetune(args: argparse.Namespace, engine: Engine) -> int:
    from workbench.tune import FinetuneSpec, run_finetune

    spec = FinetuneSpec.from_file(args.spec)
    if spec.question:
        print(f"{spec.name}: {spec.question}", file=sys.stderr)
    results = engine.settings.results_dir
    run = run_cancellable(
        lambda cancel, progress: run_finetune(engine, spec, results, on_progress=progress, cancel=cancel),
        desc=spec.name,
        unit="step",
        no_progress=args.no_progress,
        interrupted=f"the adapter so far is saved; rows in {results / (spec.name + '.csv')}",
    )
    if run is None:
        return INTERRUPTED
    r = run.result
    first = f"{r.first_val_loss:.3f}" if r.first_val_loss is not None else "-"
    last = f"{r.last_val_loss:.3f}" if r.last_val_loss is not None else "-"
    rate = r.iterations / max(r.train_s, 1e-9)
    stopped = " (stopped)" if r.stopped else ""
    print(
        f"{r.variant}: {r.iterations} steps in {r.train_s:.0f} s ({rate:.2f} it/s), validation loss "
        f"{first} -> {last}, peak {r.peak_memory_gb:.2f} GB{stopped}; {run.rows} rows in {run.csv_path} "
        f"(run {run.run_id}); adapter in {r.folder}",
        file=sys.stderr,
    )
    if spec.arena_prompts:
        base = r.variant.split("+", 1)[0]
        print(
            f"judge it against its base: workbench arena run experiments/{spec.arena_prompts} "
            f"-m {base} -m {r.variant} --name {spec.name}-vs-base",
            file=sys.stderr,
        )
    print(r.variant)
    return 0


def cmd_fuse(args: argparse.Namespace, engine: Engine) -> int:
    info = engine.fuse(args.model)
    print(f"{args.model} fused into {info.path}, registered as {info.id}", file=sys.stderr)
    print(info.id)
    return 0
