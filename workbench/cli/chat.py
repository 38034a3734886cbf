"""`workbench chat`: one-shot or interactive chat in the terminal on the Engine. Reply text to
stdout, a stats line to stderr; Ctrl-C stops a reply. Knows requests and chunks, not mlx."""

from __future__ import annotations

import argparse
import sys

from workbench.engine import Chunk, Engine, GenerationRequest, Message, SamplingParams


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
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
    chat.set_defaults(handler=cmd_chat, needs_engine=True)


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
