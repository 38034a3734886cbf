"""What the OpenAI and Anthropic APIs share: the request base, sampling defaults and their
conversion into SamplingParams, tools and tool_choice in the engine's terms, stop strings,
and the checks both make. Knows neither API's field names, and no HTTP."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from api.errors import ApiError
from workbench.engine import Constraint, SamplingParams
from workbench.engine.structured.tools import ToolSpec, forced, tool_constraint
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
        """The grammar the reply follows: the calls' when tools are offered (they have their
        own format), else `reply_format`'s, if any."""
        if self.tools:
            return tool_constraint(self.tools, self.choice, parallel=self.parallel)
        return reply_format


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
