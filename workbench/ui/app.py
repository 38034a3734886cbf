"""build_ui: the Gradio workbench (Chat, Compare, Arena, Models, Benchmark, Quantize, Fine-tune, Server tabs)
on one Engine, and mount_ui, which serves it inside the FastAPI app. Knows no HTTP wire formats."""

from __future__ import annotations

import logging
import secrets
from typing import Any

import gradio as gr

from workbench import __version__
from workbench.config import Settings
from workbench.engine import Engine
from workbench.monitor import ServerMonitor
from workbench.ui.arena_tab import KEYBOARD_JS, ArenaTab, build_arena_tab
from workbench.ui.bench_tab import build_bench_tab
from workbench.ui.chat_tab import build_chat_tab
from workbench.ui.common import model_choices, user_errors
from workbench.ui.compare_tab import build_compare_tab
from workbench.ui.models_tab import build_models_tab
from workbench.ui.quant_tab import build_quant_tab
from workbench.ui.server_tab import build_server_tab
from workbench.ui.tune_tab import TuneTab, build_tune_tab

log = logging.getLogger(__name__)
UI_PATH = "/ui"
# Gradio's queue looks for new UI events every 1 ms and for progress every 10 ms (50 and 100 ms
# on Windows). In the engine's process that is ~6% of a core, idle or not, taken from BLAS on
# a small CPU; Gradio's Windows intervals: a UI event starts at most 50 ms later.
QUEUE_POLL_S = 0.05
PROGRESS_POLL_S = 0.1
CSS = """
.wb-stats { display: block; font-family: ui-monospace, monospace; font-size: 0.78em; opacity: 0.75; }
"""


def build_ui(
    engine: Engine, settings: Settings, *, compare_sides: int = 2, monitor: ServerMonitor | None = None
) -> gr.Blocks:
    """The workbench UI on `engine`: Chat, Compare (`compare_sides` sides), Arena, Models,
    Benchmark, Quantize, Fine-tune, Server (from `monitor`, the app's; without one the tab
    samples)."""
    with gr.Blocks(title="MLX Workbench", analytics_enabled=False) as demo:
        header = gr.Markdown(f"## MLX Workbench {__version__}", elem_id="wb-header")
        with gr.Tabs() as tabs:
            with gr.Tab("Chat", id="chat", elem_id="tab-chat"):
                chat = build_chat_tab(engine, settings)
            with gr.Tab("Compare", id="compare", elem_id="tab-compare"):
                compare = build_compare_tab(engine, settings, sides=compare_sides)
            with gr.Tab("Arena", id="arena", elem_id="tab-arena"):
                arena = build_arena_tab(engine, settings)
            with gr.Tab("Models", id="models", elem_id="tab-models") as models_tab:
                models_load = build_models_tab(engine, settings, pickers=[*chat.pickers, *compare.pickers])
            with gr.Tab("Benchmark", id="bench", elem_id="tab-bench"):
                bench_load = build_bench_tab(engine, settings)
            with gr.Tab("Quantize", id="quant", elem_id="tab-quant"):
                quant_load = build_quant_tab(engine, settings, pickers=[*chat.pickers, *compare.pickers])
            with gr.Tab("Fine-tune", id="tune", elem_id="tab-tune"):
                tune = build_tune_tab(engine, settings, pickers=[*chat.pickers, *compare.pickers])
            with gr.Tab("Server", id="server", elem_id="tab-server"):
                server_load = build_server_tab(engine, monitor)
        # Loads and unloads from other tabs or the API change the table: refresh on view.
        models_tab.select(models_load[0], None, models_load[1], api_visibility="private")
        open_in_arena(engine, tune, arena, tabs)

        def describe() -> str:
            with user_errors():
                return (
                    f"## MLX Workbench {__version__}\n"
                    f"Engine on **{engine.device}** · BLAS {engine.blas} · default model "
                    f"`{engine.default_model}` · OpenAI-compatible API at `/v1`"
                )

        demo.load(describe, None, [header], api_visibility="private")
        loads = (chat.on_load, compare.on_load, arena.on_load, models_load, bench_load, quant_load)
        loads += (tune.on_load, server_load)
        for fn, outputs in loads:
            demo.load(fn, None, outputs, api_visibility="private")
    demo.queue(default_concurrency_limit=None)
    _poll_less(demo)
    return demo


def _poll_less(demo: gr.Blocks) -> None:
    """The queue's polling intervals set to QUEUE_POLL_S and PROGRESS_POLL_S (gradio has no
    public setting for them; a gradio without these attributes keeps its own)."""
    queue = getattr(demo, "_queue", None)
    if queue is None or not hasattr(queue, "sleep_when_free"):
        log.warning("gradio's queue has no polling interval to set: it keeps its own")
        return
    queue.sleep_when_free = QUEUE_POLL_S
    queue.progress_update_sleep_when_free = PROGRESS_POLL_S


def open_in_arena(engine: Engine, tune: TuneTab, arena: ArenaTab, tabs: gr.Tabs) -> None:
    """The Fine-tune tab's "Open in Arena": the Arena tab's run form with the tuned variant
    and its base as the models and the run's prompt set, open and on screen."""

    def fill(made: tuple[str, str, str] | None) -> list[Any]:
        if not made:
            raise gr.Error("Train a variant first.", print_exception=False)
        base, variant, prompt_set = made
        with user_errors():
            choices = model_choices(engine.models())
        return [
            gr.Tabs(selected="arena"),
            gr.Accordion(open=True),
            gr.update(value=prompt_set) if prompt_set else gr.update(),
            gr.update(value=f"{variant.split('+', 1)[1]}-vs-base"),
            gr.update(choices=choices, value=[base, variant]),
        ]

    outputs = [tabs, arena.run_box, arena.prompts, arena.name, arena.models]
    tune.open_arena.click(fill, [tune.made], outputs, api_visibility="private")


def _theme() -> gr.themes.Theme:
    # System fonts: the default theme fetches web fonts, which an offline machine lacks.
    return gr.themes.Soft(
        font=["ui-sans-serif", "system-ui", "sans-serif"],
        font_mono=["ui-monospace", "Consolas", "monospace"],
    )


def mount_ui(
    app: Any, engine: Engine, settings: Settings, path: str = UI_PATH, *, monitor: ServerMonitor | None = None
) -> None:
    """Serve build_ui(engine, settings) at `path` inside the ASGI app `app`. With an API
    key set, the UI asks for it too (any user name), so the key protects the whole server."""
    key = settings.api_key
    auth = (lambda _user, password: secrets.compare_digest(password or "", key)) if key else None
    gr.mount_gradio_app(
        app,
        build_ui(engine, settings, monitor=monitor),
        path=path,
        auth=auth,
        auth_message="Sign in with any user name and the server's API key." if key else None,
        footer_links=["api"],
        show_error=True,
        ssr_mode=False,
        theme=_theme(),
        css=CSS,
        head=f"<script>{KEYBOARD_JS}</script>",
    )
