"""OpenAI response bodies and stream chunks built from engine results: choices,
usage, logprobs, and the `timings` extension field. Pure functions over engine
types; knows no HTTP or engine thread."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from workbench import __version__
from workbench.engine import Completion, GenerationStats, TokenLogprob
from workbench.engine.structured.tools import ToolSpec, parse_calls

# The engine's "cancelled" only reaches a formatter when the engine stopped under a
# live client (a client that left gets nothing); it is reported as an error instead.
_FINISH = {"stop": "stop", "length": "length"}


def finish_reason(stats: GenerationStats) -> str:
    return _FINISH.get(stats.finish_reason, "stop")


def timings(stats: list[GenerationStats]) -> dict[str, Any]:
    """The `timings` extension: what the engine measured, in explicit units.

    For several choices it aggregates: generation tokens summed, tok/s over the summed
    time, TTFT of the first choice, the highest peak memory.
    """
    first = stats[0]
    if len(stats) == 1:
        out = first.as_dict()
    else:
        decode_s = sum((s.generation_tokens - 1) / s.generation_tps for s in stats if s.generation_tps > 0)
        decoded = sum(s.generation_tokens - 1 for s in stats if s.generation_tps > 0)
        ttft_s = sum(s.ttft_s for s in stats)
        out = {
            **first.as_dict(),
            "prompt_tokens": sum(s.prompt_tokens for s in stats),
            "generation_tokens": sum(s.generation_tokens for s in stats),
            "prompt_tps": sum(s.prompt_tokens for s in stats) / ttft_s if ttft_s > 0 else 0.0,
            "generation_tps": decoded / decode_s if decode_s > 0 else 0.0,
            "peak_memory_gb": max(s.peak_memory_gb for s in stats),
            "total_s": sum(s.total_s for s in stats),
            "concurrent_streams": max(s.concurrent_streams for s in stats),
            "choices": len(stats),
        }
    # Each API reports why the reply ended in its own fields, not in timings.
    out.pop("finish_reason", None)
    out.pop("stop_sequence", None)
    return out


def usage(stats: list[GenerationStats], per_prompt: int) -> dict[str, Any]:
    """OpenAI usage: each distinct prompt counted once, every choice's tokens counted;
    `prompt_tokens_details.cached_tokens`: prompt tokens the prompt cache supplied."""
    prompt = sum(s.prompt_tokens for s in stats[::per_prompt])
    cached = sum(s.cached_tokens for s in stats[::per_prompt])
    completion = sum(s.generation_tokens for s in stats)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def chat_logprobs(items: list[TokenLogprob]) -> dict[str, Any]:
    def entry(text: str, logprob: float) -> dict[str, Any]:
        return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}

    content = [
        {**entry(t.text, t.logprob), "top_logprobs": [entry(text, lp) for _, text, lp in t.top]}
        for t in items
    ]
    return {"content": content, "refusal": None}


def completion_logprobs(items: list[TokenLogprob], offset: int) -> dict[str, Any]:
    offsets = []
    for t in items:
        offsets.append(offset)
        offset += len(t.text)
    return {
        "tokens": [t.text for t in items],
        "token_logprobs": [t.logprob for t in items],
        "top_logprobs": [{text: lp for _, text, lp in t.top} for t in items],
        "text_offset": offsets,
    }


@dataclass
class ResponseHeader:
    """What every body and chunk of one response shares."""

    kind: str  # "chat" or "text"
    model: str
    device: str
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))

    def __post_init__(self) -> None:
        prefix = "chatcmpl" if self.kind == "chat" else "cmpl"
        self.id = self.id or f"{prefix}-{uuid.uuid4().hex[:24]}"

    def base(self, chunk: bool) -> dict[str, Any]:
        obj = "chat.completion" if self.kind == "chat" else "text_completion"
        return {
            "id": self.id,
            "object": obj + ".chunk" if chunk and self.kind == "chat" else obj,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": f"workbench-{__version__}-{self.device}",
        }


def _body(
    head: ResponseHeader, results: list[Completion], parts: list[dict[str, Any]], per_prompt: int
) -> dict[str, Any]:
    """A whole response from each choice's own fields: index, finish_reason (and its
    timings when there are several) added, then usage and the aggregate timings."""
    stats = [r.stats for r in results]
    choices = []
    for i, (part, r) in enumerate(zip(parts, results, strict=True)):
        choice = {"index": i, "finish_reason": finish_reason(r.stats), **part}
        if len(results) > 1:
            choice["timings"] = timings([r.stats])
        choices.append(choice)
    return {
        **head.base(False),
        "choices": choices,
        "usage": usage(stats, per_prompt),
        "timings": timings(stats),
    }


def chat_completion(
    head: ResponseHeader, results: list[Completion], tools: Sequence[ToolSpec] = ()
) -> dict[str, Any]:
    """With `tools`, a reply made of calls becomes `tool_calls` (finish_reason
    'tool_calls') and its content null."""
    parts = []
    for r in results:
        text, calls = parse_calls(r.text, tools) if tools else (r.text, [])
        message: dict[str, Any] = {"role": "assistant", "content": None if calls else text, "refusal": None}
        part: dict[str, Any] = {"message": message}
        if calls:
            message["tool_calls"] = [tool_call(c.name, c.arguments) for c in calls]
            part["finish_reason"] = "tool_calls"
        part["logprobs"] = chat_logprobs(list(r.logprobs)) if r.logprobs else None
        parts.append(part)
    return _body(head, results, parts, len(results))


def tool_call(name: str, arguments: str, *, index: int | None = None) -> dict[str, Any]:
    """One entry of `tool_calls` (with `index` in stream deltas), with a fresh id."""
    function = {"name": name, "arguments": arguments}
    call = {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function", "function": function}
    return call if index is None else {"index": index, **call}


def text_completion(
    head: ResponseHeader, results: list[Completion], per_prompt: int, echoes: list[str]
) -> dict[str, Any]:
    parts = []
    for i, r in enumerate(results):
        echo = echoes[i // per_prompt] if echoes else ""
        logprobs = completion_logprobs(list(r.logprobs), len(echo)) if r.logprobs else None
        parts.append({"text": echo + r.text, "logprobs": logprobs})
    return _body(head, results, parts, per_prompt)


def chat_chunk(
    head: ResponseHeader,
    index: int,
    delta: dict[str, Any],
    *,
    logprobs: list[TokenLogprob] | None = None,
    stats: GenerationStats | None = None,
    called: bool = False,
) -> dict[str, Any]:
    """One chunk; `called`: the choice made tool calls (its finish_reason says so when
    the model ended the reply; a call cut by max_tokens or a stop string keeps 'length'
    / 'stop', as the non-stream reply does)."""
    finish = finish_reason(stats) if stats else None
    choice = {
        "index": index,
        "delta": delta,
        "logprobs": chat_logprobs(logprobs) if logprobs else None,
        "finish_reason": "tool_calls" if called and stats and stats.at_eos else finish,
    }
    out = {**head.base(True), "choices": [choice]}
    if stats is not None:
        out["timings"] = timings([stats])
    return out


def text_chunk(
    head: ResponseHeader,
    index: int,
    text: str,
    *,
    logprobs: list[TokenLogprob] | None = None,
    offset: int = 0,
    stats: GenerationStats | None = None,
) -> dict[str, Any]:
    choice = {
        "index": index,
        "text": text,
        "logprobs": completion_logprobs(logprobs, offset) if logprobs else None,
        "finish_reason": finish_reason(stats) if stats else None,
    }
    out = {**head.base(True), "choices": [choice]}
    if stats is not None:
        out["timings"] = timings([stats])
    return out


def usage_chunk(head: ResponseHeader, stats: list[GenerationStats], per_prompt: int) -> dict[str, Any]:
    """The extra last chunk stream_options.include_usage asks for: no choices, usage set."""
    return {**head.base(True), "choices": [], "usage": usage(stats, per_prompt), "timings": timings(stats)}
