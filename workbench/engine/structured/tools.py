"""Tool calls as the model writes them, one format for every API: a JSON line per call, the grammar
that constrains it, the system note, and parsers for finished and streamed replies. Pure Python."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from workbench.engine.errors import InvalidRequestError
from workbench.engine.structured.constraint import Constraint
from workbench.engine.structured.json_schema import closed_schema

TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Compact, readable JSON inside calls (no free whitespace for a model to pad with). Lenient:
# a keyword llguidance cannot enforce (propertyNames, in Claude Code's tool schemas) is left
# out of the grammar instead of failing the request; everything else still binds.
_JSON_STYLE = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": ", "lenient": True}


@dataclass(frozen=True)
class ToolSpec:
    """A function the model may call: its name, what it does, its parameters schema."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not TOOL_NAME.match(self.name):
            raise InvalidRequestError(
                f"tools: a tool name must be 1-64 letters, digits, '_' or '-', got {self.name!r}",
                param="tools",
            )
        if not isinstance(self.parameters, Mapping):
            raise InvalidRequestError(
                f"tools: {self.name}: parameters must be a JSON schema object", param="tools"
            )

    def as_template_tool(self) -> dict[str, Any]:
        """The OpenAI-style description chat templates expect."""
        function = {"name": self.name, "description": self.description, "parameters": dict(self.parameters)}
        return {"type": "function", "function": function}


ToolChoice = Literal["auto", "required"] | str  # or the name of the one tool to call
MODES = ("auto", "required")


def forced(name: str) -> ToolChoice:
    """The ToolChoice forcing the tool `name`; a tool named like a mode cannot be forced
    by name (the engine would read the mode)."""
    if name in MODES:
        raise InvalidRequestError(
            f"tool_choice: a tool named {name!r} cannot be forced by name here; rename the tool",
            param="tool_choice",
        )
    return name


_HEAD = '{"name": "'  # how every call line begins


def call_prefix(name: str) -> str:
    return f'{{"name": "{name}", "arguments": '


def call_text(name: str, arguments: str) -> str:
    """A call as the model writes it (for assistant turns sent back in the history)."""
    return f"{call_prefix(name)}{arguments}}}"


def tool_constraint(
    tools: Sequence[ToolSpec], choice: ToolChoice, *, parallel: bool, answer: Mapping[str, Any] | None = None
) -> Constraint:
    """The grammar a reply must follow for `choice` ('auto', 'required' or a tool name). Under
    'auto' a reply that calls no tool is free text, or with `answer` (a JSON schema: the
    request's reply format) a JSON value that follows it."""
    offered = {t.name: t for t in tools}
    if choice not in MODES and choice not in offered:
        listed = ", ".join(offered) or "none"
        raise InvalidRequestError(
            f"tool_choice: {choice!r} is not one of the tools ({listed})", param="tool_choice"
        )
    callable_ = list(tools) if choice in MODES else [offered[choice]]
    rules = []
    for i, tool in enumerate(callable_):
        schema = {**closed_schema(dict(tool.parameters)), "x-guidance": _JSON_STYLE}
        prefix = json.dumps(call_prefix(tool.name))
        rules.append(f'call_{i}: {prefix} args_{i} "}}"\nargs_{i}: %json {json.dumps(schema)}')
    one = " | ".join(f"call_{i}" for i in range(len(callable_)))
    calls = 'call ("\\n" call)*' if parallel else "call"
    start = f"TEXT | {calls}" if choice == "auto" else calls
    text = "TEXT: /[^{\\s][\\s\\S]*/\n" if choice == "auto" else ""
    if choice == "auto" and answer is not None:
        start = f"answer | {calls}"
        text = f"answer: %json {json.dumps({**dict(answer), 'x-guidance': _JSON_STYLE})}\n"
    grammar = f"start: {start}\ncall: {one}\n" + "\n".join(rules) + "\n" + text
    return Constraint("lark", grammar, "tools")


def tool_note(tools: Sequence[ToolSpec], choice: ToolChoice) -> str:
    """The system note for templates that ignore `tools`."""
    listed = json.dumps([t.as_template_tool()["function"] for t in tools], ensure_ascii=False)
    how = (
        "To call a tool, reply with only a JSON object on one line: "
        '{"name": <tool name>, "arguments": <arguments object>} (one line per call).'
    )
    if choice == "auto":
        how += " Otherwise reply in plain text."
    return f"You can call these tools (JSON schemas of their arguments): {listed}\n{how}"


@dataclass(frozen=True)
class ToolCall:
    """One parsed call: the tool, and its arguments as JSON text (as generated)."""

    name: str
    arguments: str

    def parsed_arguments(self) -> Any:
        return json.loads(self.arguments)


def parse_calls(text: str, tools: Sequence[ToolSpec]) -> tuple[str, list[ToolCall]]:
    """(text, calls) of a finished reply; a reply that is not a complete set of calls
    (plain text, or cut short by max_tokens) is all text."""
    if not text.startswith("{"):
        return text, []
    names = {t.name for t in tools}
    calls = []
    for line in text.split("\n"):
        call = _parse_line(line, names)
        if call is None:
            return text, []
        calls.append(call)
    return "", calls


def _parse_line(line: str, names: set[str]) -> ToolCall | None:
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("name") not in names or set(data) != {"name", "arguments"}:
        return None
    prefix = call_prefix(data["name"])
    arguments = line[len(prefix) : -1] if line.startswith(prefix) else json.dumps(data["arguments"])
    return ToolCall(data["name"], arguments)


@dataclass
class CallSplitter:
    """Incremental parse_calls for streams. `feed(text)` returns events: ("text", s),
    ("call", index, name) when a call's name is known, ("args", index, s) for its
    arguments as generated. The grammar guarantees the shape, so no look-back is
    needed beyond the one character that may close the call."""

    mode: Literal["?", "text", "calls"] = "?"
    buffer: str = ""
    index: int = -1
    in_args: bool = False
    held: str = ""
    events: list[tuple[Any, ...]] = field(default_factory=list)

    def feed(self, text: str) -> list[tuple[Any, ...]]:
        self.events = []
        if self.mode == "?" and text:
            self.mode = "calls" if text.startswith("{") else "text"
        if self.mode == "text":
            if text:
                self.events.append(("text", text))
            return self.events
        for i, ch in enumerate(text):
            self._char(ch)
            if self.mode == "text":  # it turned out to be an answer: the rest is text too
                if text[i + 1 :]:
                    self.events.append(("text", text[i + 1 :]))
                return self.events
        self._flush_args()
        return self.events

    def finish(self, complete: bool = True) -> list[tuple[Any, ...]]:
        """Events at the end of the stream (an unfinished call's prefix is text).
        `complete`: the grammar ended it (end-of-sequence), so the character held back
        closes the last call; otherwise (max_tokens, a stop string) it is arguments."""
        self.events = []
        if self.mode == "calls" and not self.in_args and self.buffer:
            self.events.append(("text", self.buffer))
        if self.in_args and self.held and not complete:
            self.events.append(("args", self.index, self.held))
        self.buffer, self.held = "", ""
        return self.events

    def _char(self, ch: str) -> None:
        if self.in_args:
            if ch == "\n" and self.held == "}":  # the call is complete; the next one starts
                self._flush_args()
                self.held, self.in_args = "", False
                return
            self.buffer += self.held
            self.held = ch
            return
        self.buffer += ch
        n = min(len(self.buffer), len(_HEAD))
        if self.index < 0 and self.buffer[:n] != _HEAD[:n]:
            # Not a call at all: a JSON answer (the reply format under 'auto') is text.
            self.mode, text, self.buffer = "text", self.buffer, ""
            self.events.append(("text", text))
            return
        match = re.match(r'\{"name": "([A-Za-z0-9_-]{1,64})", "arguments": ', self.buffer)
        if match and self.buffer == match.group(0):
            self.index += 1
            self.events.append(("call", self.index, match.group(1)))
            self.buffer, self.in_args = "", True

    def _flush_args(self) -> None:
        if self.in_args and self.buffer:
            self.events.append(("args", self.index, self.buffer))
            self.buffer = ""


def with_tools(
    tokenizer: Any,
    messages: list[dict[str, Any]],
    tools: Sequence[ToolSpec],
    choice: ToolChoice,
    **options: Any,
) -> list[int]:
    """Prompt ids with the tools in the template; a template that renders the same with
    and without them gets them as a system note (merged into a leading system turn).
    `options` go to the template (enable_thinking)."""
    described = [t.as_template_tool() for t in tools]
    ids = tokenizer.apply_chat_template(messages, tools=described, add_generation_prompt=True, **options)
    if ids != tokenizer.apply_chat_template(messages, add_generation_prompt=True, **options):
        return list(ids)
    note = tool_note(tools, choice)
    if messages and messages[0]["role"] == "system":
        messages = [{"role": "system", "content": f"{messages[0]['content']}\n\n{note}"}, *messages[1:]]
    else:
        messages = [{"role": "system", "content": note}, *messages]
    return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True, **options))


def renders_tools(tokenizer: Any) -> bool:
    """Whether the chat template shows the `tools` it is given (else they go in a note)."""
    probe = [{"role": "user", "content": "Hi"}]
    tool = ToolSpec("probe_tool", "a probe", {"type": "object", "properties": {}}).as_template_tool()
    try:
        with_them = tokenizer.apply_chat_template(probe, tools=[tool], add_generation_prompt=True)
    except Exception:  # a template that fails on tools does not show them
        return False
    return with_them != tokenizer.apply_chat_template(probe, add_generation_prompt=True)
