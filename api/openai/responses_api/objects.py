"""Responses API reply models: the response object, its output items (reasoning, message,
function_call), usage with cached and reasoning tokens, and their builders from an engine
result. The same classes build the replies and document them; knows no HTTP or engine thread."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import Field
from pydantic.json_schema import SkipJsonSchema

from api.openai.responses_api.protocol import ResponsesRequest
from api.wire import ReplyModel, Timings, omitted, reply_calls, timings
from workbench.engine import Completion, GenerationStats
from workbench.engine.structured.tools import ToolSpec

Status = Literal["completed", "incomplete", "in_progress", "failed"]


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


class OutputText(ReplyModel):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[Any] = Field(default_factory=list)
    logprobs: list[Any] = Field(default_factory=list)


class ReasoningText(ReplyModel):
    type: Literal["reasoning_text"] = "reasoning_text"
    text: str


class MessageItem(ReplyModel):
    type: Literal["message"] = "message"
    id: str
    role: Literal["assistant"] = "assistant"
    status: Status
    content: list[OutputText]


class ReasoningItem(ReplyModel):
    """The model's thinking section (models whose template has one), as reasoning text."""

    type: Literal["reasoning"] = "reasoning"
    id: str
    status: Status
    summary: list[Any] = Field(default_factory=list)
    content: list[ReasoningText]


class FunctionCallItem(ReplyModel):
    type: Literal["function_call"] = "function_call"
    id: str
    call_id: str
    name: str
    arguments: str = Field(description="the arguments as JSON text, as generated")
    status: Status
    namespace: str | SkipJsonSchema[None] = omitted("the namespace tool the function came in")


class CustomToolCallItem(ReplyModel):
    """A call of a custom (freeform) tool: its input text."""

    type: Literal["custom_tool_call"] = "custom_tool_call"
    id: str
    call_id: str
    name: str
    input: str
    status: Status


Call = FunctionCallItem | CustomToolCallItem
OutputItem = Annotated[MessageItem | ReasoningItem | Call, Field(discriminator="type")]
# Offered tool name -> (its namespace, whether it is a custom tool): ResponsesRequest.tool_kinds.
Kinds = dict[str, tuple[str | None, bool]]


def call_item(name: str, arguments: str, status: Status, kinds: Kinds) -> Call:
    """A call as its tool's kind reports it: a custom tool's input is its one string argument."""
    namespace, custom = kinds.get(name, (None, False))
    if not custom:
        return FunctionCallItem(
            id=new_id("fc"),
            call_id=new_id("call"),
            name=name,
            arguments=arguments,
            status=status,
            namespace=namespace,
        )
    return CustomToolCallItem(
        id=new_id("ctc"), call_id=new_id("call"), name=name, input=custom_input(arguments), status=status
    )


def custom_input(arguments: str) -> str:
    try:
        value = json.loads(arguments).get("input") if arguments else ""
    except (ValueError, AttributeError):
        return arguments  # cut short: as generated
    return value if isinstance(value, str) else arguments


class InputTokensDetails(ReplyModel):
    cached_tokens: int = Field(description="prompt tokens the prompt cache supplied")
    cache_write_tokens: int = Field(description="prompt tokens processed (and cached) for this reply")


class OutputTokensDetails(ReplyModel):
    reasoning_tokens: int


class ResponseUsage(ReplyModel):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int


class IncompleteDetails(ReplyModel):
    reason: Literal["max_output_tokens"]


class ErrorDetails(ReplyModel):
    code: str
    message: str


class ResponseObject(ReplyModel):
    """A response: the reply's output items and how it ended, with the request's settings."""

    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: Status
    model: str
    output: list[OutputItem]
    error: ErrorDetails | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None
    max_output_tokens: int | None
    temperature: float | None
    top_p: float | None
    tools: list[dict[str, Any]]
    tool_choice: Any
    parallel_tool_calls: bool
    previous_response_id: str | None
    reasoning: dict[str, Any] | None
    store: bool
    text: dict[str, Any]
    truncation: str
    metadata: dict[str, str]
    user: str | None
    usage: ResponseUsage | None = None
    timings: Timings | SkipJsonSchema[None] = omitted("what the engine measured (once it has finished)")


class DeletedResponse(ReplyModel):
    id: str
    object: Literal["response.deleted"] = "response.deleted"
    deleted: bool = True


class InputItemList(ReplyModel):
    object: Literal["list"] = "list"
    data: list[dict[str, Any]]
    first_id: str | None
    last_id: str | None
    has_more: bool = False


def usage(stats: GenerationStats, cached_prompt: bool) -> ResponseUsage:
    processed = stats.prompt_tokens - stats.cached_tokens
    return ResponseUsage(
        input_tokens=stats.prompt_tokens,
        input_tokens_details=InputTokensDetails(
            cached_tokens=stats.cached_tokens, cache_write_tokens=processed if cached_prompt else 0
        ),
        output_tokens=stats.generation_tokens,
        output_tokens_details=OutputTokensDetails(reasoning_tokens=stats.reasoning_tokens),
        total_tokens=stats.prompt_tokens + stats.generation_tokens,
    )


def skeleton(body: ResponsesRequest, rid: str, model: str, previous: str | None) -> ResponseObject:
    """The response before any output (response.created, in_progress): the request's settings."""
    fmt = body.text.format if body.text is not None and body.text.format is not None else None
    mode, name = body.tool_mode()
    return ResponseObject(
        id=rid,
        created_at=int(time.time()),
        status="in_progress",
        model=model,
        output=[],
        instructions=body.instructions,
        max_output_tokens=body.max_output_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        tools=[t.model_dump(exclude_none=True) for t in body.tools or ()],
        tool_choice={"type": "function", "name": name} if mode == "named" else mode,
        parallel_tool_calls=body.parallel_tool_calls is not False,
        previous_response_id=previous,
        reasoning=body.reasoning.model_dump(exclude_none=True) if body.reasoning is not None else None,
        store=body.store,
        text={"format": fmt.model_dump(exclude_none=True, by_alias=True) if fmt else {"type": "text"}},
        truncation=body.truncation or "disabled",
        metadata=body.metadata or {},
        user=body.user,
    )


def output_items(
    result: Completion, tools: Sequence[ToolSpec], kinds: Kinds
) -> list[MessageItem | ReasoningItem | Call]:
    """A finished reply's items: its reasoning, its text as a message, its calls."""
    status: Status = "incomplete" if result.stats.finish_reason == "length" else "completed"
    items: list[MessageItem | ReasoningItem | Call] = []
    if result.reasoning:
        items.append(
            ReasoningItem(id=new_id("rs"), status=status, content=[ReasoningText(text=result.reasoning)])
        )
    text, calls = reply_calls(result, tools)
    if text.strip() or not calls:
        items.append(MessageItem(id=new_id("msg"), status=status, content=[OutputText(text=text)]))
    items += [call_item(c.name, c.arguments, status, kinds) for c in calls]
    return items


def finished(
    response: ResponseObject,
    items: Sequence[MessageItem | ReasoningItem | Call],
    stats: GenerationStats,
    cached_prompt: bool,
) -> ResponseObject:
    """The response once its generation ended: 'incomplete' (max_output_tokens) when the limit
    or the context cut it, else 'completed'; usage and timings."""
    incomplete = stats.finish_reason == "length"
    return response.model_copy(
        update={
            "status": "incomplete" if incomplete else "completed",
            "output": list(items),
            "incomplete_details": IncompleteDetails(reason="max_output_tokens") if incomplete else None,
            "usage": usage(stats, cached_prompt),
            "timings": timings([stats]),
        }
    )
