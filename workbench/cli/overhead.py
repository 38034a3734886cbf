"""`workbench overhead`: the Engine against raw mlx-lm in-process, or (--api) an openai-SDK client
of `workbench serve` against Engine.stream; rows to a CSV, medians printed. Calls bench/loadgen."""

from __future__ import annotations

import argparse
from pathlib import Path

from workbench.engine import Engine


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
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
    overhead.set_defaults(handler=cmd_overhead, needs_engine=True)


def cmd_overhead(args: argparse.Namespace, engine: Engine) -> int:
    from workbench.bench.overhead import measure_overhead, summarize
    from workbench.engine.models.embedded import EMBEDDED_IDS
    from workbench.reports.schema import OVERHEAD_FIELDS
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
    append_rows(Path(out), OVERHEAD_FIELDS, rows)
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
