"""Responses API requests (input as text or items, instructions, tools, text.format, reasoning),
checked with explicit bounds, and their conversion into one engine GenerationRequest and the
conversation it continues. Knows no HTTP, no engine thread, no reply shape."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import ConfigDict, Field

from api.errors import ApiError
from api.wire import (
    SPECULATIVE_HELP,
    KVCacheFields,
    SpeculativeField,
    WireModel,
    check_tool_choice,
    no_effect,
    reasoning_plan,
    sampling_params,
    speculation,
    tool_use,
    unsupported,
)
from workbench.engine import Constraint, GenerationRequest, Message
from workbench.engine.structured.tools import ToolSpec, call_text
from workbench.engine.types import MAX_SEED

MAX_ITEMS = 4096  # input items per request
# Include values a client may ask for that change nothing here (no encrypted reasoning, no
# logprobs on this route, no server-side tools).
HARMLESS_INCLUDES = (
    "reasoning.encrypted_content",
    "message.output_text.logprobs",
    "message.input_image.image_url",
)


class Part(WireModel):
    """A content part of a message item: input_text, output_text (assistant history) or text."""

    type: str
    text: str | None = None


class InputItem(WireModel):
    """One item of `input`: a message (role + content), a function_call the model made, a
    function_call_output (the tool's result), or a reasoning item replayed from a reply."""

    type: str | None = None  # "message" when only role and content are given
    role: Literal["user", "system", "developer", "assistant"] | None = None
    content: str | list[Part] | None = None
    id: str | None = None
    status: str | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    input: str | None = None  # a custom tool call's
    output: str | list[Part] | None = None

    def kind(self) -> str:
        return self.type or ("message" if self.role is not None else "?")


# Tools the server itself would run (OpenAI's hosted tools): a local model cannot, so they are
# not offered to it. Codex and the Agents SDK send some with every request; refusing them
# would refuse every request. Forcing one (tool_choice) is a 400.
HOSTED_TOOLS = (
    "web_search",
    "web_search_preview",
    "tool_search",
    "file_search",
    "image_generation",
    "code_interpreter",
    "computer",
    "computer_use_preview",
    "mcp",
    "local_shell",
    "shell",
    "apply_patch",
)
# A custom (freeform) tool is offered as a function taking its text as one string.
CUSTOM_INPUT = {"type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"]}


class FunctionTool(WireModel):
    """A function tool, a `namespace` of them (offered flat), a `custom` freeform tool, or a
    hosted one (not offered)."""

    type: str
    name: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str | None = Field(None, max_length=8192)
    parameters: dict[str, Any] | None = None
    strict: bool | None = None  # accepted: arguments always follow the schema, objects closed
    tools: list[FunctionTool] | None = Field(None, max_length=128)  # a namespace's
    format: dict[str, Any] | None = None  # a custom tool's grammar: shown to the model, not enforced

    def offered(self, where: str) -> list[tuple[ToolSpec, str | None, bool]]:
        """(spec, its namespace, whether custom) of each function this tool offers the model."""
        if self.type in HOSTED_TOOLS:
            return []
        if self.type == "namespace":
            inner = [t for i, tool in enumerate(self.tools or ()) for t in tool.offered(f"{where}.tools.{i}")]
            return [(spec, self.name, custom) for spec, _, custom in inner]
        if self.type not in ("function", "custom") or not self.name:
            what = f"tool type {self.type!r}: function, custom, namespace or hosted tools only"
            raise unsupported(where, what)
        if self.type == "custom":
            grammar = (self.format or {}).get("definition")
            note = (
                f" Its input follows this {self.format.get('syntax')} grammar: {grammar}" if grammar else ""
            )
            return [(ToolSpec(self.name, (self.description or "") + note, CUSTOM_INPUT), None, True)]
        return [
            (ToolSpec(self.name, self.description or "", self.parameters or {"type": "object"}), None, False)
        ]


class NamedFunction(WireModel):
    type: Literal["function"]
    name: str


class TextFormat(WireModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    type: Literal["text", "json_object", "json_schema"] = "text"
    name: str | None = Field(None, max_length=64)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class TextConfig(WireModel):
    format: TextFormat | None = None
    verbosity: str | None = None  # accepted without effect


class ReasoningConfig(WireModel):
    effort: str | None = None
    summary: str | None = None  # accepted: the reasoning item carries the whole text, no summary
    generate_summary: str | None = None


class ResponsesRequest(KVCacheFields):
    model: str = Field(min_length=1, max_length=1024)
    input: str | list[InputItem] = Field(min_length=1, max_length=MAX_ITEMS)
    instructions: str | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=0, le=100_000, description="extension (llama.cpp, mlx-lm)")
    seed: int | None = Field(None, ge=-(2**63), le=MAX_SEED, description="extension: -1 = random")
    stream: bool = False
    store: bool = True
    previous_response_id: str | None = Field(None, max_length=128)
    tools: list[FunctionTool] | None = Field(None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedFunction | None = None
    parallel_tool_calls: bool | None = None
    max_tool_calls: int | None = Field(None, ge=1)
    text: TextConfig | None = None
    reasoning: ReasoningConfig | None = None
    reasoning_budget: int | None = Field(None, ge=0, description="extension: most reasoning tokens")
    ignore_eos: bool = Field(False, description="extension: generate past end-of-sequence (benchmarks)")
    speculative: SpeculativeField = Field(None, description=SPECULATIVE_HELP)
    metadata: dict[str, str] | None = Field(None, max_length=16)
    truncation: Literal["auto", "disabled"] | None = None
    include: list[str] | None = None
    background: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    conversation: Any = None
    prompt: Any = None
    # Describe the caller or the account: accepted, no effect on generation.
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    service_tier: str | None = None
    stream_options: dict[str, Any] | None = None

    def check(self) -> None:
        if self.background:
            raise unsupported("background", "background responses are not supported; drop it or stream")
        for name in ("conversation", "prompt"):
            if getattr(self, name) is not None:
                raise unsupported(name, "not supported by this server; send the input itself")
        if self.top_logprobs:
            raise unsupported("top_logprobs", "logprobs are served by /v1/chat/completions, not here")
        hosted = sorted({t.type for t in self.tools or () if t.type in HOSTED_TOOLS})
        if hosted:
            no_effect("responses", f"hosted tools {hosted} (not offered to the model)")
        mode, _ = self.tool_mode()
        check_tool_choice(self.tool_specs(), mode)
        for value in self.include or ():
            if value not in HARMLESS_INCLUDES:
                raise unsupported("include", f"{value!r} is not available here")
        if self.truncation == "auto":
            no_effect("responses", "truncation 'auto' (a conversation past the context is a 400)")
        if self.text is not None and self.text.verbosity is not None:
            no_effect("responses", "text.verbosity")

    def tool_mode(self) -> tuple[Any, str | None]:
        c = self.tool_choice
        return ("named", c.name) if isinstance(c, NamedFunction) else (c or "auto", None)

    def offered(self) -> list[tuple[ToolSpec, str | None, bool]]:
        return [o for i, tool in enumerate(self.tools or ()) for o in tool.offered(f"tools.{i}")]

    def tool_specs(self) -> tuple[ToolSpec, ...]:
        return tuple(spec for spec, _, _ in self.offered())

    def tool_kinds(self) -> dict[str, tuple[str | None, bool]]:
        """Offered tool name -> (its namespace, whether it is a custom tool): how calls come back."""
        return {spec.name: (namespace, custom) for spec, namespace, custom in self.offered()}

    def format_constraint(self) -> Constraint | None:
        fmt = self.text.format if self.text is not None else None
        if fmt is None or fmt.type == "text":
            return None
        if fmt.type == "json_object":
            return Constraint.json_schema({"type": "object"}, "text.format")
        if fmt.schema_ is None:
            raise ApiError(
                400, "text.format.schema: required when type is 'json_schema'", param="text.format"
            )
        return Constraint.json_schema(fmt.schema_, "text.format.schema", strict=bool(fmt.strict))

    def turns(self) -> list[Message]:
        """The input as chat turns (instructions are not among them: see to_engine_request)."""
        if isinstance(self.input, str):
            return [Message("user", self.input)]
        turns: list[Message] = []
        for i, item in enumerate(self.input):
            turn = _turn(item, f"input.{i}")
            if turn is None:
                continue
            if turns and turn.role == "assistant" == turns[-1].role:  # text, then its calls: one turn
                turn = Message("assistant", f"{turns.pop().content}\n{turn.content}")
            turns.append(turn)
        return turns

    def to_engine_request(self, model_id: str, history: tuple[Message, ...] = ()) -> GenerationRequest:
        """The generation: `history` (a previous response's conversation), then this input, with
        `instructions` as the leading system turn (instructions are not carried over)."""
        self.check()
        turns = [*history, *self.turns()]
        if self.instructions:
            turns = [Message("system", self.instructions), *turns]
        if not turns:
            raise ApiError(400, "input: no message to answer", param="input")
        parallel = self.parallel_tool_calls is not False and self.max_tool_calls != 1
        tools = tool_use(self.tool_specs(), *self.tool_mode(), parallel=parallel)
        effort = self.reasoning.effort if self.reasoning is not None else None
        think, budget = reasoning_plan(effort, self.reasoning_budget, "reasoning.effort")
        seed = None if self.seed in (None, -1) else self.seed % (MAX_SEED + 1)
        return GenerationRequest(
            messages=tuple(turns),
            model=model_id,
            sampling=sampling_params(self.temperature, self.top_p, top_k=self.top_k, seed=seed),
            max_tokens=self.max_output_tokens,
            ignore_eos=self.ignore_eos,
            constraint=tools.constraint(self.format_constraint()),
            tools=tools.tools,
            tool_choice=tools.choice,
            think=think,
            reasoning_budget=budget,
            speculative=speculation(self.speculative),
            kv=self.kv(),
        )


def _text(parts: str | list[Part] | None, where: str) -> str:
    if parts is None:
        return ""
    if isinstance(parts, str):
        return parts
    out = []
    for j, part in enumerate(parts):
        if part.type not in ("input_text", "output_text", "text") or part.text is None:
            raise unsupported(
                f"{where}.{j}", f"content type {part.type!r}: only text runs here (text-only models)"
            )
        out.append(part.text)
    return "".join(out)


def _turn(item: InputItem, where: str) -> Message | None:
    """One input item as a chat turn (a replayed reasoning item is not shown again: None)."""
    kind = item.kind()
    if kind == "message":
        role = "system" if item.role == "developer" else item.role
        if role is None:
            raise ApiError(400, f"{where}.role: required for a message", param=f"{where}.role")
        return Message(role, _text(item.content, f"{where}.content"))
    if kind == "function_call":
        if not item.name or item.arguments is None:
            raise ApiError(400, f"{where}: a function_call needs name and arguments", param=where)
        return Message("assistant", call_text(item.name, item.arguments))
    if kind == "custom_tool_call":
        if not item.name or item.input is None:
            raise ApiError(400, f"{where}: a custom_tool_call needs name and input", param=where)
        return Message("assistant", call_text(item.name, json.dumps({"input": item.input})))
    if kind in ("function_call_output", "custom_tool_call_output"):
        if item.call_id is None or item.output is None:
            raise ApiError(400, f"{where}: a {kind} needs call_id and output", param=where)
        return Message("tool", _text(item.output, f"{where}.output"))
    if kind == "reasoning":
        return None
    raise unsupported(f"{where}.type", f"item type {kind!r}: messages, function calls and their outputs only")
