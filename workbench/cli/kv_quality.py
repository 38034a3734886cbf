"""`workbench kv-quality`: what a quantized KV cache costs at growing context depths (next-token
KL, top-1 agreement, the cache's memory) into one CSV and a plot. Parses flags, calls quant, prints."""

from __future__ import annotations

import argparse
from pathlib import Path

from workbench.engine import Engine


def _ints(raw: str) -> list[int]:
    try:
        return [int(x) for x in raw.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {raw!r}") from None


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from workbench.quant.kv_lab import DEFAULT_BITS, DEFAULT_DEPTHS, WINDOW

    kv = sub.add_parser(
        "kv-quality",
        parents=[common],
        help="measure KV-cache quantization: next-token KL and memory by context depth",
        description="For each --bits, the model's KV cache stored quantized (mlx-lm's QuantizedKVCache, "
        "from the first token) against its own-precision cache: the shipped long text (~8.8k tokens "
        "of license prose) prefilled to each --depths in the engine's prefill chunks, then the next "
        "--window tokens' next-token KL divergence and top-1 agreement, and each cache's bytes. One "
        "row per (precision, depth) in results/kv_quality.csv (appended), the plot kv_quality.png "
        "beside it. Holds the engine for its length (minutes at 8k tokens on a CPU).",
    )
    kv.add_argument("model", nargs="?", help="model (default: the default model)")
    kv.add_argument(
        "--bits",
        type=_ints,
        default=list(DEFAULT_BITS),
        help="KV bits, comma-separated (2-8 quantized, 16 float16; default 16,8,4)",
    )
    kv.add_argument("--group-size", type=int, default=64, help="quantization group size (32, 64, 128)")
    kv.add_argument(
        "--depths",
        type=_ints,
        default=list(DEFAULT_DEPTHS),
        help=f"context depths in tokens (default {','.join(map(str, DEFAULT_DEPTHS))}); depth + window "
        "must fit the model's context",
    )
    kv.add_argument(
        "--window", type=int, default=WINDOW, help=f"tokens compared per depth (default {WINDOW})"
    )
    kv.add_argument("--text", help="a UTF-8 text file to cut the context from (default: the shipped one)")
    kv.add_argument("--out", help="CSV (default: <results dir>/kv_quality.csv)")
    kv.set_defaults(handler=cmd_kv_quality, needs_engine=True)


def cmd_kv_quality(args: argparse.Namespace, engine: Engine) -> int:
    from workbench.quant.kv_lab import kv_quality, parse_storages
    from workbench.reports.plots import kv_quality_plot
    from workbench.reports.schema import KV_QUALITY_COLUMNS
    from workbench.reports.store import read_results

    if args.window < 1:
        raise ValueError("--window must be >= 1")
    storages = parse_storages(args.bits, args.group_size)  # checked before any work
    out = Path(args.out) if args.out else engine.settings.results_dir / "kv_quality.csv"
    text = Path(args.text).read_text(encoding="utf-8") if args.text else None

    def show(row: dict) -> None:
        print(
            f"{row['kv_cache']:>8} depth {row['depth']:>5}: KL {row['kl_mean']:.2e} "
            f"(max {row['kl_max']:.2e}) "
            f"top-1 {row['top1_agreement']:.3f} | KV {row['kv_cache_gb']:.4f} GB ({row['kv_ratio']:.3f}x)",
            flush=True,
        )

    rows = kv_quality(
        engine, args.model, storages, args.depths, csv_path=out, window=args.window, text=text, on_row=show
    )
    df = read_results(out, KV_QUALITY_COLUMNS)
    df = df[df["run_id"] == rows[0]["run_id"]]
    plot = out.with_suffix(".png")
    kv_quality_plot(df).savefig(plot, dpi=110)
    print(f"{len(rows)} rows appended to {out} (run {rows[0]['run_id']}); plot {plot}")
    return 0
