"""`workbench serve`: the UI and both HTTP APIs in one uvicorn process. Settings reach the app
factory as WORKBENCH_* variables, so this module never imports the api package."""

from __future__ import annotations

import argparse
import os
import signal
import sys

from workbench.cli import launch
from workbench.config import add_setting_flags, env_from_args, settings_from_args


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    serve = sub.add_parser(
        "serve",
        parents=[common],
        help="serve the workbench UI (http://127.0.0.1:8080/ui) and the OpenAI- and "
        "Anthropic-compatible API (/v1)",
        description="Serve the workbench UI (/ui: chat, compare, models; / redirects there), the "
        "OpenAI-compatible HTTP API (/v1/models, /v1/chat/completions, /v1/completions), "
        "Anthropic's Messages API (/v1/messages, /v1/messages/count_tokens) and /health from one "
        "process on one MLX engine. Open http://HOST:PORT/ in a browser; point an OpenAI client "
        "at http://HOST:PORT/v1, an Anthropic client at http://HOST:PORT (ANTHROPIC_BASE_URL). "
        "Ctrl-C stops it; SIGTERM lets requests in flight finish first (--drain-s) while new ones get 503. "
        "With --ranks N or --hostfile the model is sharded over several processes (mlx.launch; "
        "docs/distributed.md).",
    )
    add_setting_flags(serve, "serve")
    launch.add_flags(serve, "serve")
    serve.set_defaults(handler=cmd_serve, needs_engine=False)


def cmd_serve(args: argparse.Namespace) -> int:
    """Run uvicorn on the app factory. The factory reads its settings from the
    environment, so flags are handed over as WORKBENCH_* variables."""
    import uvicorn

    settings = settings_from_args(args)  # fail here, with a plain message, on bad values
    os.environ.update(env_from_args(args))
    rank = launch.rank()  # workbench/cli/__init__.py started the ranks and runs the followers
    launch.mark_rank0()
    key = " (API key required)" if settings.api_key else ""
    base = f"http://{settings.host}:{settings.port}"
    print(
        f"MLX Workbench UI on {base}/ui, API on {base}/v1{key}; "
        f"health at /health, docs at /docs. Ctrl-C stops.",
        file=sys.stderr,
    )
    # uvicorn re-raises the SIGTERM it handled once it has shut down: leave with status 0.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    try:
        uvicorn.run(
            "api.app:create_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            log_level=args.log_level.lower(),
            # After Ctrl-C (or SIGTERM's drain, api/lifecycle.py) connections still open are cut
            # after this long; the engine then stops.
            timeout_graceful_shutdown=5,
        )
    finally:
        if rank is not None:  # a rank: a thread a lost rank left in a collective must not hold the exit
            launch.rank0_exit(0)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
    return 0


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)
