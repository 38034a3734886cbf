"""Compare tab: one prompt and one sampling to N sides, each its own model; fair (sequential) or
live (interleaved), blind with a vote appended to results/. Knows Gradio and arena, no HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import gradio as gr

from workbench.arena.votes import BlindRound, append_vote, blind_order, side_labels, verdicts
from workbench.config import Settings
from workbench.engine import Engine, GenerationRequest, GenerationStats
from workbench.runs import capture
from workbench.ui.common import (
    SamplingControls,
    SessionCancels,
    chat_messages,
    engine_event,
    interleave,
    model_choices,
    model_picker,
    one_after_another,
    picked,
    read_sampling,
    sampling_controls,
    stats_html,
    stats_line,
    stream_text,
    user_errors,
)

FAIR = "Fair: one side after another (tok/s comparable)"
LIVE = "Live: sides interleave (tok/s not comparable)"
HIDDEN = "stats hidden until you vote"
BLIND_WAIT = "*generating… (blind: the replies appear together when every side has finished)*"
EMPTY = "*(empty reply)*"


@dataclass(frozen=True)
class Side:
    picker: gr.Dropdown
    title: gr.Markdown
    output: gr.Markdown
    stats: gr.Markdown


@dataclass(frozen=True)
class CompareTab:
    pickers: list[gr.Dropdown]
    on_load: tuple[Any, list[Any]]


def _stats_text(stats: GenerationStats | None, live: bool) -> str:
    if stats is None:
        return ""
    warn = "live mode: tok/s not comparable · " if live else ""
    return stats_html(warn + stats_line(stats))


@dataclass(frozen=True)
class CompareWidgets:
    """The Compare tab's widgets its events read and write."""

    prompt: gr.Textbox
    system: gr.Textbox
    mode: gr.Radio
    blind: gr.Checkbox
    sampling: SamplingControls
    columns: list[Side]
    vote_row: gr.Row
    vote_status: gr.Markdown
    pending_vote: gr.State


class CompareActions:
    """What the Compare tab's events do: run the sides (fair or live, blind or not), record
    a blind vote, stop a session's run, fill the pickers on page load."""

    def __init__(self, engine: Engine, settings: Settings, w: CompareWidgets) -> None:
        self.engine, self.results, self.w = engine, settings.results_dir, w
        self.sides = len(w.columns)
        self.labels = side_labels(self.sides)
        self.cancels = SessionCancels()

    async def compare(self, data: dict[Any, Any], request: gr.Request) -> AsyncIterator[dict[Any, Any]]:
        w = self.w
        prompt, system, mode, blind, columns = w.prompt, w.system, w.mode, w.blind, w.columns
        vote_row, vote_status, pending_vote = w.vote_row, w.vote_status, w.pending_vote
        engine, labels, sides, sampling = self.engine, self.labels, self.sides, w.sampling
        # One dict input (Gradio's set-of-inputs form): the number of pickers varies.
        text, system_prompt, hide = data[prompt], data[system], bool(data[blind])
        if not text or not text.strip():
            raise gr.Error("Type a prompt first.", print_exception=False)
        live = data[mode] == LIVE
        with user_errors():
            params, max_tokens, seed = read_sampling([data[c] for c in sampling.inputs])
            # A worker call: off the event loop, which other streams (the API's) share.
            default = await asyncio.to_thread(lambda: engine.default_model)
            wanted = [picked(data[c.picker]) or default for c in columns]
            order = blind_order(sides) if hide else list(range(sides))
            shown = [wanted[i] for i in order]
            messages = chat_messages(system_prompt, [{"role": "user", "content": text}])
            requests = [
                GenerationRequest(messages=messages, model=m, sampling=params, max_tokens=max_tokens)
                for m in shown
            ]
        texts = [""] * sides
        stats: list[GenerationStats | None] = [None] * sides

        def view(i: int) -> dict[Any, Any]:
            col = columns[i]
            if hide:
                # Streaming pace would give the variant away: blind replies appear
                # together, once every side has finished.
                if any(st is None for st in stats):
                    return {col.output: BLIND_WAIT, col.stats: ""}
                return {c.output: texts[j] or EMPTY for j, c in enumerate(columns)} | {
                    c.stats: stats_html(HIDDEN) for c in columns
                }
            done = stats[i] is not None
            return {
                col.output: texts[i] or (EMPTY if done else "…"),
                col.stats: _stats_text(stats[i], live),
            }

        start: dict[Any, Any] = {vote_row: gr.update(visible=False), pending_vote: None, vote_status: ""}
        for i, col in enumerate(columns):
            name = labels[i] if hide else f"{labels[i]} · {shown[i]}"
            start |= {col.title: f"#### {name}", col.output: "", col.stats: ""}
        yield start
        with user_errors(), self.cancels.track(request.session_hash if request else None, sides) as tokens:
            streams = [stream_text(engine, r, t) for r, t in zip(requests, tokens, strict=True)]
            merge = interleave if live else one_after_another
            async with aclosing(merge(streams)) as merged:
                async for i, (so_far, final) in merged:
                    texts[i], stats[i] = so_far, final
                    yield view(i)
        if hide:
            yield {
                vote_row: gr.update(visible=True),
                vote_status: "Which reply is better? Your vote reveals the models.",
                pending_vote: BlindRound(
                    prompt=text,
                    system_prompt=system_prompt or "",
                    models=tuple(shown),
                    picker_order=tuple(order),
                    outputs=tuple(texts),
                    stats=tuple(stats),
                    sampling=params,
                    max_tokens=max_tokens,
                    seed=seed,
                    mode="live" if live else "fair",
                ),
            }

    def vote(self, verdict: str, round_: BlindRound | None) -> dict[Any, Any]:
        w, labels = self.w, self.labels
        columns, vote_row, vote_status, pending_vote = w.columns, w.vote_row, w.vote_status, w.pending_vote
        if round_ is None:
            raise gr.Error("Run a blind comparison first; each one takes one vote.", print_exception=False)
        with user_errors():
            path, rows = append_vote(self.results, round_, verdict, capture(self.engine))
        out: dict[Any, Any] = {vote_row: gr.update(visible=False), pending_vote: None}
        for i, col in enumerate(columns):
            out[col.title] = f"#### {labels[i]} · {round_.models[i]}"
            out[col.stats] = _stats_text(round_.stats[i], round_.mode == "live")
        names = ", ".join(f"{label} = {m}" for label, m in zip(labels, round_.models, strict=True))
        out[vote_status] = f"Vote **{verdict}** saved ({names}) to `{path}` — {rows} vote(s) in the file."
        return out

    def stop_now(self, request: gr.Request) -> None:
        self.cancels.cancel(request.session_hash if request else None)

    def on_load(self) -> list[Any]:
        engine, sides = self.engine, self.sides
        with user_errors():
            models = engine.models()
            default = engine.model_info(engine.default_model)
            choices = model_choices(models)
            others = [m for m in models if m.id != default.id]
        # The default model first, then its own siblings (the same file or package in
        # another variant: the comparison a quantization question starts with).
        others.sort(key=lambda m: (m.source != default.source, m.path != default.path))
        ids = [default.id, *(m.id for m in others)]
        return [gr.update(choices=choices, value=ids[i % len(ids)]) for i in range(sides)]


def build_compare_tab(engine: Engine, settings: Settings, sides: int = 2) -> CompareTab:
    """Widgets and events of the Compare tab for `sides` sides (call inside a gr.Tab)."""
    labels = side_labels(sides)
    prompt = gr.Textbox(label="Prompt (sent to every side)", lines=3, elem_id="compare-prompt")
    system = gr.Textbox(label="System prompt", placeholder="(none)", lines=1, elem_id="compare-system")
    with gr.Row():
        mode = gr.Radio([FAIR, LIVE], value=FAIR, label="Mode", scale=3, elem_id="compare-mode")
        blind = gr.Checkbox(
            label="Blind: shuffle the sides, hide models and stats until I vote",
            scale=2,
            elem_id="compare-blind",
        )
        run = gr.Button("Compare", variant="primary", scale=1, elem_id="compare-run")
        stop = gr.Button("Stop", variant="stop", scale=1, elem_id="compare-stop")
    sampling = sampling_controls("compare", max_tokens=256, open=True)
    columns: list[Side] = []
    with gr.Row(equal_height=False):
        for i, label in enumerate(labels):
            with gr.Column(min_width=240):
                columns.append(
                    Side(
                        picker=model_picker(f"Side {label}", elem_id=f"compare-model-{i}"),
                        title=gr.Markdown(f"#### {label}", elem_id=f"compare-title-{i}"),
                        output=gr.Markdown(min_height=120, container=True, elem_id=f"compare-output-{i}"),
                        stats=gr.Markdown(elem_id=f"compare-stats-{i}"),
                    )
                )
    with gr.Row(visible=False) as vote_row:
        vote_buttons = [
            gr.Button(v if v in labels else v.capitalize(), elem_id=f"vote-{v.replace(' ', '-')}")
            for v in verdicts(sides)
        ]
    vote_status = gr.Markdown(elem_id="vote-status")
    pending_vote = gr.State(None)  # the BlindRound awaiting its vote; never sent to the page
    widgets = CompareWidgets(
        prompt, system, mode, blind, sampling, columns, vote_row, vote_status, pending_vote
    )
    act = CompareActions(engine, settings, widgets)

    side_outputs = [c for col in columns for c in (col.title, col.output, col.stats)]
    ran = run.click(
        act.compare,
        {prompt, system, mode, blind, *(c.picker for c in columns), *sampling.inputs},
        [*side_outputs, vote_row, vote_status, pending_vote],
        show_progress="minimal",
        **engine_event(api_visibility="private"),
    )

    stop.click(
        act.stop_now,
        None,
        None,
        cancels=[ran],
        queue=False,
        api_visibility="private",
    )
    for verdict, button in zip(verdicts(sides), vote_buttons, strict=True):
        button.click(
            lambda round_, v=verdict: act.vote(v, round_),
            [pending_vote],
            [*side_outputs, vote_row, vote_status, pending_vote],
            api_visibility="private",
        )

    return CompareTab(pickers=[c.picker for c in columns], on_load=(act.on_load, [c.picker for c in columns]))
