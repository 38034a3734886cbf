"""OpenAI request models for /v1/chat/completions and /v1/completions (explicit bounds;
a parameter we cannot honour is a 400 that names it), and their one conversion into engine
GenerationRequests. Knows no HTTP, no engine thread, no reply shape."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from api.errors import ApiError
from api.wire import (
    SPECULATIVE_HELP,
    ChoiceMode,
    KVCacheFields,
    SpeculativeField,
    WireModel,
    check_stops,
    check_tool_choice,
    no_effect,
    reasoning_plan,
    sampling_params,
    speculation,
    stop_strings,
    tool_use,
    unsupported,
)
from workbench.engine import Constraint, GenerationRequest, Message, SamplingParams
from workbench.engine.structured.tools import ToolSpec, call_text
from workbench.engine.types import MAX_SEED, MAX_TOP_LOGPROBS

MAX_CHOICES = 16  # n x prompts per request
MAX_LOGIT_BIAS = 300  # entries, as OpenAI allows
MAX_STOP_LENGTH = 1000  # characters per stop string
Bias = Annotated[float, Field(ge=-100, le=100)]


class StreamOptions(WireModel):
    include_usage: bool = False


class JsonSchemaFormat(WireModel):
    name: str = Field("response", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None  # true: objects without additionalProperties are closed


class ResponseFormat(WireModel):
    """OpenAI's `text` / `json_object` / `json_schema`, enforced token by token; llama.cpp's
    `{"type": "json_object", "schema": {...}}` too."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    type: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: JsonSchemaFormat | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema", description="extension (llama.cpp)")

    def constraint(self) -> Constraint | None:
        if self.type == "text":
            return None
        if self.type == "json_object":
            return Constraint.json_schema(self.schema_ or {"type": "object"})
        if self.json_schema is None or self.json_schema.schema_ is None:
            raise ApiError(
                400,
                "response_format.json_schema.schema: required when type is 'json_schema'",
                param="response_format.json_schema",
            )
        return Constraint.json_schema(
            self.json_schema.schema_,
            "response_format.json_schema.schema",
            strict=bool(self.json_schema.strict),
        )


class FunctionDef(WireModel):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str | None = Field(None, max_length=8192)
    parameters: dict[str, Any] | None = None
    strict: bool | None = None  # accepted: arguments always follow the schema, objects closed


class ToolDef(WireModel):
    type: Literal["function"] = "function"
    function: FunctionDef


class NamedFunction(WireModel):
    name: str


class NamedToolChoice(WireModel):
    type: Literal["function"] = "function"
    function: NamedFunction


class CallFunction(WireModel):
    name: str
    arguments: str = "{}"


class ToolCallIn(WireModel):
    """A call in an assistant turn sent back in the history."""

    id: str | None = None
    type: Literal["function"] = "function"
    function: CallFunction


class ContentPart(WireModel):
    type: str
    text: str | None = None


class ChatMessage(WireModel):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None

    def to_engine(self, index: int) -> Message:
        where = f"messages.{index}"
        if self.role == "function":
            raise unsupported(f"{where}.role", "the legacy 'function' role is not supported; use 'tool'")
        if self.tool_calls:
            if self.role != "assistant":
                raise ApiError(400, f"{where}.tool_calls: only assistant turns make calls", param=where)
            # The calls as the model writes them (engine/tools.py), after any text.
            calls = "\n".join(call_text(c.function.name, c.function.arguments) for c in self.tool_calls)
            text = self.text(where) if self.content else ""
            return Message("assistant", f"{text}\n{calls}" if text else calls)
        if self.name is not None and self.role != "tool":
            raise unsupported(
                f"{where}.name", "participant names are not supported (chat templates drop them)"
            )
        if self.content is None:
            raise ApiError(400, f"{where}.content: required", param=f"{where}.content")
        # "developer" is OpenAI's newer name for the system role; chat templates know "system".
        return Message("system" if self.role == "developer" else self.role, self.text(where))

    def text(self, where: str) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            text = self.content
        else:
            texts = []
            for j, part in enumerate(self.content):
                if part.type != "text" or part.text is None:
                    raise unsupported(
                        f"{where}.content.{j}",
                        f"content part type {part.type!r}: only text parts are supported",
                    )
                texts.append(part.text)
            text = "".join(texts)
        return text


class SamplingFields(KVCacheFields):
    """Fields shared by chat and text completions."""

    model: str = Field(min_length=1, max_length=1024)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=0, le=100_000, description="extension (llama.cpp, mlx-lm)")
    min_p: float | None = Field(None, ge=0, le=1, description="extension")
    repetition_penalty: float | None = Field(None, ge=0.01, le=10, description="extension")
    repetition_context_size: int | None = Field(None, ge=1, le=65536, description="extension")
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, Bias] | None = Field(None, max_length=MAX_LOGIT_BIAS)
    seed: int | None = Field(None, ge=-(2**63), le=MAX_SEED, description="-1 = random, as in llama.cpp")
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1, le=MAX_CHOICES)
    stream: bool = False
    stream_options: StreamOptions | None = None
    ignore_eos: bool = Field(False, description="extension: generate past end-of-sequence (benchmarks)")
    speculative: SpeculativeField = Field(None, description=SPECULATIVE_HELP)
    response_format: ResponseFormat | None = None
    # Describe the caller only: accepted, no effect on generation.
    user: str | None = None
    metadata: dict[str, Any] | None = None
    store: bool | None = None
    service_tier: str | None = None

    def check_common(self) -> None:
        if self.stream_options is not None and not self.stream:
            raise ApiError(400, "stream_options: only allowed when stream is true", param="stream_options")
        check_stops(self.stops(), "stop", max_length=MAX_STOP_LENGTH)

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

    def sampling(self, choice: int) -> SamplingParams:
        """Engine sampling for choice `choice`: seeded requests give choice i seed + i,
        so n choices differ from each other yet the whole response reproduces."""
        # -1 means "random" to llama.cpp-style clients; other negatives wrap into range.
        seed = None if self.seed in (None, -1) else (self.seed + choice) % (MAX_SEED + 1)
        return sampling_params(
            self.temperature,
            self.top_p,
            seed=seed,
            logit_bias=self.logit_bias,
            top_k=self.top_k,
            min_p=self.min_p,
            repetition_penalty=self.repetition_penalty,
            repetition_context_size=self.repetition_context_size,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
        )

    def constraint(self) -> Constraint | None:
        return self.response_format.constraint() if self.response_format is not None else None

    def stops(self) -> tuple[str, ...]:
        return stop_strings(self.stop)


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1, max_length=4096)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    tools: list[ToolDef] | None = Field(None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    # Known OpenAI parameters we cannot honour: rejected when they ask for something.
    functions: list[Any] | None = None
    function_call: str | dict[str, Any] | None = None
    audio: dict[str, Any] | None = None
    modalities: list[str] | None = None
    web_search_options: dict[str, Any] | None = None
    # Reasoning models: the effort bounds the thinking section (api/wire.py EFFORT_BUDGETS;
    # 'none' skips it), `reasoning_budget` in tokens; models without one answer as usual.
    reasoning_effort: str | None = None
    reasoning_budget: int | None = Field(None, ge=0, description="extension: most reasoning tokens")
    chat_template_kwargs: dict[str, Any] | None = Field(
        None, description="extension (vLLM, SGLang): only enable_thinking is honoured"
    )
    # Accepted without effect: a predicted output only speeds generation up.
    prediction: dict[str, Any] | None = None
    verbosity: str | None = None

    def check(self) -> None:
        self.check_common()
        if self.functions or self.function_call not in (None, "none", "auto"):
            raise unsupported(
                "functions" if self.functions else "function_call",
                "the legacy functions API is not supported; use tools and tool_choice",
            )
        mode, _ = self.tool_mode()
        check_tool_choice(self.tools, mode)
        if self.modalities is not None and self.modalities != ["text"]:
            raise unsupported("modalities", "only ['text'] is supported")
        for name in ("audio", "web_search_options"):
            if getattr(self, name) is not None:
                raise unsupported(name, "not supported by this server")
        for name in ("prediction", "verbosity"):
            if getattr(self, name) is not None:
                no_effect("chat.completions", name)
        other = set(self.chat_template_kwargs or {}) - {"enable_thinking"}
        if other:
            no_effect("chat.completions", f"chat_template_kwargs {sorted(other)}")
        if self.top_logprobs is not None and not self.logprobs:
            raise ApiError(400, "top_logprobs: requires logprobs to be true", param="top_logprobs")

    def tool_mode(self) -> tuple[ChoiceMode, str | None]:
        """What tool_choice asks for, and the tool it names."""
        c = self.tool_choice
        return ("named", c.function.name) if isinstance(c, NamedToolChoice) else (c or "auto", None)

    def tool_specs(self) -> tuple[ToolSpec, ...]:
        return tuple(
            ToolSpec(f.name, f.description or "", f.parameters or {"type": "object"})
            for f in (t.function for t in self.tools or ())
        )

    def to_engine_requests(self, model_id: str) -> list[GenerationRequest]:
        """One engine request per choice (n)."""
        self.check()
        messages = tuple(m.to_engine(i) for i, m in enumerate(self.messages))
        limit = self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens
        tools = tool_use(self.tool_specs(), *self.tool_mode(), parallel=self.parallel_tool_calls is not False)
        constraint = tools.constraint(self.constraint())
        think, budget = reasoning_plan(self.reasoning_effort, self.reasoning_budget, "reasoning_effort")
        if (self.chat_template_kwargs or {}).get("enable_thinking") is False:
            think = False
        return [
            GenerationRequest(
                messages=messages,
                model=model_id,
                sampling=self.sampling(i),
                max_tokens=limit,
                stop=self.stops(),
                logprobs=(self.top_logprobs or 0) if self.logprobs else None,
                ignore_eos=self.ignore_eos,
                constraint=constraint,
                tools=tools.tools,
                tool_choice=tools.choice,
                think=think,
                reasoning_budget=budget,
                speculative=speculation(self.speculative),
                kv=self.kv(),
            )
            for i in range(self.n)
        ]


class CompletionRequest(SamplingFields):
    prompt: str | list[int] | list[str] | list[list[int]]
    max_tokens: int | None = Field(16, ge=1)  # OpenAI's default for text completions
    logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = Field(None, ge=1, le=MAX_CHOICES)

    def prompts(self) -> list[str | list[int]]:
        p = self.prompt
        if isinstance(p, str):
            return [p]
        if not p:
            raise ApiError(400, "prompt: must not be empty", param="prompt")
        if all(isinstance(x, int) for x in p):
            return [list(p)]  # type: ignore[arg-type]
        return list(p)  # type: ignore[arg-type]

    def check(self) -> None:
        self.check_common()
        if self.suffix:
            raise unsupported("suffix", "insertion (fill-in-the-middle) is not supported")
        if self.best_of is not None and self.best_of != self.n:
            raise unsupported("best_of", "best_of other than n is not supported")
        if self.echo and self.logprobs is not None:
            raise unsupported("echo", "echo with logprobs needs prompt logprobs, which are not supported")
        if len(self.prompts()) * self.n > MAX_CHOICES:
            raise ApiError(
                400, f"prompt: at most {MAX_CHOICES} choices (prompts x n) per request", param="prompt"
            )

    def to_engine_requests(self, model_id: str) -> list[GenerationRequest]:
        """One engine request per (prompt, choice), prompt-major as OpenAI indexes choices."""
        self.check()
        out = []
        for p in self.prompts():
            for i in range(self.n):
                out.append(
                    GenerationRequest(
                        prompt=p if isinstance(p, str) else None,
                        prompt_ids=tuple(p) if not isinstance(p, str) else None,
                        model=model_id,
                        sampling=self.sampling(i),
                        max_tokens=self.max_tokens,
                        stop=self.stops(),
                        logprobs=self.logprobs,
                        ignore_eos=self.ignore_eos,
                        constraint=self.constraint(),
                        speculative=speculation(self.speculative),
                        kv=self.kv(),
                    )
                )
        return out
