"""Models tab: every registered model with size, variant and state; load and unload with live
memory; import a GGUF file or MLX folder by path; the hub panel. Knows engine types and Gradio."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from workbench.config import Settings
from workbench.engine import Engine, ModelInfo
from workbench.ui.common import (
    engine_event,
    memory_markdown,
    model_choices,
    model_picker,
    picked,
    user_errors,
)
from workbench.ui.hub_panel import build_hub_panel

HEADERS = ["id", "source", "variant", "bits", "size (MB)", "loaded", "memory (GB)", "description"]
MEMORY_REFRESH_S = 2.0


def model_rows(models: list[ModelInfo]) -> list[list[Any]]:
    return [
        [
            m.id,
            m.source,
            m.variant,
            m.bits if m.bits is not None else "",
            round(m.size_bytes / 1e6, 1) if m.size_bytes else "",
            "yes" if m.loaded else "no",
            round(m.memory_gb, 3) if m.memory_gb is not None else "",
            m.description,
        ]
        for m in models
    ]


def build_models_tab(engine: Engine, settings: Settings, pickers: list[gr.Dropdown]) -> tuple[Any, list[Any]]:
    """Widgets and events of the Models tab (call inside a gr.Tab). `pickers` (the other
    tabs' model dropdowns) get the new list after a load, unload or import. Returns the
    page-load handler and its outputs."""
    memory = gr.Markdown(elem_id="models-memory")
    table = gr.Dataframe(
        headers=HEADERS,
        value=[],
        interactive=False,
        wrap=True,
        label="Registered models",
        elem_id="models-table",
    )
    with gr.Row():
        target = model_picker("Model", scale=3, elem_id="models-target")
        load = gr.Button("Load", variant="primary", scale=1, elem_id="models-load")
        unload = gr.Button("Unload", scale=1, elem_id="models-unload")
        refresh = gr.Button("Refresh", scale=1, elem_id="models-refresh")
    status = gr.Markdown(elem_id="models-status")
    with gr.Row():
        path = gr.Textbox(
            label="Import a GGUF file or a local MLX folder (a path on this machine)",
            placeholder="/path/to/model.gguf or /path/to/mlx-model-folder",
            scale=4,
            elem_id="models-path",
        )
        import_ = gr.Button("Import", scale=1, elem_id="models-import")
    timer = gr.Timer(MEMORY_REFRESH_S)

    def overview(message: str | None = None) -> list[Any]:
        """Table, memory, pickers (choices only: each keeps its value) and status."""
        models = engine.models()
        choices = model_choices(models)
        out = [model_rows(models), memory_markdown(engine.memory()), gr.update(choices=choices)]
        out += [gr.update(choices=choices) for _ in pickers]
        return [*out, message if message is not None else gr.update()]

    outputs = [table, memory, target, *pickers, status]

    def do_load(model_id: str | None, progress: gr.Progress = gr.Progress()) -> list[Any]:  # noqa: B008
        if not picked(model_id):
            raise gr.Error("Pick a model to load.", print_exception=False)
        progress(0, desc=f"Loading {model_id} (a GGUF is converted to MLX on first use)…")
        with user_errors():
            info = engine.load(model_id)
            return overview(f"Loaded **{info.id}** ({info.memory_gb or 0:.3f} GB).")

    def do_unload(model_id: str | None) -> list[Any]:
        if not picked(model_id):
            raise gr.Error("Pick a model to unload.", print_exception=False)
        with user_errors():
            info = engine.model_info(model_id)
            done = engine.unload(info.id)
            return overview(f"Unloaded **{info.id}**." if done else f"**{info.id}** was not loaded.")

    def do_import(raw: str) -> list[Any]:
        where = Path((raw or "").strip()).expanduser()
        if not str(raw or "").strip():
            raise gr.Error("Give the path of a .gguf file or an MLX model folder.", print_exception=False)
        if not where.exists():
            raise gr.Error(f"{where}: no such file or folder on this machine.", print_exception=False)
        with user_errors():
            info = engine.model_info(str(where))
            return overview(
                f"Registered **{info.id}** ({info.source}, {info.variant}). Load it here, or pick it in Chat "
                "or Compare (it loads on first use)."
            )

    def on_load() -> list[Any]:
        with user_errors():
            return overview()

    load.click(do_load, [target], outputs, **engine_event(api_visibility="private"))
    unload.click(do_unload, [target], outputs, **engine_event(api_visibility="private"))
    import_.click(do_import, [path], outputs, **engine_event(api_visibility="private"))
    refresh.click(on_load, None, outputs, api_visibility="private")
    build_hub_panel(engine, overview, outputs)
    # Memory figures only; they come from the engine between generation steps. While a
    # benchmark holds the engine they would wait for its end, so the tick skips instead.
    timer.tick(
        lambda: gr.update() if engine.exclusive_held else memory_markdown(engine.memory()),
        None,
        [memory],
        show_progress="hidden",
        api_visibility="private",
        concurrency_limit=None,
    )
    return on_load, outputs
