"""The `workbench` command: `main` builds the parser from one module per verb, turns flags into
Settings and runs the verb, on an Engine when it needs one. Behaviour lives below the CLI."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from workbench import __version__
from workbench.cli import (
    arena,
    bench,
    chat,
    finetune,
    kv_quality,
    launch,
    loadtest,
    models,
    overhead,
    pull,
    quantize,
    report,
    serve,
)
from workbench.cli._common import sigterm_as_ctrl_c
from workbench.config import add_setting_flags, env_from_args, settings_from_args
from workbench.engine import Engine, EngineError

# In `workbench --help` order.
VERBS = (serve, models, pull, chat, bench, report, overhead, quantize, kv_quality, finetune, arena, loadtest)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="workbench",
        description="MLX Workbench: local language models on one MLX engine.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    add_setting_flags(common, "common")
    common.add_argument(
        "--log-level", help="DEBUG, INFO, WARNING, ERROR (default: INFO for serve, WARNING otherwise)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for verb in VERBS:
        verb.add_parser(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.log_level = (
        getattr(args, "log_level", None) or ("INFO" if args.command == "serve" else "WARNING")
    ).upper()
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    sigterm_as_ctrl_c()  # serve replaces it with its own drain
    try:
        if launch.wanted(args):  # --ranks / --hostfile: mlx.launch starts every rank of this command
            argv = list(sys.argv[1:] if argv is None else argv)
            return launch.run_ranks(args, env_from_args(args), launch.rank_argv(argv))
        if launch.rank() and getattr(args, "ranks_capable", False):
            return launch.follow()  # a rank other than 0: the engine's follower
        launch.mark_rank0()
        if not args.needs_engine:  # serve, report, arena stats, loadtest: no engine in this process
            return launch.rank0_exit(args.handler(args))
        with Engine(settings_from_args(args)) as engine:
            return launch.rank0_exit(args.handler(args, engine))
    except (EngineError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return launch.rank0_exit(2)
