"""Thin argparse CLI: `workbench serve` (UI + API), `models`, `chat`; `bench`, `report` and
`overhead` live in cli_bench, `quantize` in cli_quant, `arena` in cli_arena, `loadtest` in
cli_load.

Parses flags into Settings and a request, then calls the Engine; all behaviour
lives below. Generated text goes to stdout, stats and notices to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from collections.abc import Sequence
from dataclasses import asdict

from workbench import __version__, cli_arena, cli_bench, cli_load, cli_quant
from workbench.config import add_setting_flags, env_from_args, settings_from_args
from workbench.engine import (
    Chunk,
    Engine,
    EngineError,
    GenerationRequest,
    Message,
    SamplingParams,
)


def _human_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


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
        "Ctrl-C stops it; SIGTERM lets requests in flight finish first (--drain-s) while new ones get 503.",
    )
    add_setting_flags(serve, "serve")

    models = sub.add_parser(
        "models",
        parents=[common],
        help="list registered models",
        description="List every registered model id: source, variant, bits, size, context length "
        "(tokens of prompt + reply it holds; '-' until a GGUF is first converted), loaded.",
    )
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")

    chat = sub.add_parser(
        "chat",
        parents=[common],
        help="chat in the terminal (one-shot with PROMPT)",
        description="Stream a reply to PROMPT and exit, or chat interactively without one "
        "(/reset clears the history, /exit or Ctrl-D quits, Ctrl-C stops a reply). "
        "Text goes to stdout; a stats line (TTFT, tok/s, peak memory) to stderr.",
    )
    chat.add_argument("prompt", nargs="?", help="one-shot prompt ('-' reads stdin)")
    chat.add_argument(
        "-m", "--model", help="model id, folder, .gguf file or hub id (default: the embedded model)"
    )
    chat.add_argument("-s", "--system", help="system prompt")
    chat.add_argument("--raw", action="store_true", help="send PROMPT as raw text, without the chat template")
    chat.add_argument("--max-tokens", type=int, default=512)
    chat.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    chat.add_argument("--top-p", type=float, default=1.0)
    chat.add_argument("--top-k", type=int, default=0)
    chat.add_argument("--min-p", type=float, default=0.0)
    chat.add_argument("--repetition-penalty", type=float, default=1.0)
    chat.add_argument("--seed", type=int)
    chat.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    chat.add_argument("--no-stats", action="store_true", help="do not print the stats line")

    cli_bench.add_commands(sub, common)
    cli_quant.add_commands(sub, common)
    cli_arena.add_commands(sub, common)
    cli_load.add_commands(sub)
    return parser


def cmd_serve(args: argparse.Namespace) -> int:
    """Run uvicorn on the app factory. The factory reads its settings from the
    environment, so flags are handed over as WORKBENCH_* variables (the CLI never
    imports the api package)."""
    import os

    import uvicorn

    settings = settings_from_args(args)  # fail here, with a plain message, on bad values
    os.environ.update(env_from_args(args))
    key = " (API key required)" if settings.api_key else ""
    base = f"http://{settings.host}:{settings.port}"
    print(
        f"MLX Workbench UI on {base}/ui, API on {base}/v1{key}; "
        f"health at /health, docs at /docs. Ctrl-C stops.",
        file=sys.stderr,
    )
    # uvicorn re-raises the SIGTERM it handled once it has shut down: leave with status 0.
    signal.signal(signal.SIGTERM, _exit_cleanly)
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
    return 0


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def cmd_models(args: argparse.Namespace, engine: Engine) -> int:
    infos = engine.models()
    if args.json:
        print(json.dumps([asdict(i) for i in infos], indent=2))
        return 0
    default = engine.default_model
    rows = [("ID", "SOURCE", "VARIANT", "BITS", "SIZE", "CONTEXT", "LOADED")]
    for i in infos:
        mark = " (default)" if i.id == default else ""
        rows.append(
            (
                i.id + mark,
                i.source,
                i.variant,
                str(i.bits or "-"),
                _human_bytes(i.size_bytes),
                str(i.context_length or "-"),
                "yes" if i.loaded else "no",
            )
        )
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _stream_reply(engine: Engine, request: GenerationRequest, show_stats: bool) -> str:
    """Print chunks as they arrive; Ctrl-C cancels the reply. Returns the text."""
    parts: list[str] = []
    stream = engine.stream(request)
    last: Chunk | None = None
    try:
        for chunk in stream:
            parts.append(chunk.text)
            sys.stdout.write(chunk.text)
            sys.stdout.flush()
            last = chunk
    except KeyboardInterrupt:
        stream.close()  # closing the stream cancels generation on the engine thread
        print("\n[cancelled]", file=sys.stderr)
        return "".join(parts)
    sys.stdout.write("\n")
    if show_stats and last is not None and last.stats is not None:
        print(f"[{last.stats.summary()}]", file=sys.stderr)
    return "".join(parts)


def cmd_chat(args: argparse.Namespace, engine: Engine) -> int:
    sampling = SamplingParams(
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        min_p=args.min_p,
        repetition_penalty=args.repetition_penalty,
        seed=args.seed,
    )
    model = args.model or engine.default_model
    info = engine.model_info(model)
    if not info.loaded:
        print(f"[loading {info.id} ...]", file=sys.stderr)
        engine.load(model)

    def request(history: list[Message] | None, prompt: str | None = None) -> GenerationRequest:
        return GenerationRequest(
            messages=tuple(history) if history is not None else None,
            prompt=prompt,
            model=model,
            sampling=sampling,
            max_tokens=args.max_tokens,
            stop=tuple(args.stop),
        )

    system = [Message("system", args.system)] if args.system else []
    if args.prompt is not None:
        text = sys.stdin.read() if args.prompt == "-" else args.prompt
        req = request(None, text) if args.raw else request([*system, Message("user", text)])
        _stream_reply(engine, req, not args.no_stats)
        return 0

    history = list(system)
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"[chatting with {info.id}; /reset clears, /exit or Ctrl-D quits]", file=sys.stderr)
    while True:
        try:
            line = input(">>> " if interactive else "")
        except (EOFError, KeyboardInterrupt):
            print(file=sys.stderr)
            return 0
        if not line.strip():
            continue
        if line.strip() in ("/exit", "/quit"):
            return 0
        if line.strip() == "/reset":
            history = list(system)
            print("[history cleared]", file=sys.stderr)
            continue
        history.append(Message("user", line))
        reply = _stream_reply(engine, request(history), not args.no_stats)
        history.append(Message("assistant", reply))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.log_level = (
        getattr(args, "log_level", None) or ("INFO" if args.command == "serve" else "WARNING")
    ).upper()
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    # SIGTERM stops a command as Ctrl-C does: completed rows stay, sidecars say "stopped".
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if args.command == "serve":
            return cmd_serve(args)
        if args.command == "report":  # reads files only: no engine
            return cli_bench.cmd_report(args)
        if args.command == "arena" and args.arena_command == "stats":  # files only, too
            return cli_arena.cmd_arena_stats(args)
        if args.command == "loadtest":  # an HTTP client of some server: no engine here
            return cli_load.cmd_loadtest(args)
        settings = settings_from_args(args)
        with Engine(settings) as engine:
            commands = {
                "models": cmd_models,
                "chat": cmd_chat,
                "bench": cli_bench.cmd_bench,
                "overhead": cli_bench.cmd_overhead,
                "quantize": cli_quant.cmd_quantize,
                "arena": cli_arena.cmd_arena_run,
            }
            return commands[args.command](args, engine)
    except (EngineError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
