"""What the OpenAI and Anthropic APIs share: the request base and the checks both make, sampling
defaults into SamplingParams, tool_choice and its constraint, stop strings, the `timings`
extension and `omitted` reply fields. Knows neither API's field names, and no HTTP."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from api.errors import ApiError
from workbench.engine import Chunk, Completion, Constraint, GenerationStats, SamplingParams
from workbench.engine.kv_quant import KVQuant
from workbench.engine.speculation import Speculation
from workbench.engine.structured.tools import CallSplitter, ToolSpec, forced, parse_calls, tool_constraint
from workbench.engine.types import MAX_STOP_STRINGS

log = logging.getLogger(__name__)

DEFAULT_TEMPERATURE = 1.0  # OpenAI's and Anthropic's documented default; send 0 for greedy

# ---- requests -------------------------------------------------------------------


class WireModel(BaseModel):
    """Accepts unknown fields (clients send vendor extras) so they can be logged."""

    model_config = ConfigDict(extra="allow")

    def unknown_fields(self, prefix: str = "") -> list[str]:
        """Dotted names of unknown fields, nested models (messages, parts) included."""
        found = [f"{prefix}{k}" for k in sorted(self.model_extra or {})]
        for name in type(self).model_fields:
            value = getattr(self, name)
            items = value if isinstance(value, list) else [value]
            for i, item in enumerate(items):
                if isinstance(item, WireModel):
                    where = f"{prefix}{name}.{i}." if isinstance(value, list) else f"{prefix}{name}."
                    found += item.unknown_fields(where)
        return found

    def log_unknown(self, where: str) -> None:
        if unknown := self.unknown_fields():
            log.info("%s: ignoring unknown fields %s", where, unknown)


class SpeculativeConfig(WireModel):
    """The `speculative` extension (engine.speculation.Speculation)."""

    mode: str | None = Field(
        None,
        description="off, prompt_lookup or draft (default: draft with a draft_model, else prompt_lookup)",
    )
    draft_tokens: Any = Field(None, description="tokens drafted per step, 1-32 (8 / 3)")
    draft_model: str | None = Field(None, description="mode draft: a registered model, same tokenizer")


class KVCacheFields(WireModel):
    """The KV-cache extension (mlx-lm's names; engine.kv_quant.KVQuant checks the values)."""

    kv_bits: int | None = Field(
        None,
        description="extension: store this request's KV cache quantized, 2-8 bits (16: float16; 0: the "
        "model's precision); default: the server's WORKBENCH_KV_BITS. Such requests decode outside the batch",
    )
    kv_group_size: int | None = Field(None, description="extension: KV quantization group size, 32/64/128")
    quantized_kv_start: int | None = Field(
        None, description="extension: quantize the KV cache once the context passes this many tokens"
    )

    def kv(self) -> KVQuant | None:
        """The engine's KVQuant for these fields (None: the server default throughout)."""
        return KVQuant.coerce(
            {
                "kv_bits": self.kv_bits,
                "kv_group_size": self.kv_group_size,
                "quantized_kv_start": self.quantized_kv_start,
            }
        )


# Loose on the wire: Speculation checks the values and names the field that is wrong.
SpeculativeField = SpeculativeConfig | bool | str | None
SPECULATIVE_HELP = (
    "extension: speculative decoding for this request ({mode, draft_tokens, draft_model}, a mode "
    "name, or true for prompt_lookup); default: the server's WORKBENCH_SPECULATIVE"
)


def speculation(value: SpeculativeField) -> Speculation | None:
    """The engine's Speculation for a request's `speculative` field (None: the server default)."""
    if isinstance(value, SpeculativeConfig):
        return Speculation.coerce(value.model_dump(exclude_none=True))
    return Speculation.coerce(value)


def unsupported(param: str, detail: str) -> ApiError:
    """A known parameter we do not honour: a 400 that names it."""
    return ApiError(400, f"{param}: {detail}", param=param, code="unsupported_parameter")


def no_effect(where: str, what: str) -> None:
    """A parameter accepted without effect (agents send some with every request): logged."""
    log.info("%s: %s accepted without effect", where, what)


# ---- sampling -------------------------------------------------------------------


def sampling_params(temperature: float | None, top_p: float | None, **rest: Any) -> SamplingParams:
    """Engine sampling for a request: the APIs' default temperature when unset, top_p 0 as
    greedy decoding (only the most likely token survives); the `rest` (top_k, seed,
    penalties, logit_bias) as given, those unset (None) at the engine's defaults."""
    temperature = DEFAULT_TEMPERATURE if temperature is None else temperature
    top_p = 1.0 if top_p is None else top_p
    if top_p == 0.0:
        temperature, top_p = 0.0, 1.0
    given = {k: v for k, v in rest.items() if v is not None}
    return SamplingParams(temperature=temperature, top_p=top_p, **given)


# ---- reasoning ------------------------------------------------------------------

# A reasoning effort's bound on the thinking section, in tokens (None: no bound beyond the
# reply's own length); "none" skips the section where the template allows it.
EFFORT_BUDGETS: dict[str, int | None] = {
    "minimal": 256,
    "low": 1024,
    "medium": 4096,
    "high": None,
    "xhigh": None,
}
EFFORTS = ("none", *EFFORT_BUDGETS)


def reasoning_plan(effort: str | None, budget: int | None, param: str) -> tuple[bool | None, int | None]:
    """(think, reasoning_budget) for the engine: an explicit `budget` wins, else the effort's;
    for a model without a thinking section both change nothing."""
    if effort is None:
        return None, budget
    if effort not in EFFORTS:
        raise ApiError(400, f"{param}: {effort!r} is not one of {', '.join(EFFORTS)}", param=param)
    if effort == "none":
        return False, None
    return None, budget if budget is not None else EFFORT_BUDGETS[effort]


# ---- stop strings ---------------------------------------------------------------


def stop_strings(stop: str | Sequence[str] | None) -> tuple[str, ...]:
    if stop is None:
        return ()
    return (stop,) if isinstance(stop, str) else tuple(stop)


def check_stops(
    stops: Sequence[str], param: str, *, max_length: int | None = None, empty: bool = True
) -> None:
    """At most MAX_STOP_STRINGS strings, each at most `max_length` characters and (unless
    `empty`) none empty; a 400 naming `param` otherwise."""
    if len(stops) > MAX_STOP_STRINGS:
        raise ApiError(400, f"{param}: at most {MAX_STOP_STRINGS} strings", param=param)
    if max_length is not None and any(len(s) > max_length for s in stops):
        raise ApiError(400, f"{param}: each string at most {max_length} characters", param=param)
    for i, s in enumerate(stops):
        if not empty and s == "":
            raise ApiError(400, f"{param}.{i}: must not be empty", param=f"{param}.{i}")


# ---- tools ----------------------------------------------------------------------

# What a request's tool_choice asks for, whichever API's words it came in.
ChoiceMode = Literal["none", "auto", "required", "named"]


@dataclass(frozen=True)
class ToolUse:
    """A request's tools and tool_choice in the engine's terms: the tools the model may
    call (none when the choice is 'none'), the choice ('auto', 'required' or the name of
    the one tool to call) and whether several calls may come in one reply."""

    tools: tuple[ToolSpec, ...] = ()
    choice: str = "auto"
    parallel: bool = True

    def constraint(self, reply_format: Constraint | None = None) -> Constraint | None:
        """The grammar the reply follows: with tools, calls or (under 'auto') an answer that
        follows `reply_format`'s schema; without, `reply_format`'s, if any."""
        if not self.tools:
            return reply_format
        answer = None
        if reply_format is not None and reply_format.kind == "json_schema":
            answer = json.loads(reply_format.source)
        return tool_constraint(self.tools, self.choice, parallel=self.parallel, answer=answer)


def tool_use(
    tools: Sequence[ToolSpec], mode: ChoiceMode, name: str | None = None, *, parallel: bool = True
) -> ToolUse:
    """`mode` 'named' forces the tool `name` (a tool named like a mode cannot be: a 400)."""
    if mode == "none":
        return ToolUse((), "none", parallel)
    return ToolUse(tuple(tools), forced(str(name)) if mode == "named" else mode, parallel)


def offers_tools(tools: Sequence[Any] | None, mode: ChoiceMode) -> bool:
    """Whether the model may call any tool."""
    return bool(tools) and mode != "none"


def check_tool_choice(tools: Sequence[Any] | None, mode: ChoiceMode) -> None:
    """A choice that must call a tool needs tools to call."""
    if mode in ("required", "named") and not tools:
        raise ApiError(400, "tool_choice: needs tools", param="tool_choice")


def reply_calls(result: Completion, tools: Sequence[ToolSpec]) -> tuple[str, list[Any]]:
    """(text, calls) of a finished reply: calls the engine parsed from the template's own
    format, or the JSON-line calls of the text (structured/tools.py)."""
    if result.calls:
        return result.text, list(result.calls)
    return parse_calls(result.text, tools) if tools else (result.text, [])


def call_events(split: CallSplitter, chunk: Chunk, native: bool) -> list[tuple[Any, ...]]:
    """A chunk's text and call events: the engine's own (calls in the template's format) once
    it parsed one, else the JSON-line splitter's (whatever it held back is text then)."""
    if not (native or chunk.calls):
        return split.feed(chunk.text) + (split.finish(chunk.stats.at_eos) if chunk.stats else [])
    held = [] if native else split.finish(complete=False)
    return [*held, *([("text", chunk.text)] if chunk.text else []), *chunk.calls]


# ---- replies --------------------------------------------------------------------


def _is_none(value: object) -> bool:
    return value is None


def omitted(description: str | None = None) -> Any:
    """A reply field left out when None (annotate it `T | SkipJsonSchema[None]`: documented
    as optional, never null)."""
    return Field(None, exclude_if=_is_none, description=description)


def _omitted_are_optional(schema: dict[str, Any], model: type[BaseModel]) -> None:
    gone = {name for name, f in model.model_fields.items() if f.exclude_if is not None}
    if "required" in schema:
        schema["required"] = [name for name in schema["required"] if name not in gone]


class ReplyModel(BaseModel):
    """Base of every reply body and stream event: each field is always sent, so documented
    as required (defaults included), but the `omitted` ones."""

    model_config = ConfigDict(
        json_schema_serialization_defaults_required=True, json_schema_extra=_omitted_are_optional
    )


class CacheMissInfo(ReplyModel):
    """Why a prompt reused fewer cached tokens than the cache knew of (the cache explainer)."""

    reason: Literal["off", "no_entry", "evicted", "diverged"] = Field(
        description="off: cache off; no_entry: nothing cached shares the prompt's start; evicted: an "
        "entry that did was dropped (by `bound`); diverged: the nearest entry differs at token `at`"
    )
    at: int | None = Field(description="first token index the cache could not supply (diverged, evicted)")
    bound: str = Field(description="evicted: the bound that dropped the entry, e.g. max entries (10)")
    cached_text: str = Field(description="diverged: a few tokens either side of `at`, as cached")
    prompt_text: str = Field(description="diverged: the same tokens of the prompt")


class Timings(ReplyModel):
    """The `timings` extension: what the engine measured (seconds, tokens per second, GB of
    1e9 bytes), for one choice or summed over several; the engine may report more."""

    model_config = ConfigDict(extra="allow")

    model: str
    prompt_tokens: int
    generation_tokens: int
    ttft_s: float
    prompt_tps: float
    generation_tps: float
    peak_memory_gb: float
    total_s: float
    queue_s: float
    load_s: float | None
    seed: int | None
    concurrent_streams: int = Field(description="most generations that shared the engine (1: alone)")
    cached_tokens: int = Field(description="prompt tokens the prompt cache supplied")
    cache_miss: CacheMissInfo | None = Field(
        description="why the prompt cache did not supply more (None: all it knew of this prompt)"
    )
    batch_size: int = Field(description="most generations decoded together with this one")
    reasoning_tokens: int = Field(description="of generation_tokens, those inside a thinking section")
    speculative: str = Field(description="the speculation that ran ('' none), e.g. prompt_lookup:8")
    draft_tokens: int = Field(description="tokens drafted (speculative decoding)")
    accepted_tokens: int = Field(description="of draft_tokens, those the model kept")
    decode_steps: int = Field(description="forward passes that decoded (speculative decoding; 0 without)")
    acceptance_rate: float | None = Field(description="accepted_tokens / draft_tokens (None: no drafts)")
    tokens_per_step: float | None = Field(description="generation_tokens / decode_steps (None: none ran)")
    kv_cache: str = Field(description="the KV cache's storage ('' the model's precision; f16, q8, q4:g32)")
    kv_cache_gb: float = Field(description="the KV cache's size at the end (0.0: not measured)")
    choices: int | SkipJsonSchema[None] = omitted("how many choices these figures sum (when several)")


def timings(stats: Sequence[GenerationStats]) -> Timings:
    """For several choices: tokens summed, tok/s over the summed time, TTFT of the first
    choice, the highest peak memory."""
    first = stats[0]
    out = first.as_dict()
    if len(stats) > 1:
        decode_s = sum((s.generation_tokens - 1) / s.generation_tps for s in stats if s.generation_tps > 0)
        decoded = sum(s.generation_tokens - 1 for s in stats if s.generation_tps > 0)
        ttft_s = sum(s.ttft_s for s in stats)
        out |= {
            "prompt_tokens": sum(s.prompt_tokens for s in stats),
            "generation_tokens": sum(s.generation_tokens for s in stats),
            "prompt_tps": sum(s.prompt_tokens for s in stats) / ttft_s if ttft_s > 0 else 0.0,
            "generation_tps": decoded / decode_s if decode_s > 0 else 0.0,
            "peak_memory_gb": max(s.peak_memory_gb for s in stats),
            "total_s": sum(s.total_s for s in stats),
            "concurrent_streams": max(s.concurrent_streams for s in stats),
            "choices": len(stats),
        }
        counts = ("draft_tokens", "accepted_tokens", "decode_steps")
        out |= {k: sum(getattr(s, k) for s in stats) for k in counts}
    drafted, steps = out["draft_tokens"], out["decode_steps"]
    out["acceptance_rate"] = out["accepted_tokens"] / drafted if drafted else None
    out["tokens_per_step"] = out["generation_tokens"] / steps if steps else None
    # Each API reports why the reply ended in its own fields, not in timings.
    out.pop("finish_reason", None)
    out.pop("stop_sequence", None)
    return Timings(**out)
