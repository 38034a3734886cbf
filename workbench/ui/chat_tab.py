"""Chat tab: one conversation with one model, streamed, a stats line under each reply; Stop,
regenerate, clear, JSON export, an optional JSON schema. Knows engine types and Gradio, no HTTP."""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from workbench.config import Settings
from workbench.engine import Engine, GenerationRequest
from workbench.ui import structured
from workbench.ui.common import (
    SessionCancels,
    chat_messages,
    engine_event,
    model_choices,
    model_picker,
    picked,
    read_sampling,
    sampling_controls,
    sampling_dict,
    stats_html,
    stats_line,
    stream_text,
    user_errors,
)

Turns = list[dict[str, Any]]
QUICK = {"queue": False, "api_visibility": "private"}  # page-only events that skip the queue
STOPPED = "stopped by the user"


def render(turns: Turns) -> list[dict[str, str]]:
    """Chatbot messages: each reply with its stats line underneath."""
    shown = []
    for turn in turns:
        content = turn["content"]
        if turn["role"] == "assistant":
            note = turn.get("note")
            if note:
                content = f"{content}\n\n{stats_html(note)}"
            elif not content:
                content = "…"
        shown.append({"role": turn["role"], "content": content})
    return shown


@dataclass(frozen=True)
class ChatTab:
    pickers: list[gr.Dropdown]
    on_load: tuple[Any, list[Any]]


class ChatActions:
    """What the Chat tab's events do, for one engine. Stop cancels the session's replies in
    the engine (by session hash, and by ticket those still queued), and each reply ends
    itself with its stats; Clear cancels Gradio's events."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.cancels = SessionCancels()

    def post(self, text: str, history: Turns) -> tuple[Any, str, int, list[dict[str, str]]]:
        if not text or not text.strip():
            raise gr.Error("Type a message first.", print_exception=False)
        return "", text, self.cancels.ticket(), render([*history, {"role": "user", "content": text}])

    async def respond(
        self,
        text: str,
        history: Turns,
        in_page: bool,
        ticket: int | None,
        model_id: str | None,
        system_prompt: str,
        temperature: float,
        top_p: float,
        top_k: int,
        min_p: float,
        repetition_penalty: float,
        max_tokens: int,
        seed: int | None,
        json_schema: str | None = None,  # None: optional for gradio_client callers (free text)
        strict: bool = True,
        request: gr.Request | None = None,
    ) -> AsyncIterator[tuple[Any, Turns, Any, structured.Outcome]]:
        values = (temperature, top_p, top_k, min_p, repetition_penalty, max_tokens, seed)
        if not text or not text.strip():
            raise gr.Error("Type a message first.", print_exception=False)
        asked = [*history, {"role": "user", "content": text}]
        reply: dict[str, Any] = {"role": "assistant", "content": "", "note": "", "stats": None}
        done: structured.Outcome = None
        session = request.session_hash if request else None
        try:
            # Tracked from the start: a Stop while the model loads or the reply waits still reaches it.
            with self.cancels.track(session, ticket=ticket) as (token,), user_errors():
                params, max_new, _ = read_sampling(values)
                constraint = structured.read_schema(json_schema, strict)
                req = GenerationRequest(
                    messages=chat_messages(system_prompt, asked),
                    model=picked(model_id),
                    sampling=params,
                    max_tokens=max_new,
                    constraint=constraint,
                )
                reply["sampling"] = sampling_dict(params, max_new)
                # A worker call, so off the event loop; it also fails fast on an unknown model.
                info = await asyncio.to_thread(self.engine.model_info, picked(model_id))
                if not info.loaded:
                    reply["note"] = f"loading {info.id} (a GGUF is converted to MLX on first use)…"
                    yield render([*asked, reply]), [*asked, reply], gr.update(), None
                async with aclosing(stream_text(self.engine, req, token)) as stream:
                    async for so_far, stats in stream:
                        reply = reply | {"content": so_far, "note": ""}
                        if stats is not None:
                            note = stats_line(stats)
                            if stats.finish_reason == "cancelled":
                                note = f"{STOPPED} · {note}"
                            reply |= {"stats": stats.as_dict(), "note": note}
                            if constraint is not None:
                                done = structured.outcome_of(so_far, stats)
                        yield render([*asked, reply]), [*asked, reply], gr.update(), done
        except gr.Error as exc:
            # Nothing is lost: the conversation is as before and the message is back in the box.
            problem = structured.schema_error(exc.__cause__)
            yield render(history), history, text, {"error": problem} if problem else None
            if problem and in_page:
                # The schema box says what is wrong (and a warning pops up); an error would
                # cover the conversation with Gradio's error badge. API callers get the error.
                gr.Warning(problem, title="JSON schema")
                return
            raise

    def prepare_regenerate(self, history: Turns) -> tuple[str, int, Turns, list[dict[str, str]]]:
        last_user = max((i for i, t in enumerate(history) if t["role"] == "user"), default=None)
        if last_user is None:
            raise gr.Error("Nothing to regenerate yet.", print_exception=False)
        ticket = self.cancels.ticket()
        return history[last_user]["content"], ticket, history[:last_user], render(history[: last_user + 1])

    def stop_now(self, ticket: int | None, request: gr.Request) -> None:
        """Cancel the session's replies up to the last one posted (`ticket`), in the engine:
        each then ends by itself, its last chunk saying it was stopped, with its stats.
        (Gradio's own cancel would race that last chunk; only a reply's event writes it.)"""
        self.cancels.cancel(request.session_hash if request else None, upto=ticket)

    def export_json(self, history: Turns, model_id: str | None, system_prompt: str) -> Any:
        if not history:
            raise gr.Error("The conversation is empty.", print_exception=False)
        doc = {
            "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "model": picked(model_id) or self.engine.default_model,
            "system_prompt": system_prompt or "",
            "messages": [
                {k: v for k, v in t.items() if k in ("role", "content", "stats", "sampling")} for t in history
            ],
        }
        folder = Path(tempfile.mkdtemp(prefix="workbench-chat-"))
        path = folder / f"conversation-{time.strftime('%Y%m%d-%H%M%S')}.json"
        path.write_text(json.dumps(doc, indent=2, ensure_ascii=False))
        return gr.update(value=str(path), visible=True)

    def on_load(self) -> Any:
        with user_errors():
            return gr.update(choices=model_choices(self.engine.models()), value=self.engine.default_model)


def build_chat_tab(engine: Engine, settings: Settings) -> ChatTab:
    """Widgets and events of the Chat tab (call inside a gr.Tab)."""
    act = ChatActions(engine)
    with gr.Row():
        model = model_picker("Model", elem_id="chat-model", scale=3)
        system = gr.Textbox(
            label="System prompt", placeholder="(none)", lines=1, scale=5, elem_id="chat-system"
        )
    chatbot = gr.Chatbot(label="Conversation", height=460, elem_id="chat-log")
    turns = gr.State([])
    pending = gr.Textbox(visible=False)  # the message being answered (an API input too)
    ticket = gr.State(None)  # the last posted message's number, for Stop
    with gr.Row():
        message = gr.Textbox(
            placeholder="Message (Enter sends, Shift+Enter starts a new line)",
            show_label=False,
            lines=1,
            max_lines=8,
            scale=8,
            elem_id="chat-input",
        )
        send = gr.Button("Send", variant="primary", scale=1, elem_id="chat-send")
        stop = gr.Button("Stop", variant="stop", scale=1, elem_id="chat-stop")
    with gr.Row():
        regenerate = gr.Button("Regenerate", size="sm", elem_id="chat-regenerate")
        clear = gr.Button("Clear", size="sm", elem_id="chat-clear")
        export = gr.Button("Export JSON", size="sm", elem_id="chat-export")
    exported = gr.File(label="Conversation (JSON)", visible=False, elem_id="chat-export-file")
    schema = structured.schema_controls("chat")
    outcome = gr.State(None)  # for the schema panel: what the last reply came to
    sampling = sampling_controls("chat")

    reply_settings = [*sampling.inputs, *schema.inputs]

    def answer(in_page: bool, **event: Any) -> dict[str, Any]:
        return dict(
            fn=act.respond,
            inputs=[pending, turns, gr.State(in_page), ticket, model, system, *reply_settings],
            outputs=[chatbot, turns, message, outcome],  # States are not among the API's outputs
            show_progress="minimal",
            **engine_event(**event),
        )

    posted = [
        trigger(
            act.post,
            [message, turns],
            [message, pending, ticket, chatbot],
            queue=False,
            api_visibility="private",
        )
        for trigger in (message.submit, send.click)
    ]
    replies = [p.success(**answer(True, api_visibility="private")) for p in posted]
    replies.append(
        regenerate.click(
            act.prepare_regenerate,
            [turns],
            [pending, ticket, turns, chatbot],
            queue=False,
            api_visibility="private",
        ).success(**answer(True, api_visibility="private"))
    )
    # gradio_client's "/chat": the same reply, on a button the page never shows (no ticket:
    # its callers stop it with their job's cancel, which closes the stream).
    replies.append(gr.Button(visible=False).click(**answer(False, api_name="chat")))
    # The schema panel: cleared when a reply starts (no stale object), filled when it ends.
    for trigger in (message.submit, send.click, regenerate.click, clear.click):
        schema.reset_on(trigger)
    for reply in replies:
        schema.show_after(reply, outcome)
    # No Gradio cancel: the reply's own last chunk says "stopped" (and the schema panel
    # shows its outcome), so nothing arrives after it.
    stop.click(act.stop_now, [ticket], None, queue=False, api_visibility="private")
    clear.click(
        lambda: ([], [], "", gr.update(value=None, visible=False)),
        outputs=[turns, chatbot, pending, exported],
        cancels=replies,
        queue=False,
        api_visibility="private",
    )
    chatbot.clear(lambda: [], None, [turns], queue=False, api_visibility="private")  # its trash icon
    export.click(act.export_json, [turns, model, system], [exported], api_visibility="private")

    return ChatTab(pickers=[model], on_load=(act.on_load, [model]))
