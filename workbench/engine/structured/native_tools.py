"""Tool calls in a template's own format (Hermes/Qwen `<tool_call>`, Mistral `[TOOL_CALLS]`, ...),
split from the text and parsed with mlx-lm's parser of that dialect; CallSplitter's interface."""

from __future__ import annotations

import importlib
import json
from collections.abc import Sequence
from typing import Any

from workbench.engine.structured.tools import ToolCall, ToolSpec


def _dialect(name: str) -> Any:
    return importlib.import_module(f"mlx_lm.tool_parsers.{name}")


class NativeCallSplitter:
    """`feed(text)` returns events as CallSplitter's: ("text", s), and for each call block once
    it closes, ("call", index, name) then ("args", index, arguments JSON). Text that may begin
    the start marker is held back. A dialect whose calls run to the end of the reply (no end
    marker) is parsed at `finish`."""

    def __init__(self, dialect: str, tools: Sequence[ToolSpec]) -> None:
        module = _dialect(dialect)
        self.start, self.end, self.parser = (
            module.tool_call_start,
            module.tool_call_end,
            module.parse_tool_call,
        )
        self.tools = [t.as_template_tool() for t in tools]
        self.buffer, self.in_call, self.index = "", False, -1

    def feed(self, text: str) -> list[tuple[Any, ...]]:
        self.buffer += text
        events: list[tuple[Any, ...]] = []
        while True:
            if not self.in_call:
                at = self.buffer.find(self.start)
                if at < 0:
                    keep = _partial(self.buffer, self.start)
                    cut = len(self.buffer) - keep
                    if cut:
                        events.append(("text", self.buffer[:cut]))
                    self.buffer = self.buffer[cut:]
                    return events
                if at:
                    events.append(("text", self.buffer[:at]))
                self.buffer, self.in_call = self.buffer[at + len(self.start) :], True
            if not self.end:
                return events  # the call runs to the end of the reply
            at = self.buffer.find(self.end)
            if at < 0:
                return events
            events.extend(self._calls(self.buffer[:at]))
            self.buffer, self.in_call = self.buffer[at + len(self.end) :].lstrip("\n"), False

    def finish(self, complete: bool = True) -> list[tuple[Any, ...]]:
        """The end of the reply: a call without an end marker (Mistral's) is parsed; an
        unclosed one (cut by max_tokens) is given back as text."""
        rest, self.buffer = self.buffer, ""
        if not self.in_call:
            return [("text", rest)] if rest else []
        if not self.end:
            return self._calls(rest)
        return [("text", self.start + rest)]

    def _calls(self, body: str) -> list[tuple[Any, ...]]:
        try:
            parsed = self.parser(body, self.tools)
        except (ValueError, json.JSONDecodeError):
            return [("text", f"{self.start}{body}{self.end}")]  # not a call after all
        events: list[tuple[Any, ...]] = []
        for call in parsed if isinstance(parsed, list) else [parsed]:
            self.index += 1
            arguments = call.get("arguments", {})
            text = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
            events += [("call", self.index, call["name"]), ("args", self.index, text)]
        return events


def _partial(text: str, marker: str) -> int:
    for n in range(min(len(text), len(marker) - 1), 0, -1):
        if marker.startswith(text[-n:]):
            return n
    return 0


def parse_native_calls(text: str, dialect: str, tools: Sequence[ToolSpec]) -> tuple[str, list[ToolCall]]:
    """(text, calls) of a finished reply in `dialect`."""
    splitter = NativeCallSplitter(dialect, tools)
    events = splitter.feed(text) + splitter.finish()
    parts = [e[1] for e in events if e[0] == "text"]
    names = {e[1]: e[2] for e in events if e[0] == "call"}
    args = {e[1]: e[2] for e in events if e[0] == "args"}
    return "".join(parts), [ToolCall(names[i], args[i]) for i in sorted(names)]
