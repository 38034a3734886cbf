"""The engine's vocabulary: frozen, validated dataclasses with no mlx import, which every consumer
builds and reads back; bad values fail here, before any MLX work."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from workbench.engine.errors import InvalidRequestError
from workbench.engine.kv_quant import KVQuant
from workbench.engine.speculation import Speculation
from workbench.engine.stats import FinishReason, GenerationStats
from workbench.engine.structured.constraint import Constraint

MAX_STOP_STRINGS = 16
MAX_TOP_LOGPROBS = 20
MAX_SEED = 2**63 - 1


def _check(condition: bool, param: str, message: str) -> None:
    if not condition:
        raise InvalidRequestError(f"{param}: {message}", param=param)


def _number(value: Any, param: str) -> float:
    _check(
        isinstance(value, (int, float)) and not isinstance(value, bool),
        param,
        f"must be a number, got {value!r}",
    )
    _check(math.isfinite(value), param, f"must be finite, got {value!r}")
    return float(value)


def _integer(value: Any, param: str) -> int:
    _check(
        isinstance(value, int) and not isinstance(value, bool),
        param,
        f"must be an integer, got {value!r}",
    )
    return int(value)


@dataclass(frozen=True)
class Message:
    """One chat turn; rendered with the model's own chat template."""

    role: str
    content: str

    def __post_init__(self) -> None:
        _check(
            isinstance(self.role, str) and self.role.strip() != "",
            "messages.role",
            f"must be a non-empty string, got {self.role!r}",
        )
        _check(
            isinstance(self.content, str),
            "messages.content",
            f"must be a string, got {type(self.content).__name__}",
        )

    @classmethod
    def coerce(cls, value: Message | Mapping[str, Any]) -> Message:
        """Accept a Message or a {"role", "content"} mapping (notebook convenience)."""
        if isinstance(value, Message):
            return value
        if isinstance(value, Mapping):
            unknown = set(value) - {"role", "content"}
            _check(not unknown, "messages", f"unknown keys {sorted(unknown)}")
            return cls(role=value.get("role", ""), content=value.get("content", ""))
        raise InvalidRequestError(
            f"messages: each item must be a Message or a mapping, got {type(value).__name__}",
            param="messages",
        )


@dataclass(frozen=True)
class SamplingParams:
    """How the next token is chosen. Defaults are greedy (temperature 0), as in mlx-lm.

    `logit_bias` maps token id -> additive bias; a dict is accepted and stored as
    sorted pairs so the object stays hashable.
    """

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    repetition_context_size: int = 20
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    logit_bias: tuple[tuple[int, float], ...] = ()

    def __post_init__(self) -> None:
        t = _number(self.temperature, "temperature")
        _check(0.0 <= t <= 10.0, "temperature", f"must be in [0, 10], got {t}")
        p = _number(self.top_p, "top_p")
        _check(0.0 < p <= 1.0, "top_p", f"must be in (0, 1], got {p}")
        k = _integer(self.top_k, "top_k")
        _check(k >= 0, "top_k", f"must be >= 0 (0 disables it), got {k}")
        m = _number(self.min_p, "min_p")
        _check(0.0 <= m <= 1.0, "min_p", f"must be in [0, 1], got {m}")
        r = _number(self.repetition_penalty, "repetition_penalty")
        _check(0.0 < r <= 10.0, "repetition_penalty", f"must be in (0, 10], got {r}")
        rc = _integer(self.repetition_context_size, "repetition_context_size")
        _check(1 <= rc <= 65536, "repetition_context_size", f"must be in [1, 65536], got {rc}")
        for name in ("presence_penalty", "frequency_penalty"):
            v = _number(getattr(self, name), name)
            _check(-2.0 <= v <= 2.0, name, f"must be in [-2, 2], got {v}")
        if self.seed is not None:
            s = _integer(self.seed, "seed")
            _check(0 <= s <= MAX_SEED, "seed", f"must be in [0, 2**63 - 1], got {s}")
        object.__setattr__(self, "logit_bias", _coerce_logit_bias(self.logit_bias))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def _coerce_logit_bias(
    value: Mapping[int, float] | Iterable[tuple[int, float]] | None,
) -> tuple[tuple[int, float], ...]:
    if value is None:
        return ()
    items = value.items() if isinstance(value, Mapping) else value
    pairs: dict[int, float] = {}
    for key, bias in items:
        # JSON object keys arrive as strings; accept "123" as well as 123.
        token = int(key) if isinstance(key, str) and key.strip().lstrip("-").isdigit() else key
        token = _integer(token, "logit_bias")
        _check(token >= 0, "logit_bias", f"token ids must be >= 0, got {token}")
        b = _number(bias, "logit_bias")
        _check(-100.0 <= b <= 100.0, "logit_bias", f"bias must be in [-100, 100], got {b}")
        pairs[token] = b
    return tuple(sorted(pairs.items()))


@dataclass(frozen=True)
class GenerationRequest:
    """One generation from exactly one of: chat `messages` (rendered with the model's
    template), a raw text `prompt`, or `prompt_ids` (token ids, for exact-length
    benchmark prompts).

    `model=None` means the engine's default model; `max_tokens=None` generates until
    the end-of-sequence token or the end of the context window. `stop` strings may span tokens
    and are never emitted. `logprobs=N` returns the chosen token's logprob and the
    top N alternatives per token (0..20). `ignore_eos` keeps generating past the
    end-of-sequence token (benchmarks use it to reach an exact length; under a
    `constraint` it is masked while the grammar allows any other token). `cache=False`
    neither reuses nor fills the cross-request prompt cache (benchmarks: every trial
    processes its whole prompt). `constraint` keeps the output inside a grammar (JSON
    schema or Lark): it always parses, unless max_tokens or a stop string cuts it short. `tools`
    (engine.tools.ToolSpec) are shown to the chat template, or described in a system
    note when the template ignores them; `tool_choice` ('auto', 'required' or a name)
    is then in the note too (the constraint enforces it). `prefill` (chat messages only) is
    text the reply starts with, after the generation prompt (Anthropic's final assistant
    turn): the model continues it; it is not part of the returned text.
    """

    messages: tuple[Message, ...] | None = None
    prompt: str | None = None
    prompt_ids: tuple[int, ...] | None = None
    model: str | None = None
    sampling: SamplingParams = field(default_factory=SamplingParams)
    max_tokens: int | None = 256
    stop: tuple[str, ...] = ()
    logprobs: int | None = None
    ignore_eos: bool = False
    cache: bool = True
    constraint: Constraint | None = None
    tools: tuple[Any, ...] = ()  # engine.tools.ToolSpec: offered to the chat template
    tool_choice: str = "auto"
    prefill: str = ""
    think: bool | None = None  # False: ask the template to skip its thinking section
    reasoning_budget: int | None = None  # most reasoning tokens before the section is closed
    speculative: Speculation | None = None  # None: the server's default (WORKBENCH_SPECULATIVE)
    kv: KVQuant | None = None  # the KV cache's storage; None fields: the server's (WORKBENCH_KV_BITS...)

    def __post_init__(self) -> None:
        given = [n for n in ("messages", "prompt", "prompt_ids") if getattr(self, n) is not None]
        _check(len(given) == 1, "messages", "give exactly one of messages, prompt or prompt_ids")
        if self.prompt_ids is not None:
            ids = tuple(self.prompt_ids)
            _check(len(ids) > 0, "prompt_ids", "must not be empty")
            for i in ids:
                _check(_integer(i, "prompt_ids") >= 0, "prompt_ids", f"token ids must be >= 0, got {i}")
            object.__setattr__(self, "prompt_ids", ids)
        elif self.messages is not None:
            _check(
                not isinstance(self.messages, (str, Mapping)),
                "messages",
                "must be a list of messages",
            )
            msgs = tuple(Message.coerce(m) for m in self.messages)
            _check(len(msgs) > 0, "messages", "must not be empty")
            object.__setattr__(self, "messages", msgs)
        else:
            _check(isinstance(self.prompt, str), "prompt", "must be a string")
            _check(self.prompt != "", "prompt", "must not be empty")
        if self.model is not None:
            _check(
                isinstance(self.model, str) and self.model.strip() != "",
                "model",
                "must be a non-empty string",
            )
        _check(isinstance(self.sampling, SamplingParams), "sampling", "must be SamplingParams")
        if self.max_tokens is not None:
            n = _integer(self.max_tokens, "max_tokens")
            _check(n >= 1, "max_tokens", f"must be >= 1, got {n}")
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        _check(len(stop) <= MAX_STOP_STRINGS, "stop", f"at most {MAX_STOP_STRINGS} strings")
        for s in stop:
            _check(isinstance(s, str) and s != "", "stop", f"must be non-empty strings, got {s!r}")
        object.__setattr__(self, "stop", stop)
        if self.logprobs is not None:
            lp = _integer(self.logprobs, "logprobs")
            _check(
                0 <= lp <= MAX_TOP_LOGPROBS,
                "logprobs",
                f"must be in [0, {MAX_TOP_LOGPROBS}], got {lp}",
            )
        _check(isinstance(self.ignore_eos, bool), "ignore_eos", "must be a boolean")
        _check(not self.prefill or self.messages is not None, "prefill", "needs chat messages")
        if self.reasoning_budget is not None:
            _check(
                _integer(self.reasoning_budget, "reasoning_budget") >= 0, "reasoning_budget", "must be >= 0"
            )
        object.__setattr__(self, "speculative", Speculation.coerce(self.speculative))
        object.__setattr__(self, "kv", KVQuant.coerce(self.kv))


@dataclass(frozen=True)
class TokenLogprob:
    """The chosen token's log-probability and the `top` alternatives (id, text, logprob)."""

    token_id: int
    text: str
    logprob: float
    top: tuple[tuple[int, str, float], ...] = ()


@dataclass(frozen=True)
class Chunk:
    """One step of a stream: new text (may be empty), the token behind it, and on
    the last chunk only, the stats."""

    text: str
    token_id: int | None = None
    logprob: TokenLogprob | None = None
    stats: GenerationStats | None = None
    reasoning: str = ""  # text of the model's thinking section (never in `text`)
    # Tool calls in the template's own format, parsed: ("call", i, name) / ("args", i, json).
    calls: tuple[tuple[Any, ...], ...] = ()

    @property
    def is_final(self) -> bool:
        return self.stats is not None

    @property
    def finish_reason(self) -> FinishReason | None:
        return self.stats.finish_reason if self.stats is not None else None


@dataclass(frozen=True)
class Completion:
    """A whole generation, as `Engine.generate` returns it."""

    text: str
    token_ids: tuple[int, ...]
    stats: GenerationStats
    logprobs: tuple[TokenLogprob, ...] = ()
    reasoning: str = ""
    calls: tuple[Any, ...] = ()  # structured.tools.ToolCall, parsed from the template's own format

    @property
    def finish_reason(self) -> FinishReason:
        return self.stats.finish_reason


ModelSource = Literal["embedded", "local", "gguf", "hub", "quantized", "adapter"]


@dataclass(frozen=True)
class ModelInfo:
    """A registered model id and what we know of it without loading it."""

    id: str
    source: ModelSource
    variant: str
    path: str | None
    size_bytes: int | None
    bits: int | None = None  # weight bits: 32 / 16 for dense float32 / half weights
    group_size: int | None = None
    dtype: str | None = None  # float32, float16, bfloat16: dense weights, or quantized ones' scales
    context_length: int | None = None  # tokens of prompt + reply it holds (None: unknown until loaded)
    loaded: bool = False
    memory_gb: float | None = None
    description: str = ""
    load_s: float | None = None  # how long the current load took (None when not loaded)
    reasoning: bool | None = None  # its template has a thinking section (None: unknown until loaded)
    tool_dialect: str | None = None  # mlx-lm's parser of the tool calls its template asks for


@dataclass(frozen=True)
class MemoryInfo:
    """MLX allocator figures plus process and system memory, all in GB (1e9 bytes)."""

    active_gb: float
    peak_gb: float
    cache_gb: float
    process_rss_gb: float
    system_total_gb: float
    system_available_gb: float
    budget_gb: float
    loaded_models_gb: float


@dataclass(frozen=True)
class TokenComparison:
    """Next-token predictions of a model vs a reference over one token window, per
    position (len(ids) - 1 of them, teacher-forced on the same ids): each model's
    negative log-likelihood of the true next token, KL(reference || model) of the full
    next-token distributions, and each model's top-1 token."""

    reference_nll: tuple[float, ...]
    nll: tuple[float, ...]
    kl: tuple[float, ...]
    reference_top1: tuple[int, ...]
    top1: tuple[int, ...]
