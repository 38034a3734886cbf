"""Anthropic Messages bodies and stream events built from engine results: the text
content block, stop_reason / stop_sequence, usage, and the same `timings` extension
as the OpenAI responses. Pure functions over engine types; knows no HTTP or engine thread."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from api.openai.responses import timings
from workbench.engine import Completion, GenerationStats
from workbench.engine.structured.tools import ToolSpec, parse_calls


def stop_reason(stats: GenerationStats, called: bool = False) -> str:
    """`max_tokens` when the limit (or the context) ended the reply, `stop_sequence`
    when one of the request's stop strings did, `tool_use` when it made calls,
    `end_turn` at end-of-sequence."""
    if stats.finish_reason == "length":
        return "max_tokens"
    if stats.stop_sequence is not None:
        return "stop_sequence"
    return "tool_use" if called else "end_turn"


def tool_use_id() -> str:
    return f"toolu_{uuid.uuid4().hex[:24]}"


def usage(stats: GenerationStats) -> dict[str, int]:
    return {"input_tokens": stats.prompt_tokens, "output_tokens": stats.generation_tokens}


@dataclass
class MessageHeader:
    """What the body and every event of one response share."""

    model: str
    id: str = field(default_factory=lambda: f"msg_{uuid.uuid4().hex[:24]}")

    def message(self, content: list[dict[str, Any]], **rest: Any) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "content": content,
            "model": self.model,
            **rest,
        }


def message(head: MessageHeader, result: Completion, tools: Sequence[ToolSpec] = ()) -> dict[str, Any]:
    """The whole (non-streaming) response: a text block, or (with `tools`) the reply's
    tool_use blocks when it made calls."""
    text, calls = parse_calls(result.text, tools) if tools else (result.text, [])
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text or not calls else []
    for c in calls:
        block = {"type": "tool_use", "id": tool_use_id(), "name": c.name, "input": c.parsed_arguments()}
        content.append(block)
    return head.message(
        content,
        stop_reason=stop_reason(result.stats, bool(calls)),
        stop_sequence=result.stats.stop_sequence,
        usage=usage(result.stats),
        timings=timings([result.stats]),
    )


# ---- stream events, in the order they are sent ----------------------------------


def message_start(head: MessageHeader, input_tokens: int) -> dict[str, Any]:
    body = head.message(
        [], stop_reason=None, stop_sequence=None, usage={"input_tokens": input_tokens, "output_tokens": 0}
    )
    return {"type": "message_start", "message": body}


def content_block_start(index: int, tool: str | None = None) -> dict[str, Any]:
    """A text block, or a tool_use block calling `tool` (its input then streams)."""
    block = (
        {"type": "tool_use", "id": tool_use_id(), "name": tool, "input": {}}
        if tool
        else {"type": "text", "text": ""}
    )
    return {"type": "content_block_start", "index": index, "content_block": block}


def input_json_delta(index: int, partial: str) -> dict[str, Any]:
    delta = {"type": "input_json_delta", "partial_json": partial}
    return {"type": "content_block_delta", "index": index, "delta": delta}


def ping() -> dict[str, Any]:
    return {"type": "ping"}


def text_delta(index: int, text: str) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}}


def content_block_stop(index: int) -> dict[str, Any]:
    return {"type": "content_block_stop", "index": index}


def message_delta(stats: GenerationStats, called: bool = False) -> dict[str, Any]:
    """Why the reply ended, the final (cumulative) usage, and the timings extension."""
    return {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason(stats, called), "stop_sequence": stats.stop_sequence},
        "usage": usage(stats),
        "timings": timings([stats]),
    }


def message_stop() -> dict[str, Any]:
    return {"type": "message_stop"}
