"""`workbench bench`: run an experiment spec into its CSV (--resume finishes a killed run) and
print the summary table. Parses flags, calls bench.runner through the cancellable-run helper."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from workbench.cli import launch
from workbench.cli._common import INTERRUPTED, run_cancellable
from workbench.cli.report import print_summary
from workbench.engine import Engine


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    bench = sub.add_parser(
        "bench",
        parents=[common],
        help="run an experiment spec (experiments/<name>.toml) and append one CSV row per trial",
        description="Run every configuration of an experiment spec on the engine (warm-up, exact-length "
        "prompts, end-of-sequence ignored, peak memory reset per trial, the model under test the only "
        "one loaded), appending one row per trial, with provenance, to results/<name>.csv as each "
        "trial ends; the spec goes to the results/<name>.json sidecar. Prints a summary table "
        "(median [95% CI] per configuration) at the end. A killed run keeps its rows: rerun with "
        "--resume to finish it.",
    )
    bench.add_argument("spec", help="experiment spec: experiments/<name> or a path to a .toml file")
    bench.add_argument(
        "--out", help="CSV to append to (default: <results dir>/<name>.csv; WORKBENCH_RESULTS_DIR)"
    )
    bench.add_argument(
        "--resume",
        action="store_true",
        help="continue the latest run of this same spec in the CSV, skipping the trials it completed",
    )
    bench.add_argument("--no-progress", action="store_true", help="no progress bar")
    launch.add_flags(bench, "bench")
    bench.set_defaults(handler=cmd_bench, needs_engine=True)


def cmd_bench(args: argparse.Namespace, engine: Engine) -> int:
    from workbench.bench.runner import default_csv_path, run_to_csv
    from workbench.bench.spec import BenchSpec

    spec = BenchSpec.from_file(args.spec)
    out = Path(args.out) if args.out else default_csv_path(engine.settings.results_dir, spec)
    if spec.question:
        print(f"{spec.name}: {spec.question}", file=sys.stderr)
    run = run_cancellable(
        lambda cancel, progress: run_to_csv(
            engine, spec, out, resume=args.resume, on_progress=progress, cancel=cancel
        ),
        desc=spec.name,
        unit="trial",
        no_progress=args.no_progress,
        interrupted=f"completed trials are in {out}; rerun with --resume to finish",
    )
    if run is None:
        return INTERRUPTED
    print(
        f"{len(run.rows)} rows appended to {run.csv_path} (run {run.run_id}"
        + (f", {run.skipped} trials already done" if run.skipped else "")
        + f"; spec in {run.sidecar_path}; device {engine.device}, blas {engine.blas})",
        file=sys.stderr,
    )
    print_summary(run.csv_path, run.run_id)
    return 0
