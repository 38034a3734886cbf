"""Server tab: live charts of the last 15 minutes (requests/s, generated tok/s per model, TTFT,
queue and streams, memory) and the recent requests, read from the ServerMonitor every 2 s."""

from __future__ import annotations

import time
from typing import Any

import gradio as gr
import pandas as pd

from workbench.engine import Engine
from workbench.monitor import SAMPLE_S, ServerMonitor

REQUEST_HEADERS = [
    "time",
    "route",
    "model",
    "prompt tok",
    "gen tok",
    "TTFT (s)",
    "tok/s",
    "status",
    "took (s)",
]
MEMORY = {
    "memory:active": "MLX active",
    "memory:peak": "MLX peak",
    "memory:cache": "MLX cache",
    "memory:process_rss": "process RSS",
}
SYSTEM = {"memory:system_available": "system available"}


def long_frame(points: list[dict[str, Any]], series: dict[str, str], now: float) -> pd.DataFrame:
    """Points -> (seconds ago, value, series) rows for a line plot; `series`: key -> label."""
    rows = [
        {"seconds ago": p["t"] - now, "value": p[key], "series": label}
        for p in points
        for key, label in series.items()
        if p.get(key) is not None
    ]
    return pd.DataFrame(rows, columns=["seconds ago", "value", "series"])


def headline(points: list[dict[str, Any]]) -> str:
    """The current figures in one line."""
    if not points:
        return "Collecting the first samples…"
    p = points[-1]
    ttft = (
        f"TTFT p50 {p['ttft_p50']:.2f} s / p95 {p['ttft_p95']:.2f} s"
        if p.get("ttft_p50") is not None
        else "TTFT -"
    )
    mem = " · ".join(f"{label} {p[key]:.2f} GB" for key, label in (MEMORY | SYSTEM).items() if key in p)
    return (
        f"**generated {p['tokens_per_s']:.1f} tok/s** · {p['active_streams']} active streams · queue "
        f"{p['queue']} · {p['requests_per_s']:.2f} requests/s · {ttft}  \n{mem}"
    )


def request_rows(monitor: ServerMonitor) -> list[list[Any]]:
    rows = []
    for r in monitor.recent():
        rows.append(
            [
                time.strftime("%H:%M:%S", time.localtime(r.at)),
                r.route,
                r.model,
                r.prompt_tokens,
                r.generation_tokens,
                round(r.ttft_s, 3) if r.ttft_s is not None else "",
                round(r.tps, 1) if r.tps is not None else "",
                r.status,
                round(r.duration_s, 3),
            ]
        )
    return rows


def dashboard(monitor: ServerMonitor) -> list[Any]:
    """Every output of the tab, from the monitor only (never waits for the engine)."""
    if not monitor.running:  # a UI built without the app's sampler samples on its own ticks
        monitor.sample()
    points, now = monitor.series(), time.time()
    models = sorted({k.removeprefix("tps:") for p in points for k in p if k.startswith("tps:")})
    return [
        headline(points),
        long_frame(points, {"requests_per_s": "requests/s"}, now),
        long_frame(points, {"tokens_per_s": "all models", **{f"tps:{m}": m for m in models}}, now),
        long_frame(points, {"ttft_p50": "p50", "ttft_p95": "p95"}, now),
        long_frame(points, {"queue": "queue depth", "active_streams": "active streams"}, now),
        long_frame(points, MEMORY, now),
        long_frame(points, SYSTEM, now),
        request_rows(monitor),
    ]


def _plot(title: str, y_title: str, elem_id: str) -> gr.LinePlot:
    return gr.LinePlot(
        value=pd.DataFrame(columns=["seconds ago", "value", "series"]),
        x="seconds ago",
        y="value",
        color="series",
        title=title,
        y_title=y_title,
        height=240,
        elem_id=elem_id,
    )


def build_server_tab(engine: Engine, monitor: ServerMonitor | None = None) -> tuple[Any, list[Any]]:
    """Widgets and events of the Server tab (call inside a gr.Tab); returns the page-load
    handler and its outputs. Without `monitor`, one on `engine` samples as the tab ticks."""
    mon = monitor or ServerMonitor(engine)
    gr.Markdown(
        "Live figures of this server, the last 15 minutes, every 2 s: the counters `/metrics` exposes "
        "(tok/s counts tokens as they are made, every model and every caller: API, UI, labs)."
    )
    now = gr.Markdown(elem_id="server-now")
    with gr.Row():
        tps = _plot("Generated tok/s", "tok/s", "server-tps")
        requests = _plot("Requests/s (/v1)", "requests/s", "server-requests-rate")
    with gr.Row():
        ttft = _plot("TTFT (last 30 s of generations)", "seconds", "server-ttft")
        queue = _plot("Queue depth and active streams", "generations", "server-queue")
    with gr.Row():
        memory = _plot("Memory: MLX and this process", "GB", "server-memory")
        system = _plot("System memory available", "GB", "server-system")
    table = gr.Dataframe(
        headers=REQUEST_HEADERS,
        value=[],
        interactive=False,
        label="Recent requests",
        elem_id="server-requests",
    )
    outputs = [now, requests, tps, ttft, queue, memory, system, table]
    gr.Timer(SAMPLE_S).tick(
        lambda: dashboard(mon),
        None,
        outputs,
        show_progress="hidden",
        concurrency_limit=None,
        api_visibility="private",
    )
    return (lambda: dashboard(mon)), outputs
