"""`workbench models`: every registered model id as a table or JSON. Reads Engine.models();
knows nothing of where models come from."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from workbench.engine import Engine


def add_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    models = sub.add_parser(
        "models",
        parents=[common],
        help="list registered models",
        description="List every registered model id: source, variant, bits, size, context length "
        "(tokens of prompt + reply it holds; '-' until a GGUF is first converted), loaded.",
    )
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")
    models.set_defaults(handler=cmd_models, needs_engine=True)


def _human_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


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
