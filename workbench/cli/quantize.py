"""`workbench quantize`: make variants of a model by recipe, or run a quantization sweep
(experiments/<name>.toml) into one CSV and a Pareto plot. Parses flags, calls quant, prints."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from workbench.cli._common import INTERRUPTED, run_cancellable
from workbench.cli.report import write_quant_report
from workbench.engine import RECIPE_HELP, Engine


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    quantize = sub.add_parser(
        "quantize",
        parents=[common],
        help="make quantized variants of a model, or run a quantization sweep (--sweep)",
        description="Without --sweep: make the --recipe variants of MODEL with mlx-lm's convert "
        "(in-process, on the engine thread), register them (`workbench models` lists them; chat, "
        "compare and the API can use them by id) and print their ids. A variant made before from "
        "the same weights and recipe is reused. With --sweep experiments/<name>: the reference "
        "and every recipe of the spec, each measured for quality against the reference "
        "(perplexity, KL divergence, top-1 agreement, greedy divergence on the shipped "
        "evaluation text) and for speed and memory with the benchmark runner; one row per "
        "variant in results/<name>.csv (trials in <name>.bench.csv, spec in <name>.json), "
        "a summary table, and the Pareto plot <name>.pareto.png.",
        epilog=f"recipes: {RECIPE_HELP}",
    )
    quantize.add_argument("source", nargs="?", help="model to quantize (default: the default model)")
    quantize.add_argument(
        "-r", "--recipe", action="append", default=[], help="recipe, e.g. q4, q4-g32, mixed_3_6, mxfp4, f32"
    )
    quantize.add_argument("--sweep", help="sweep spec: experiments/<name> or a path to a .toml file")
    quantize.add_argument("--out", help="sweep CSV (default: <results dir>/<name>.csv)")
    quantize.add_argument("--no-progress", action="store_true", help="no progress bar")
    quantize.set_defaults(handler=cmd_quantize, needs_engine=True)


def cmd_quantize(args: argparse.Namespace, engine: Engine) -> int:
    if args.sweep:
        if args.recipe or args.source:
            raise ValueError("give either --sweep or a model and --recipe, not both")
        return _sweep(args, engine)
    if not args.recipe:
        raise ValueError(f"give at least one --recipe ({RECIPE_HELP}), or --sweep experiments/<name>")
    from workbench.engine import QuantRecipe

    recipes = [QuantRecipe.parse(r) for r in args.recipe]  # every recipe checked before any work
    for recipe in recipes:
        made = engine.quantize(args.source, recipe)
        info = engine.model_info(made.model)
        how = "reused" if made.cached else f"made in {made.quantize_s:.1f}s"
        size = f"{info.size_bytes / 1e9:.3f} GB" if info.size_bytes else "?"
        bpw = f"{made.bits_per_weight:.2f}" if made.bits_per_weight else "?"
        print(f"{made.model}\t{made.recipe} of {made.source_model}\t{bpw} bits/weight\t{size}\t{how}")
    return 0


def _sweep(args: argparse.Namespace, engine: Engine) -> int:
    from workbench.quant import QuantSweepSpec, run_sweep
    from workbench.quant.sweep import default_csv_path

    spec = QuantSweepSpec.from_file(args.sweep)
    out = Path(args.out) if args.out else default_csv_path(engine.settings.results_dir, spec)
    if spec.question:
        print(f"{spec.name}: {spec.question}", file=sys.stderr)
    run = run_cancellable(
        lambda cancel, progress: run_sweep(engine, spec, out, on_progress=progress, cancel=cancel),
        desc=spec.name,
        unit="step",
        no_progress=args.no_progress,
        interrupted=f"the finished variants are in {out}",
    )
    if run is None:
        return INTERRUPTED
    print(
        f"{len(run.rows)} rows appended to {run.csv_path} (run {run.run_id}; trials in "
        f"{run.bench_csv_path}; spec in {run.sidecar_path}; device {engine.device}, blas {engine.blas})",
        file=sys.stderr,
    )
    write_quant_report(run.csv_path, run.run_id, run.csv_path.parent)
    return 0
