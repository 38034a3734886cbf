"""OpenAI reply models (bodies, model objects) and their builders from engine results: choices,
usage, logprobs, our `timings` and model extras. The same classes build the replies and
document them (stream chunks: streams.py); knows no HTTP or engine thread."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from api.wire import ReplyModel, Timings, omitted, reply_calls, timings
from workbench import __version__
from workbench.engine import Completion, GenerationStats, ModelInfo, TokenLogprob
from workbench.engine.structured.tools import ToolSpec
from workbench.engine.types import ModelSource

TextFinish = Literal["stop", "length"]
ChatFinish = Literal["stop", "length", "tool_calls"]
_OWN_TIMINGS = "this choice's own timings, when there are several choices"

# ---- parts of a reply -----------------------------------------------------------


class PromptTokensDetails(ReplyModel):
    cached_tokens: int = Field(description="prompt tokens the prompt cache supplied")


class CompletionTokensDetails(ReplyModel):
    reasoning_tokens: int = Field(description="completion tokens inside the model's thinking section")


class Usage(ReplyModel):
    """Each distinct prompt counted once, every choice's tokens counted."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails
    completion_tokens_details: CompletionTokensDetails


class TopLogprob(ReplyModel):
    token: str
    logprob: float
    bytes: list[int]


class ChatTokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChatLogprobs(ReplyModel):
    content: list[ChatTokenLogprob]
    refusal: str | None = None


class TextLogprobs(ReplyModel):
    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]
    text_offset: list[int]


class FunctionCall(ReplyModel):
    name: str
    arguments: str = Field(description="the arguments as JSON text, as generated")


class ToolCall(ReplyModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class AssistantMessage(ReplyModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: str | None = None
    reasoning_content: str | SkipJsonSchema[None] = omitted(
        "the model's thinking section, apart from the answer (models that have one)"
    )
    tool_calls: list[ToolCall] | SkipJsonSchema[None] = omitted("when the reply made calls")


class ChatChoice(ReplyModel):
    index: int
    finish_reason: ChatFinish
    message: AssistantMessage
    logprobs: ChatLogprobs | None
    timings: Timings | SkipJsonSchema[None] = omitted(_OWN_TIMINGS)


class TextChoice(ReplyModel):
    index: int
    finish_reason: TextFinish
    text: str
    logprobs: TextLogprobs | None
    timings: Timings | SkipJsonSchema[None] = omitted(_OWN_TIMINGS)


class CompletionBase(ReplyModel):
    """What every body and chunk of one response shares."""

    id: str
    object: str
    created: int
    model: str
    system_fingerprint: str


class ChatCompletion(CompletionBase):
    object: Literal["chat.completion"] = "chat.completion"
    choices: list[ChatChoice]
    usage: Usage
    timings: Timings


class TextCompletion(CompletionBase):
    object: Literal["text_completion"] = "text_completion"
    choices: list[TextChoice]
    usage: Usage
    timings: Timings


# ---- models ---------------------------------------------------------------------


class ModelObject(ReplyModel):
    """OpenAI's model object; ours adds what the engine knows of the model (source ..
    tool_dialect, and any ModelInfo field not named here yet)."""

    model_config = ConfigDict(extra="allow")

    id: str
    object: Literal["model"] = "model"
    created: int = Field(description="when its files were written (0: not on disk)")
    owned_by: str
    source: ModelSource
    variant: str
    path: str | None
    size_bytes: int | None
    bits: int | None = Field(description="weight bits: 32 / 16 for dense float32 / half weights")
    group_size: int | None
    dtype: str | None = Field(description="dense weights' dtype, or quantized weights' scales'")
    context_length: int | None = Field(description="tokens of prompt + reply (None: unknown until loaded)")
    loaded: bool
    memory_gb: float | None
    description: str
    load_s: float | None = Field(description="how long its current load took (None: not loaded)")
    reasoning: bool | None = Field(description="its template has a thinking section (None: not loaded yet)")
    tool_dialect: str | None = Field(description="mlx-lm's parser of the tool calls its template asks for")


class ModelList(ReplyModel):
    object: Literal["list"] = "list"
    data: list[ModelObject]


def model_object(info: ModelInfo) -> ModelObject:
    created = 0
    if info.path and Path(info.path).exists():
        created = int(Path(info.path).stat().st_mtime)
    return ModelObject(**asdict(info), created=created, owned_by=info.source)


# ---- builders -------------------------------------------------------------------

# The engine's "cancelled" only reaches a builder when the engine stopped under a live
# client (a client that left gets nothing); it is reported as an error instead.
_FINISH: dict[str, TextFinish] = {"stop": "stop", "length": "length"}


def finish_reason(stats: GenerationStats) -> TextFinish:
    return _FINISH.get(stats.finish_reason, "stop")


def usage(stats: Sequence[GenerationStats], per_prompt: int) -> Usage:
    """Each distinct prompt (every `per_prompt`-th choice) counted once."""
    prompt = sum(s.prompt_tokens for s in stats[::per_prompt])
    cached = sum(s.cached_tokens for s in stats[::per_prompt])
    completion = sum(s.generation_tokens for s in stats)
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=cached),
        completion_tokens_details=CompletionTokensDetails(
            reasoning_tokens=sum(s.reasoning_tokens for s in stats)
        ),
    )


def chat_logprobs(items: Sequence[TokenLogprob]) -> ChatLogprobs:
    def top(text: str, logprob: float) -> TopLogprob:
        return TopLogprob(token=text, logprob=logprob, bytes=list(text.encode("utf-8")))

    content = [
        ChatTokenLogprob(
            token=t.text,
            logprob=t.logprob,
            bytes=list(t.text.encode("utf-8")),
            top_logprobs=[top(text, lp) for _, text, lp in t.top],
        )
        for t in items
    ]
    return ChatLogprobs(content=content)


def text_logprobs(items: Sequence[TokenLogprob], offset: int) -> TextLogprobs:
    offsets = []
    for t in items:
        offsets.append(offset)
        offset += len(t.text)
    return TextLogprobs(
        tokens=[t.text for t in items],
        token_logprobs=[t.logprob for t in items],
        top_logprobs=[{text: lp for _, text, lp in t.top} for t in items],
        text_offset=offsets,
    )


@dataclass
class ResponseHeader:
    """What every body and chunk of one response shares: `fields` for its model."""

    kind: Literal["chat", "text"]
    model: str
    device: str
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))
    fields: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        prefix = "chatcmpl" if self.kind == "chat" else "cmpl"
        self.id = self.id or f"{prefix}-{uuid.uuid4().hex[:24]}"
        fingerprint = f"workbench-{__version__}-{self.device}"
        self.fields = {"id": self.id, "created": self.created, "model": self.model}
        self.fields["system_fingerprint"] = fingerprint


def _own_timings(results: Sequence[Completion], result: Completion) -> Timings | None:
    return timings([result.stats]) if len(results) > 1 else None


def chat_completion(
    head: ResponseHeader, results: Sequence[Completion], tools: Sequence[ToolSpec] = ()
) -> ChatCompletion:
    """With `tools`, a reply made of calls becomes `tool_calls` (finish_reason
    'tool_calls') and its content null."""
    choices = []
    for i, r in enumerate(results):
        text, calls = reply_calls(r, tools)
        message = AssistantMessage(
            content=None if calls and not text.strip() else text,
            reasoning_content=r.reasoning or None,
            tool_calls=[tool_call(c.name, c.arguments) for c in calls] or None,
        )
        choice = ChatChoice(
            index=i,
            finish_reason="tool_calls" if calls else finish_reason(r.stats),
            message=message,
            logprobs=chat_logprobs(r.logprobs) if r.logprobs else None,
            timings=_own_timings(results, r),
        )
        choices.append(choice)
    stats = [r.stats for r in results]
    return ChatCompletion(
        **head.fields, choices=choices, usage=usage(stats, len(results)), timings=timings(stats)
    )


def call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def tool_call(name: str, arguments: str) -> ToolCall:
    """One entry of `tool_calls`, with a fresh id."""
    return ToolCall(id=call_id(), function=FunctionCall(name=name, arguments=arguments))


def text_completion(
    head: ResponseHeader, results: Sequence[Completion], per_prompt: int, echoes: Sequence[str]
) -> TextCompletion:
    choices = []
    for i, r in enumerate(results):
        echo = echoes[i // per_prompt] if echoes else ""
        choice = TextChoice(
            index=i,
            finish_reason=finish_reason(r.stats),
            text=echo + r.text,
            logprobs=text_logprobs(r.logprobs, len(echo)) if r.logprobs else None,
            timings=_own_timings(results, r),
        )
        choices.append(choice)
    stats = [r.stats for r in results]
    return TextCompletion(
        **head.fields, choices=choices, usage=usage(stats, per_prompt), timings=timings(stats)
    )
