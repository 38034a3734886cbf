"""Anthropic request models for /v1/messages and /v1/messages/count_tokens (text, tool_use /
tool_result blocks, a JSON-schema output_config.format; what we cannot honour is a 400 that
names it), and their one conversion into a GenerationRequest. Knows no HTTP or reply shape."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field

from api.errors import ApiError
from api.wire import (
    EFFORT_BUDGETS,
    SPECULATIVE_HELP,
    ChoiceMode,
    KVCacheFields,
    SpeculativeField,
    WireModel,
    check_stops,
    check_tool_choice,
    sampling_params,
    speculation,
    tool_use,
    unsupported,
)
from workbench.engine import Constraint, GenerationRequest, Message, SamplingParams
from workbench.engine.structured.tools import ToolSpec, call_text
from workbench.engine.types import MAX_STOP_STRINGS

# Assistant blocks a client replays from earlier replies that the next prompt leaves out.
HISTORY_ONLY = ("thinking", "redacted_thinking")


class ContentBlock(WireModel):
    """One block of `content` or `system`: text; in the history also `tool_use` (an
    assistant's call) and `tool_result` (its answer, in a user turn)."""

    type: str
    text: str | None = None
    cache_control: dict[str, Any] | None = None  # a prompt-caching hint: accepted, no effect
    citations: list[Any] | None = None  # only meaningful on replies; accepted when null or empty
    id: str | None = None  # tool_use
    name: str | None = None  # tool_use
    input: dict[str, Any] | None = None  # tool_use
    tool_use_id: str | None = None  # tool_result
    content: str | list[ContentBlock] | None = None  # tool_result
    is_error: bool | None = None  # tool_result

    def to_text(self, where: str) -> str:
        if self.type == "image":
            raise unsupported(
                where,
                "image content blocks are not supported: this server runs text-only models; "
                "send text blocks (or a string) instead",
            )
        if self.type != "text":
            raise unsupported(where, f"content block type {self.type!r} is not supported (only 'text')")
        if self.text is None:
            raise ApiError(400, f"{where}.text: required for a text block", param=f"{where}.text")
        if self.citations:
            raise unsupported(f"{where}.citations", "citations are not supported")
        return self.text


def _text_of(content: str | list[ContentBlock], where: str) -> str:
    if isinstance(content, str):
        return content
    return "".join(block.to_text(f"{where}.{j}") for j, block in enumerate(content))


def _turns(m: AnthropicMessage, where: str) -> list[Message]:
    """Engine turns of one message: text, calls as the model writes them (engine/tools.py),
    and each tool_result as a `tool` turn (before the user's own text)."""
    if isinstance(m.content, str):
        return [Message(m.role, m.content)]
    texts: list[str] = []
    results: list[Message] = []
    for j, block in enumerate(m.content):
        at = f"{where}.{j}"
        if block.type in HISTORY_ONLY and m.role == "assistant":
            continue  # earlier reasoning: not shown to the model again (templates drop it too)
        if block.type == "tool_use" and m.role == "assistant":
            if not block.name or block.input is None:
                raise ApiError(400, f"{at}: a tool_use block needs name and input", param=at)
            texts.append(call_text(block.name, json.dumps(block.input, ensure_ascii=False)))
        elif block.type == "tool_result" and m.role == "user":
            body = block.content if block.content is not None else ""
            text = _text_of(body, f"{at}.content")
            results.append(Message("tool", f"error: {text}" if block.is_error else text))
        else:
            texts.append(block.to_text(at))
    joined = "\n".join(t for t in texts if t) if m.role == "assistant" else "".join(texts)
    return results + ([Message(m.role, joined)] if joined or not results else [])


class AnthropicTool(WireModel):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str | None = Field(None, max_length=8192)
    input_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})
    type: str | None = None  # "custom" or absent; server tools (web search...) are refused


# Anthropic's tool_choice types in the words both APIs share.
_MODES: dict[str, ChoiceMode] = {"auto": "auto", "any": "required", "tool": "named", "none": "none"}


class AnthropicToolChoice(WireModel):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class AnthropicMessage(WireModel):
    role: Literal["user", "assistant"]
    content: str | list[ContentBlock]


class Metadata(WireModel):
    user_id: str | None = Field(None, max_length=4096)  # Claude Code sends a JSON object as text


class Thinking(WireModel):
    type: str
    budget_tokens: int | None = Field(None, ge=0, le=1_000_000)  # Anthropic asks >= 1024; any bound here


class OutputConfig(WireModel):
    effort: str | None = None  # how hard a reasoning model thinks (api/wire.py EFFORT_BUDGETS)
    format: dict[str, Any] | None = None


class MessagesBase(WireModel):
    """Fields that define the prompt, shared by create and count_tokens."""

    model: str = Field(min_length=1, max_length=1024)
    messages: list[AnthropicMessage] = Field(min_length=1, max_length=4096)
    system: str | list[ContentBlock] | None = None
    tools: list[AnthropicTool] | None = Field(None, max_length=128)
    tool_choice: AnthropicToolChoice | None = None
    # Known Anthropic parameters we cannot honour: rejected when they ask for something.
    thinking: Thinking | None = None
    mcp_servers: list[Any] | None = None
    output_config: OutputConfig | None = None
    cache_control: dict[str, Any] | None = None  # a prompt-caching hint: accepted, no effect

    def check_prompt(self) -> None:
        for i, tool in enumerate(self.tools or ()):
            if tool.type not in (None, "custom"):
                raise unsupported(f"tools.{i}", f"server tool type {tool.type!r} is not supported")
        mode = self.tool_mode()
        check_tool_choice(self.tools, mode)
        if mode == "named" and not (self.tool_choice and self.tool_choice.name):
            raise ApiError(400, "tool_choice.name: required when type is 'tool'", param="tool_choice.name")
        if self.thinking is not None and self.thinking.type not in ("disabled", "enabled", "adaptive"):
            raise unsupported(
                "thinking.type", f"{self.thinking.type!r}: expected enabled, adaptive or disabled"
            )
        if self.mcp_servers:
            raise unsupported("mcp_servers", "MCP servers are not supported")
        fmt = self.output_config.format if self.output_config is not None else None
        if fmt is not None and (fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict)):
            raise unsupported(
                "output_config.format", "only {'type': 'json_schema', 'schema': {...}} is supported"
            )
        last = self.messages[-1]
        if last.role == "assistant" and not isinstance(last.content, str):
            for j, block in enumerate(last.content):
                if block.type not in ("text", *HISTORY_ONLY):
                    raise unsupported(
                        f"messages.{len(self.messages) - 1}.content.{j}",
                        "a final assistant turn prefills the reply with text only",
                    )

    def engine_messages(self) -> tuple[Message, ...]:
        """The system prompt (when given) as the first turn, then the messages as text (a
        final assistant turn is the prefill instead, see prefill())."""
        self.check_prompt()
        out = []
        if self.system is not None:
            out.append(Message("system", _text_of(self.system, "system")))
        turns = self.messages[:-1] if self.messages[-1].role == "assistant" else self.messages
        for i, m in enumerate(turns):
            out.extend(_turns(m, f"messages.{i}.content"))
        return tuple(out)

    def prefill(self) -> str:
        """The text of a final assistant turn: the reply continues it (Anthropic's prefill)."""
        last = self.messages[-1]
        if last.role != "assistant":
            return ""
        return "".join(t.content for t in _turns(last, f"messages.{len(self.messages) - 1}.content"))

    def tool_mode(self) -> ChoiceMode:
        """What tool_choice asks for, in the words both APIs share."""
        c = self.tool_choice
        return _MODES[c.type] if c is not None else "auto"

    def engine_request(self, model_id: str, **rest: Any) -> GenerationRequest:
        """The prompt part (turns, tools and the constraint they bring) plus `rest`."""
        messages, prefill = self.engine_messages(), self.prefill()
        c = self.tool_choice
        specs = tuple(ToolSpec(t.name, t.description or "", t.input_schema) for t in self.tools or ())
        parallel = not (c is not None and c.disable_parallel_tool_use)
        tools = tool_use(specs, self.tool_mode(), c.name if c is not None else None, parallel=parallel)
        reply_format = None
        if self.output_config is not None and self.output_config.format is not None:
            schema = self.output_config.format["schema"]
            reply_format = Constraint.json_schema(schema, "output_config.format.schema", strict=True)
        constraint = tools.constraint(reply_format)
        if prefill and constraint is not None:
            where = f"messages.{len(self.messages) - 1}"
            raise unsupported(
                where, "a prefilled reply cannot be combined with tools or output_config.format"
            )
        think, budget = self.reasoning()
        return GenerationRequest(
            messages=messages,
            model=model_id,
            tools=tools.tools,
            tool_choice=tools.choice,
            constraint=constraint,
            prefill=prefill,
            think=think,
            reasoning_budget=budget,
            **rest,
        )

    def reasoning(self) -> tuple[bool | None, int | None]:
        """(think, reasoning_budget): `thinking` disabled skips the section, enabled bounds it
        by budget_tokens; output_config.effort bounds it as reasoning_effort does (an effort
        not known here changes nothing). Models without a thinking section answer as usual."""
        effort = self.output_config.effort if self.output_config is not None else None
        think, budget = (None, EFFORT_BUDGETS.get(effort)) if effort else (None, None)
        if self.thinking is not None and self.thinking.type == "disabled":
            return False, None
        if self.thinking is not None and self.thinking.budget_tokens is not None:
            budget = self.thinking.budget_tokens
        return think, budget


class CountTokensRequest(MessagesBase):
    def to_engine_request(self, model_id: str) -> GenerationRequest:
        """The request whose prompt is counted (nothing is generated for it, so no max_tokens)."""
        return self.engine_request(model_id, max_tokens=None)


class MessagesRequest(MessagesBase, KVCacheFields):
    max_tokens: int = Field(ge=1, le=1_000_000)
    stop_sequences: list[str] | None = Field(None, max_length=MAX_STOP_STRINGS)
    temperature: float | None = Field(None, ge=0, le=1)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=0, le=100_000)
    stream: bool = False
    ignore_eos: bool = Field(
        False, description="extension: generate past end-of-sequence (benchmarks, tests)"
    )
    speculative: SpeculativeField = Field(None, description=SPECULATIVE_HELP)
    # Describe the caller only: accepted, no effect on generation.
    metadata: Metadata | None = None
    service_tier: str | None = None

    def sampling(self) -> SamplingParams:
        return sampling_params(self.temperature, self.top_p, top_k=self.top_k)

    def to_engine_request(self, model_id: str) -> GenerationRequest:
        stops = tuple(self.stop_sequences or ())
        check_stops(stops, "stop_sequences", empty=False)
        return self.engine_request(
            model_id,
            sampling=self.sampling(),
            max_tokens=self.max_tokens,
            stop=stops,
            ignore_eos=self.ignore_eos,
            speculative=speculation(self.speculative),
            kv=self.kv(),
        )
