"""`workbench report`: the summary table and PNG plots of a benchmark CSV, or a quantization
sweep's table and Pareto plot. Reads files only (no engine); draws through reports.plots."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from workbench.cli._common import select_run


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    report = sub.add_parser(
        "report",
        help="summary table and PNG plots of a benchmark or quantization-sweep CSV",
        description="Validate a benchmark CSV against the report schema, print the summary table "
        "(median [95% CI] per configuration) and write the plots as PNG files beside it: "
        "<name>.tps_vs_prompt_length.png, .tps_vs_generation_length.png, .memory_vs_context.png, "
        ".variant_comparison.png, plus <name>.summary.csv. For a quantization sweep CSV "
        "(`workbench quantize --sweep`): its table and <name>.pareto.png.",
    )
    report.add_argument("csv", help="a results CSV written by `workbench bench`")
    report.add_argument("--run", default="latest", help="run id to report, 'latest' (default) or 'all'")
    report.add_argument("--out-dir", help="where to write the PNGs (default: beside the CSV)")
    report.set_defaults(log_level=None, handler=cmd_report, needs_engine=False)


def cmd_report(args: argparse.Namespace) -> int:
    from workbench.reports import plots
    from workbench.reports.store import read_results
    from workbench.reports.summary import summarize

    csv_path = Path(args.csv)
    out_dir = Path(args.out_dir) if args.out_dir else csv_path.parent
    if _is_quant_sweep(csv_path):
        write_quant_report(csv_path, args.run, out_dir)
        return 0
    df = select_run(read_results(csv_path), args.run)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, plot in plots.REPORT_PLOTS.items():
        path = out_dir / f"{csv_path.stem}.{name}.png"
        plot(df).savefig(path, dpi=110)
        written.append(path)
    summary_path = out_dir / f"{csv_path.stem}.summary.csv"
    summarize(df).to_csv(summary_path, index=False)
    runs = ", ".join(dict.fromkeys(df["run_id"].astype(str)))
    print_summary(csv_path, args.run)
    print(f"run(s) {runs}: wrote {summary_path} and {len(written)} plots:", file=sys.stderr)
    for path in written:
        print(f"  {path}", file=sys.stderr)
    return 0


def print_summary(csv_path: Path, run: str) -> None:
    """The benchmark summary table of run `run` in `csv_path` (stdout), and what it shows (stderr)."""
    import pandas as pd

    from workbench.reports.store import read_results
    from workbench.reports.summary import MIN_TRIALS_FOR_CI, format_summary, summarize

    df = select_run(read_results(csv_path), run)
    summary = format_summary(summarize(df))
    with pd.option_context("display.width", 200, "display.max_columns", None):
        print(summary.to_string(index=False))
    if summary["n"].min() < MIN_TRIALS_FOR_CI:
        print(
            f"(medians; a 95% CI needs {MIN_TRIALS_FOR_CI}+ trials per configuration)",
            file=sys.stderr,
        )
    else:
        print("(median [95% CI of the median] per configuration)", file=sys.stderr)


def write_quant_report(csv_path: Path, run: str, out_dir: Path) -> list[Path]:
    """Print the sweep's summary table and write <name>.pareto.png; returns the files."""
    import pandas as pd

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


def _is_quant_sweep(csv_path: Path) -> bool:
    """A `workbench quantize --sweep` CSV (reports.schema.QUANT_COLUMNS) rather than a benchmark's."""
    from workbench.reports.schema import QUANT_FIELDS
    from workbench.reports.store import csv_header

    try:
        return csv_header(csv_path) == list(QUANT_FIELDS)
    except OSError:
        return False
