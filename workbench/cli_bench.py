"""The measuring half of the CLI: `workbench bench`, `report` and `overhead`.

Parses flags, calls bench / reports, prints; all behaviour lives below. Tables go
to stdout, progress and notices to stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workbench.engine import Engine


def add_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
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
    report.set_defaults(log_level=None)

    overhead = sub.add_parser(
        "overhead",
        parents=[common],
        help="measure Engine overhead against raw mlx_lm (or the HTTP API against Engine)",
        description="Greedy generations of an exact-length prompt through Engine.stream and through "
        "raw mlx_lm.stream_generate, alternating, in one process; appends one CSV row per trial "
        "and prints median tok/s and the overhead. Run once with --blas off to compare BLAS. "
        "With --api: a streaming openai-SDK client of a `workbench serve` subprocess against "
        "in-process Engine.stream instead.",
    )
    overhead.add_argument(
        "--api",
        action="store_true",
        help="compare an openai-SDK streaming client of `workbench serve` with in-process Engine.stream",
    )
    overhead.add_argument(
        "-m",
        "--model",
        action="append",
        dest="models",
        help="model id (repeatable; default: both embedded variants)",
    )
    overhead.add_argument("--prompt-tokens", type=int, default=128)
    overhead.add_argument("--gen-tokens", type=int, default=64)
    overhead.add_argument("--trials", type=int, default=5)
    overhead.add_argument(
        "--out",
        help="CSV to append to (default results/engine_overhead.csv, with --api results/api_overhead.csv)",
    )


def progress_bar(desc: str, unit: str, disable: bool = False) -> tuple[Any, Callable[[int, int, str], None]]:
    """A tqdm bar on stderr and the (done, total, what) callback that moves it (the
    runners' on_progress); close the bar when the run ends."""
    from tqdm import tqdm

    bar = tqdm(unit=unit, desc=desc, file=sys.stderr, disable=disable)

    def progress(done: int, total: int, what: str) -> None:
        bar.total = total
        bar.n = done
        bar.set_postfix_str(what[-60:], refresh=False)
        bar.refresh()

    return bar, progress


def cmd_bench(args: argparse.Namespace, engine: Engine) -> int:
    from workbench.bench.runner import default_csv_path, run_to_csv
    from workbench.bench.spec import BenchSpec
    from workbench.engine import CancelToken

    spec = BenchSpec.from_file(args.spec)
    out = Path(args.out) if args.out else default_csv_path(engine.settings.results_dir, spec)
    if spec.question:
        print(f"{spec.name}: {spec.question}", file=sys.stderr)
    bar, progress = progress_bar(spec.name, "trial", args.no_progress)
    cancel = CancelToken()
    try:
        run = run_to_csv(engine, spec, out, resume=args.resume, on_progress=progress, cancel=cancel)
    except KeyboardInterrupt:
        cancel.cancel()
        bar.close()
        print(f"\ninterrupted: completed trials are in {out}; rerun with --resume to finish", file=sys.stderr)
        return 130
    bar.close()
    print(
        f"{len(run.rows)} rows appended to {run.csv_path} (run {run.run_id}"
        + (f", {run.skipped} trials already done" if run.skipped else "")
        + f"; spec in {run.sidecar_path}; device {engine.device}, blas {engine.blas})",
        file=sys.stderr,
    )
    _print_summary(run.csv_path, run.run_id)
    return 0


def _print_summary(csv_path: Path, run: str) -> None:
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


def select_run(df, run: str):
    if df.empty:
        raise ValueError("the results file has no rows")
    if run == "all":
        return df
    run_id = str(df["run_id"].iloc[-1]) if run == "latest" else run
    chosen = df[df["run_id"] == run_id]
    if chosen.empty:
        known = ", ".join(dict.fromkeys(df["run_id"].astype(str)))
        raise ValueError(f"no run {run_id!r} in the file (runs: {known})")
    return chosen


def cmd_report(args: argparse.Namespace) -> int:
    from workbench.reports import plots
    from workbench.reports.store import read_results
    from workbench.reports.summary import summarize

    csv_path = Path(args.csv)
    out_dir = Path(args.out_dir) if args.out_dir else csv_path.parent
    if _is_quant_sweep(csv_path):
        from workbench.cli_quant import write_quant_report

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
    _print_summary(csv_path, args.run)
    print(f"run(s) {runs}: wrote {summary_path} and {len(written)} plots:", file=sys.stderr)
    for path in written:
        print(f"  {path}", file=sys.stderr)
    return 0


def _is_quant_sweep(csv_path: Path) -> bool:
    """A `workbench quantize --sweep` CSV (reports.schema.QUANT_COLUMNS) rather than a benchmark's."""
    import csv

    from workbench.reports.schema import QUANT_FIELDS

    try:
        with open(csv_path, newline="") as f:
            return next(csv.reader(f), []) == list(QUANT_FIELDS)
    except OSError:
        return False


def cmd_overhead(args: argparse.Namespace, engine: Engine) -> int:
    from workbench.bench.overhead import FIELDS, measure_overhead, summarize
    from workbench.engine.models.embedded import EMBEDDED_IDS
    from workbench.reports.store import append_rows

    for name in ("prompt_tokens", "gen_tokens", "trials"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
    if args.api:
        from workbench.loadgen.client_overhead import measure_client_overhead, serve_subprocess

        models = args.models or [EMBEDDED_IDS["f32"]]
        out = args.out or "results/api_overhead.csv"
        base, other = "engine", "openai_sdk"
        with serve_subprocess(engine.settings) as url:
            rows = measure_client_overhead(
                engine, url, models, args.prompt_tokens, args.gen_tokens, args.trials
            )
    else:
        models = args.models or [EMBEDDED_IDS["4bit"], EMBEDDED_IDS["f32"]]
        out = args.out or "results/engine_overhead.csv"
        base, other = "raw", "engine"
        rows = measure_overhead(engine, models, args.prompt_tokens, args.gen_tokens, args.trials)
    append_rows(Path(out), FIELDS, rows)
    print(f"{len(rows)} rows appended to {out} (run {rows[0]['run_id']}, blas {engine.blas})")
    for s in summarize(rows, base, other):
        lo_p, hi_p = s["prefill_overhead_range"]
        lo_d, hi_d = s["decode_overhead_range"]
        print(
            f"{s['model']}: prefill {base} {s[f'{base}_prompt_tps']:.1f} / "
            f"{other} {s[f'{other}_prompt_tps']:.1f} tok/s, "
            f"overhead {s['prefill_overhead_pct']:+.1f}% [{lo_p:+.1f}..{hi_p:+.1f}]; "
            f"decode {base} {s[f'{base}_generation_tps']:.2f} / {other} {s[f'{other}_generation_tps']:.2f} "
            f"tok/s, overhead {s['decode_overhead_pct']:+.1f}% [{lo_d:+.1f}..{hi_d:+.1f}] "
            f"(median of {s['trials']} paired trials)"
        )
    return 0
