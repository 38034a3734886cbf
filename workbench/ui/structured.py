"""The chat tab's JSON schema box (a schema the next replies must follow) and the panel showing a
finished reply's parsed object. Knows Gradio and engine types; no HTTP formats."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import gradio as gr

from workbench.engine import Constraint, GenerationStats, InvalidRequestError

# Names the schema in error messages, and tells a schema error from the engine's others.
SCHEMA_PARAM = "JSON schema"
STOPPED = "Stopped: the reply is not complete JSON."
EXAMPLE = '{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}'

# What a reply leaves for the panel: {"parsed": object} or {"error": message}; None or {}
# leave the panel as it is.
Outcome = dict[str, Any] | None


@dataclass(frozen=True)
class SchemaControls:
    """The schema widgets; `inputs` is their order in an event's inputs."""

    schema: gr.Textbox
    strict: gr.Checkbox
    status: gr.Markdown
    parsed: gr.JSON

    @property
    def inputs(self) -> list[gr.components.Component]:
        return [self.schema, self.strict]

    def reset_on(self, trigger: Any) -> None:
        """On `trigger` (an event listener such as button.click), the panel empties and
        the status describes the schema again."""
        trigger(
            describe_schema, self.inputs, [self.status, self.parsed], queue=False, api_visibility="private"
        )

    def show_after(self, event: Any, outcome: gr.State) -> None:
        """When `event` (a reply) ends, with or without an error, show its `outcome`."""
        event.then(show_outcome, [outcome], [self.status, self.parsed], queue=False, api_visibility="private")


def schema_controls(prefix: str) -> SchemaControls:
    """The "JSON schema" accordion: the schema box and strict switch beside the parsed
    panel; element ids start with `prefix` (chat-schema, chat-schema-strict, chat-parsed)."""
    with gr.Accordion("JSON schema", open=False, elem_id=f"{prefix}-schema-box"), gr.Row():
        with gr.Column(scale=1):
            schema = gr.Textbox(
                label="Schema the replies must follow (empty = free text)",
                placeholder=EXAMPLE,
                lines=6,
                max_lines=20,
                elem_id=f"{prefix}-schema",
            )
            strict = gr.Checkbox(
                value=True,
                label="Strict: objects allow no keys beyond their properties",
                elem_id=f"{prefix}-schema-strict",
            )
            status = gr.Markdown(elem_id=f"{prefix}-schema-status")
        parsed = gr.JSON(label="Parsed reply", scale=1, elem_id=f"{prefix}-parsed")
    controls = SchemaControls(schema, strict, status, parsed)
    controls.reset_on(schema.change)
    return controls


def read_schema(text: str | None, strict: bool) -> Constraint | None:
    """The constraint for the schema box's text (None when it is empty); an
    InvalidRequestError naming SCHEMA_PARAM when it is not JSON or not a schema object.
    Whether llguidance can enforce it, the engine says when the reply starts."""
    if not text or not text.strip():
        return None
    try:
        schema = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRequestError(f"{SCHEMA_PARAM}: not valid JSON ({exc})", param=SCHEMA_PARAM) from exc
    return Constraint.json_schema(schema, SCHEMA_PARAM, strict=bool(strict))


def schema_error(exc: BaseException | None) -> str | None:
    """The message of `exc` when it is about the schema (the box or the engine's check)."""
    if isinstance(exc, InvalidRequestError) and exc.param == SCHEMA_PARAM:
        return str(exc)
    return None


def describe_schema(text: str | None, strict: bool) -> tuple[str, None]:
    """(status, an empty parsed panel): what the schema box holds. Empty means free text;
    a box that is not a schema says so as it is typed, before anything is sent."""
    try:
        constraint = read_schema(text, strict)
    except InvalidRequestError as exc:
        return warning(str(exc)), None
    if constraint is None:
        return "", None
    return "Replies follow this schema (enforced token by token).", None


def outcome_of(text: str, stats: GenerationStats) -> Outcome:
    """The panel's outcome for a finished constrained reply."""
    try:
        return {"parsed": json.loads(text)}
    except ValueError:
        if stats.finish_reason == "cancelled":
            return {"error": STOPPED}
        if stats.finish_reason == "length":
            return {"error": "The reply reached Max tokens before its JSON was complete: raise Max tokens."}
        return {"error": f"The reply is not complete JSON (finish reason: {stats.finish_reason})."}


def show_outcome(outcome: Outcome) -> tuple[Any, Any]:
    """(status, parsed panel) once a reply has ended."""
    if not outcome:
        return gr.update(), gr.update()
    if "error" in outcome:
        return warning(outcome["error"]), None
    return "The reply parsed as JSON (right) and follows the schema.", outcome["parsed"]


def warning(message: str) -> str:
    return f"⚠️ **{message}**"
