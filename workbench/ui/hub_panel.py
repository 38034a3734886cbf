"""The Models tab's hub panel: search the Hugging Face hub (MLX repos, GGUF repos to import), download
as an explicit action with progress and cancel, the local cache with sizes and delete. Gradio only."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import gradio as gr

from workbench.engine import (
    DownloadProgress,
    Engine,
    HubModel,
    cached_models,
    fits,
    repo_files,
    search_models,
)
from workbench.ui.common import engine_event, user_errors

RESULT_HEADERS = ["repo", "size (MB)", "memory here (GB)", "fits the budget", "downloads", "likes", "updated"]
CACHE_HEADERS = ["repo", "on disk (MB)", "state", "loads as"]
PROGRESS_REFRESH_S = 1.0
KINDS = {"MLX": "mlx", "GGUF (import)": "gguf"}


def result_rows(results: list[HubModel], engine: Engine) -> list[list[Any]]:
    status = engine.status()
    budget, loaded = (status.memory.budget_gb, status.memory.loaded_models_gb) if status else (0.0, 0.0)
    return [
        [
            r.id,
            round(r.size_bytes / 1e6, 1) if r.size_bytes else "",
            round(r.memory_bytes / 1e9, 3) if r.memory_bytes else "",
            "pick a .gguf file"
            if r.gguf and r.memory_bytes is None
            else fits(r.memory_bytes, budget, loaded),
            r.downloads,
            r.likes,
            r.updated,
        ]
        for r in results
    ]


def cache_rows() -> list[list[Any]]:
    rows = []
    for c in cached_models():
        state = (
            "complete"
            if c.complete
            else f"partial: {c.partial_bytes / 1e6:.1f} MB (download again to resume)"
        )
        kind = ", ".join(filter(None, ["MLX folder" if c.mlx else "", *c.gguf_files])) or "-"
        rows.append([c.repo, round(c.size_bytes / 1e6, 1), state, kind])
    return rows


def progress_html(downloads: list[DownloadProgress]) -> str:
    """One bar and line per download (latest first)."""
    items = []
    for p in downloads:
        bar = f'<progress value="{p.done_bytes}" max="{max(p.total_bytes, 1)}"></progress>'
        items.append(
            f'<div class="wb-download" data-state="{p.state}">{bar} {html.escape(p.describe())}</div>'
        )
    return "".join(items) or "<div class='wb-download'>No downloads yet.</div>"


class HubActions:
    """The hub panel's event handlers on one engine; `refresh_models(message)` gives new
    values for the Models tab's outputs (`n_model_outputs` of them)."""

    def __init__(
        self, engine: Engine, refresh_models: Callable[[str | None], list[Any]], n_model_outputs: int
    ) -> None:
        self.engine = engine
        self.refresh_models = refresh_models
        self.n = n_model_outputs

    def search(self, text: str, kind_label: str) -> list[list[Any]]:
        float32 = self.engine.device == "cpu"
        try:
            found = search_models(text or "", KINDS.get(kind_label, "mlx"), float32=float32)  # type: ignore[arg-type]
        except Exception as exc:
            raise gr.Error(f"could not search the hub: {exc}", print_exception=False) from exc
        if not found:
            gr.Info("No models match.")
        return result_rows(found, self.engine)

    def pick(self, kind_label: str, evt: gr.SelectData) -> tuple[str, Any]:
        """A clicked result: its repo, and for a GGUF repo the choice of its files."""
        chosen = str(evt.row_value[0]) if evt.row_value else ""
        if not chosen or KINDS.get(kind_label) != "gguf":
            return chosen, gr.update(visible=False, choices=[], value=None)
        try:
            files = repo_files(chosen, ".gguf")
        except Exception as exc:
            raise gr.Error(f"could not list {chosen}: {exc}", print_exception=False) from exc
        choices = [(f"{name} ({size / 1e6:,.1f} MB)", name) for name, size in files]
        return chosen, gr.update(visible=True, choices=choices, value=files[0][0] if files else None)

    def download(self, name: str, file: str | None) -> str:
        with user_errors():
            self.engine.downloads.start(name or "", [file] if file else [])
        return progress_html(self.engine.downloads.progress())

    def cancel(self, name: str) -> str:
        if not self.engine.downloads.cancel((name or "").strip()):
            gr.Info(f"No download of {name!r} is running.")
        return progress_html(self.engine.downloads.progress())

    def delete(self, name: str) -> list[Any]:
        with user_errors():
            gone = self.engine.delete_cached((name or "").strip())
        said = f"Deleted **{name}** from the hub cache." if gone else f"**{name}** is not in the hub cache."
        return [cache_rows(), *self.refresh_models(said)]

    def tick(self, shown: frozenset[str] | None) -> list[Any]:
        """Progress; the cache table on the first tick and when a download ends; the
        Models tab's table and pickers when one has finished."""
        downloads = self.engine.downloads.progress()
        done = frozenset(f"{p.repo}@{p.started_at}" for p in downloads if p.finished)
        keep = [gr.update() for _ in range(self.n)]
        if shown is None or done <= shown:
            return [progress_html(downloads), cache_rows() if shown is None else gr.update(), done, *keep]
        ready = [p.repo for p in downloads if p.state == "done" and f"{p.repo}@{p.started_at}" not in shown]
        said = f"Downloaded **{', '.join(ready)}**: pick it in Chat or Compare."
        return [progress_html(downloads), cache_rows(), done, *(self.refresh_models(said) if ready else keep)]


def build_hub_panel(
    engine: Engine, refresh_models: Callable[[str | None], list[Any]], model_outputs: list[Any]
) -> None:
    """Widgets and events of the hub panel (inside the Models tab). `refresh_models(message)`
    returns new values for `model_outputs` (the tab's table, memory, pickers and status)."""
    gr.Markdown(
        "### Hugging Face hub\nSearch, then click a result. **Download** fetches it into the local hub "
        "cache (an explicit action: request-time downloads through `/v1` stay off unless "
        "WORKBENCH_ALLOW_DOWNLOAD=1)."
    )
    with gr.Row():
        query = gr.Textbox(label="Search", placeholder="e.g. SmolLM2 4bit", scale=4, elem_id="hub-query")
        kind = gr.Radio(list(KINDS), value="MLX", label="Kind", scale=2, elem_id="hub-kind")
        search = gr.Button("Search", scale=1, elem_id="hub-search")
    results = gr.Dataframe(
        headers=RESULT_HEADERS, value=[], interactive=False, label="Results", elem_id="hub-results"
    )
    with gr.Row():
        repo = gr.Textbox(label="Repo", placeholder="owner/name", scale=3, elem_id="hub-repo")
        gguf = gr.Dropdown(label="GGUF file", choices=[], visible=False, scale=3, elem_id="hub-file")
        download = gr.Button("Download", variant="primary", scale=1, elem_id="hub-download")
        cancel = gr.Button("Cancel", scale=1, elem_id="hub-cancel")
        delete = gr.Button("Delete from cache", variant="stop", scale=1, elem_id="hub-delete")
    progress = gr.HTML(progress_html([]), elem_id="hub-progress")
    cache = gr.Dataframe(
        headers=CACHE_HEADERS,
        value=[],
        interactive=False,
        label="In the local hub cache",
        elem_id="hub-cache",
    )
    seen = gr.State(None)  # downloads this page has seen finish (None: none looked at yet)
    timer = gr.Timer(PROGRESS_REFRESH_S)

    act = HubActions(engine, refresh_models, len(model_outputs))
    private = {"api_visibility": "private"}
    search.click(act.search, [query, kind], [results], **private)
    query.submit(act.search, [query, kind], [results], **private)
    results.select(act.pick, [kind], [repo, gguf], **private)
    download.click(act.download, [repo, gguf], [progress], **private)
    cancel.click(act.cancel, [repo], [progress], **private)
    delete.click(act.delete, [repo], [cache, *model_outputs], **engine_event(**private))
    timer.tick(
        act.tick,
        [seen],
        [progress, cache, seen, *model_outputs],
        show_progress="hidden",
        concurrency_limit=None,
        **private,
    )
