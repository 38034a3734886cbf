"""A request's prompt as the model sees it: chat messages through the template (tools, prefill,
the thinking section's switch) or raw text / ids, with the tool dialect and thinking budget."""

from __future__ import annotations

from typing import Any

from jinja2 import TemplateError

from workbench.engine.errors import InvalidRequestError
from workbench.engine.models.registry import LoadedModel
from workbench.engine.reasoning import ThinkBudget, thinking_of
from workbench.engine.types import Constraint, GenerationRequest


def render_prompt(
    tokenizer: Any, request: GenerationRequest, *, constrained: bool | None = None
) -> list[int]:
    """Token ids for the request: chat messages through the model's template, a raw
    prompt through the tokenizer, or the given ids."""
    if request.prompt_ids is not None:
        return list(request.prompt_ids)
    if request.prompt is not None:
        return list(tokenizer.encode(request.prompt))
    assert request.messages is not None
    if not getattr(tokenizer, "has_chat_template", False):
        raise InvalidRequestError(
            "this model has no chat template; send a raw prompt instead of messages",
            param="messages",
        )
    messages = [{"role": m.role, "content": m.content} for m in request.messages]
    # A constrained reply is the answer itself: templates that can skip their thinking do.
    if constrained is None:
        constrained = request.constraint is not None
    skip = request.think is False or constrained
    options = {"enable_thinking": False} if skip and getattr(tokenizer, "has_thinking", False) else {}
    try:
        if request.tools:
            from workbench.engine.structured.tools import with_tools

            ids = with_tools(tokenizer, messages, request.tools, request.tool_choice, **options)
        else:
            ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, **options)
    except TemplateError as exc:
        raise InvalidRequestError(
            f"the chat template rejected the messages: {exc}", param="messages"
        ) from exc
    if isinstance(ids, dict) or hasattr(ids, "input_ids"):
        ids = ids["input_ids"]
    prefill = tokenizer.encode(request.prefill, add_special_tokens=False) if request.prefill else []
    return [*ids, *prefill]


def prompt_of(
    lm: LoadedModel, request: GenerationRequest
) -> tuple[list[int], str | None, Constraint | None, tuple[str, str, bool] | None, ThinkBudget | None]:
    """The prompt ids exactly as the generation sees them, with what decided them: the native
    tool dialect (if any), the constraint that applies, the thinking markers and budget."""
    native = native_dialect(lm, request)
    constraint = None if native else request.constraint
    prompt = render_prompt(lm.tokenizer, request, constrained=constraint is not None)
    if not prompt:
        raise InvalidRequestError("the prompt encodes to no tokens", param="prompt")
    thinking, budget = _thinking(lm.tokenizer, prompt, request, constraint)  # may close it in the prompt
    return prompt, native, constraint, thinking, budget


def native_dialect(lm: LoadedModel, request: GenerationRequest) -> str | None:
    """The template's own tool-call dialect when a request offers tools under 'auto' to a model
    whose template renders them (Qwen2.5 / Hermes, Mistral, ...): the model answers in its own
    format, unconstrained, and mlx-lm's parser reads the calls. 'required' or a named tool
    keep the JSON-line grammar (structured/tools.py), which guarantees the calls' shape."""
    auto = request.tools and request.tool_choice == "auto"
    if not auto or request.constraint is None or request.constraint.param != "tools":
        return None
    from workbench.engine.models.registry import tool_dialect
    from workbench.engine.structured.tools import renders_tools

    dialect = tool_dialect(lm.tokenizer)
    if dialect is None:
        return None
    if lm.renders_tools is None:
        lm.renders_tools = renders_tools(lm.tokenizer)
    return dialect if lm.renders_tools else None


def _thinking(
    tokenizer: Any, prompt: list[int], request: GenerationRequest, constraint: Constraint | None
) -> tuple[tuple[str, str, bool] | None, ThinkBudget | None]:
    """The thinking markers (and whether the prompt left the section open) and the budget
    processor of a model whose template has a thinking section; (None, None) otherwise. A
    constrained or tool-calling reply never starts inside the section: the prompt closes it."""
    thinking = thinking_of(tokenizer, prompt)
    if thinking is None:
        return None, None
    start, end, opened = thinking
    if opened and (constraint is not None or request.think is False):
        prompt.extend(tokenizer.think_end_tokens)
        opened = False
    budget = ThinkBudget(
        tuple(tokenizer.think_start_tokens),
        tuple(tokenizer.think_end_tokens),
        request.reasoning_budget,
        open=opened,
    )
    return (start, end, opened), budget
