"""`workbench loadtest`: the load tool and the multi-turn chat benchmark as an HTTP client of
any OpenAI-compatible server (no Engine here); rows through reports, a table to stdout."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from workbench.cli._common import progress_bar
from workbench.loadgen.loadtest import WORKLOADS

LOAD_TABLE = (
    "server_label",
    "concurrency",
    "requests",
    "completed",
    "errors",
    "aggregate_tps",
    "requests_per_s",
    "ttft_p50_s",
    "ttft_p95_s",
    "itl_p50_s",
    "itl_p95_s",
    "prompt_tokens_reported",
    "acceptance_rate",
)
ARRIVAL_TABLE = (
    "server_label",
    "streams",
    "long_prompt_tokens_reported",
    "long_ttft_s",
    "itl_steady_p50_s",
    "itl_during_p95_s",
    "itl_during_max_s",
    "during_gaps",
    "after_gaps",
    "freeze_ratio",
)
TURN_TABLE = (
    "server_label",
    "conversation",
    "turn",
    "prompt_tokens_reported",
    "cached_tokens_reported",
    "ttft_s",
    "completion_tokens",
    "error",
)


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    load = sub.add_parser(
        "loadtest",
        help="load-test an OpenAI-compatible server (ours or another) and append CSV rows",
        description="Streaming openai-SDK clients of an OpenAI-compatible server (this one, "
        "mlx_lm.server, ...). Load mode (default): for each --concurrency value, send --requests "
        "raw-prompt /v1/completions streams, that many in flight, each a fresh prompt of "
        "--prompt-tokens words (about one token each; the server-reported mean is recorded), "
        "temperature 0, --max-tokens tokens, end-of-sequence ignored where the server honours "
        "'ignore_eos'; appends one row per concurrency (aggregate tok/s, requests/s, TTFT and "
        "inter-token latency p50/p95, errors, provenance) to results/loadtest.csv and prints a "
        "table. --multi-turn: conversations of --turns streamed chat turns whose history grows to "
        "about --history-tokens, one row per turn (TTFT, server-reported prompt and cached tokens) "
        "to results/multiturn.csv; run it against a server with the prompt cache on and off to "
        "compare the last turn's TTFT. Every request has a timeout and the run an overall one.",
    )
    _add_server_flags(load)
    _add_load_flags(load)
    _add_multi_turn_flags(load)
    load.add_argument("--no-progress", action="store_true", help="no progress bar")
    load.set_defaults(log_level=None, handler=cmd_loadtest, needs_engine=False)


def _add_server_flags(load: argparse.ArgumentParser) -> None:
    load.add_argument(
        "--base-url", required=True, help="the server's OpenAI base URL, e.g. http://127.0.0.1:8080/v1"
    )
    load.add_argument(
        "--model",
        required=True,
        help="model name to send (ours: a registered id or 'default'; mlx_lm.server: the folder it serves)",
    )
    load.add_argument(
        "--label", help="server_label column (default: 'workbench' if /health says so, else 'server')"
    )
    load.add_argument("--api-key", help="API key to send (default: $OPENAI_API_KEY, else none)")
    load.add_argument(
        "--out", help="CSV to append to (default <results dir>/loadtest.csv, --multi-turn: multiturn.csv)"
    )


def _add_load_flags(load: argparse.ArgumentParser) -> None:
    load.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        default=[1],
        metavar="C",
        help="requests in flight; several values give one run (row) each (default 1)",
    )
    load.add_argument("--requests", type=int, default=16, help="requests per run (default 16)")
    load.add_argument("--prompt-tokens", type=int, default=128, help="prompt length in words (default 128)")
    load.add_argument(
        "--max-tokens", type=int, help="tokens per request (default 64; --multi-turn: per reply, default 8)"
    )
    load.add_argument(
        "--no-ignore-eos",
        dest="ignore_eos",
        action="store_false",
        help="do not send ignore_eos (for a server that rejects unknown fields)",
    )
    load.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="untimed requests before each run (default 1; --multi-turn: one when > 0)",
    )
    load.add_argument(
        "--workload",
        choices=WORKLOADS,
        default="free",
        help="free: raw-prompt completions of fresh words (default); copy: chat turns asking to copy "
        "--prompt-tokens words exactly; extract: JSON records of the fields of a given text",
    )
    load.add_argument(
        "--speculative",
        help="send our server's speculative extension: prompt_lookup, draft or off (others ignore it)",
    )
    load.add_argument("--seed", type=int, default=0, help="text seed (default 0)")
    load.add_argument("--timeout-s", type=float, default=120.0, help="per-request timeout (default 120)")
    load.add_argument(
        "--overall-timeout-s",
        type=float,
        default=600.0,
        help="nothing is sent after this long, per run (default 600)",
    )


def _add_multi_turn_flags(load: argparse.ArgumentParser) -> None:
    load.add_argument("--multi-turn", action="store_true", help="run the multi-turn chat benchmark instead")
    load.add_argument(
        "--history-tokens",
        type=int,
        default=1000,
        help="--multi-turn: history length in words (default 1000)",
    )
    load.add_argument(
        "--turns", type=int, default=4, help="--multi-turn: turns per conversation, >= 2 (default 4)"
    )
    load.add_argument(
        "--conversations",
        type=int,
        default=3,
        help="--multi-turn: conversations, one after another (default 3)",
    )
    load.add_argument(
        "--same-text",
        action="store_true",
        help="--multi-turn: send the same conversations as every other run with this --seed (no "
        "per-run salt), to measure a cache that outlives the server (the disk tier, across a restart)",
    )
    load.add_argument(
        "--long-arrival",
        action="store_true",
        help="run the long-arrival scenario instead: --streams streams decode (--max-tokens each, "
        "default 256) and a prompt of --long-prompt-tokens words arrives among them; one row "
        "(steady vs during inter-token gaps, freeze_ratio) to results/long_arrival.csv",
    )
    load.add_argument("--streams", type=int, default=4, help="--long-arrival: running streams (default 4)")
    load.add_argument(
        "--long-prompt-tokens",
        type=int,
        default=4096,
        help="--long-arrival: long prompt in words (default 4096)",
    )


def _print_table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    import pandas as pd

    df = pd.DataFrame(rows, columns=list(columns))
    with pd.option_context(
        "display.width", 200, "display.max_columns", None, "display.float_format", "{:.4g}".format
    ):
        print(df.to_string(index=False))


def cmd_loadtest(args: argparse.Namespace) -> int:
    from workbench.config import Settings
    from workbench.loadgen.loadtest import fetch_health

    health = fetch_health(args.base_url)
    label = args.label or ("workbench" if health and isinstance(health.get("engine"), dict) else "server")
    name = "multiturn.csv" if args.multi_turn else "long_arrival.csv" if args.long_arrival else "loadtest.csv"
    out = Path(args.out) if args.out else Settings.from_env().results_dir / name
    client_options = {
        "api_key": args.api_key or os.environ.get("OPENAI_API_KEY"),
        "timeout_s": args.timeout_s,
        "overall_timeout_s": args.overall_timeout_s,
    }
    if args.multi_turn:
        return _multi_turn(args, health, label, out, client_options)
    if args.long_arrival:
        return _long_arrival(args, health, label, out, client_options)
    return _load(args, health, label, out, client_options)


def _long_arrival(
    args: argparse.Namespace, health: Any, label: str, out: Path, common: dict[str, Any]
) -> int:
    from workbench.loadgen.long_arrival import run_long_arrival
    from workbench.reports.schema import ARRIVAL_FIELDS
    from workbench.reports.store import append_rows
    from workbench.runs import capture_client

    result = run_long_arrival(
        args.base_url,
        args.model,
        args.streams,
        args.long_prompt_tokens,
        args.max_tokens or 256,
        seed=args.seed,
        **common,
    )
    row = result.row(capture_client(health), label)
    append_rows(out, ARRIVAL_FIELDS, [row])
    _print_table([row], ARRIVAL_TABLE)
    print(f"1 row appended to {out}", file=sys.stderr)
    if row["first_error"]:
        print(f"{row['errors']} error(s), first: {row['first_error']}", file=sys.stderr)
    return 1 if row["errors"] else 0


def _multi_turn(args: argparse.Namespace, health: Any, label: str, out: Path, common: dict[str, Any]) -> int:
    from workbench.loadgen.multiturn import run_conversations, turn_rows
    from workbench.reports.schema import MULTITURN_FIELDS
    from workbench.reports.store import append_rows
    from workbench.runs import capture_client

    max_tokens = args.max_tokens or 8
    bar, progress = progress_bar("multi-turn", "turn", args.no_progress)
    results = run_conversations(
        args.base_url,
        args.model,
        args.history_tokens,
        args.turns,
        args.conversations,
        max_tokens,
        seed=args.seed,
        warmup=args.warmup > 0,
        on_progress=progress,
        same_text=args.same_text,
        **common,
    )
    bar.close()
    rows = turn_rows(
        results,
        capture_client(health),
        label,
        args.base_url,
        args.model,
        args.history_tokens,
        args.turns,
        max_tokens,
        args.seed,
    )
    append_rows(out, MULTITURN_FIELDS, rows)
    _print_table(rows, TURN_TABLE)
    last = [r["ttft_s"] for r in rows if r["turn"] == args.turns and r["ttft_s"] is not None]
    if last:
        last.sort()
        print(
            f"last-turn TTFT median {last[len(last) // 2]:.3f}s over {len(last)} conversation(s)",
            file=sys.stderr,
        )
    print(f"{len(rows)} rows appended to {out} (run {rows[0]['run_id'] if rows else '-'})", file=sys.stderr)
    return 0 if all(r["error"] is None for r in rows) else 1


def _load(args: argparse.Namespace, health: Any, label: str, out: Path, common: dict[str, Any]) -> int:
    from workbench.loadgen.loadtest import run_load
    from workbench.reports.schema import LOAD_FIELDS
    from workbench.reports.store import append_rows
    from workbench.runs import capture_client

    max_tokens = args.max_tokens or 64
    rows = []
    for concurrency in args.concurrency:
        bar, progress = progress_bar(f"{label} c={concurrency}", "req", args.no_progress)
        result = run_load(
            args.base_url,
            args.model,
            concurrency,
            args.requests,
            args.prompt_tokens,
            max_tokens,
            seed=args.seed,
            ignore_eos=args.ignore_eos,
            warmup=args.warmup,
            on_progress=progress,
            workload=args.workload,
            speculative=args.speculative,
            **common,
        )
        bar.close()
        row = result.row(capture_client(health), label)
        append_rows(out, LOAD_FIELDS, [row])  # one run at a time: a later failure keeps this row
        rows.append(row)
        if row["first_error"]:
            print(f"c={concurrency}: {row['errors']} error(s), first: {row['first_error']}", file=sys.stderr)
    _print_table(rows, LOAD_TABLE)
    print(f"{len(rows)} rows appended to {out}", file=sys.stderr)
    return 0 if all(r["errors"] == 0 for r in rows) else 1
