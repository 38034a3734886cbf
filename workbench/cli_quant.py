"""`workbench quantize`: make variants of a model by recipe, or run a quantization sweep
(experiments/<name>.toml) into one CSV and a Pareto plot. Parses flags, calls quant /
reports, prints; tables to stdout, progress and notices to stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from workbench.engine import RECIPE_HELP, Engine


def add_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
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
    from workbench.cli_bench import progress_bar
    from workbench.engine import CancelToken
    from workbench.quant import QuantSweepSpec, run_sweep
    from workbench.quant.sweep import default_csv_path

    spec = QuantSweepSpec.from_file(args.sweep)
    out = Path(args.out) if args.out else default_csv_path(engine.settings.results_dir, spec)
    if spec.question:
        print(f"{spec.name}: {spec.question}", file=sys.stderr)
    bar, progress = progress_bar(spec.name, "step", args.no_progress)

    cancel = CancelToken()
    try:
        run = run_sweep(engine, spec, out, on_progress=progress, cancel=cancel)
    except KeyboardInterrupt:
        cancel.cancel()
        bar.close()
        print(f"\ninterrupted: the finished variants are in {out}", file=sys.stderr)
        return 130
    bar.close()
    print(
        f"{len(run.rows)} rows appended to {run.csv_path} (run {run.run_id}; trials in "
        f"{run.bench_csv_path}; spec in {run.sidecar_path}; device {engine.device}, blas {engine.blas})",
        file=sys.stderr,
    )
    write_quant_report(run.csv_path, run.run_id, run.csv_path.parent)
    return 0


def write_quant_report(csv_path: Path, run: str, out_dir: Path) -> list[Path]:
    """Print the sweep's summary table and write <name>.pareto.png; returns the files."""
    import pandas as pd

    from workbench.cli_bench import select_run
    from workbench.reports import plots
    from workbench.reports.schema import QUANT_COLUMNS, QUANT_SUMMARY_FIELDS
    from workbench.reports.store import read_results

    df = select_run(read_results(csv_path, QUANT_COLUMNS), run)
    with pd.option_context("display.width", 220, "display.max_columns", None, "display.precision", 4):
        print(df[list(QUANT_SUMMARY_FIELDS)].to_string(index=False))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{csv_path.stem}.pareto.png"
    plots.quant_pareto(df).savefig(path, dpi=110)
    print(f"Pareto plot: {path}", file=sys.stderr)
    return [path]
