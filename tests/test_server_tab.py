"""The Server tab's numbers: the ServerMonitor on a real engine and server (live token counts
that /metrics shows too, TTFT percentiles, the recent requests with their status), and the tab
in a real headless Chromium showing non-zero tok/s while the load tool runs against the server."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from api.app import create_app
from tests.helpers import LiveServer, wait_until
from tests.test_ui_browser import CHROMIUM_ARGS, chromium_path, screenshot
from workbench.config import Settings
from workbench.engine import Engine, GenerationRequest
from workbench.engine.models.embedded import EMBEDDED_IDS
from workbench.loadgen.loadtest import run_load
from workbench.monitor import ServerMonitor, percentile

F32 = EMBEDDED_IDS["f32"]


@pytest.fixture(scope="module")
def server(settings: Settings, engine: Engine) -> Iterator[LiveServer]:
    with LiveServer(create_app(settings, engine)) as live:
        yield live


def test_the_monitor_counts_tokens_as_they_are_made(engine: Engine) -> None:
    monitor = ServerMonitor(engine)
    monitor.start()
    try:
        before = monitor.sample()
        engine.generate(GenerationRequest(prompt="Count:", model=F32, max_tokens=24, ignore_eos=True))
        after = monitor.sample()
        # One that may end on end-of-sequence (a token no chunk shows): the count ends at its stats'.
        free = engine.generate(GenerationRequest(prompt="Say hi.", model=F32, max_tokens=40))
        last = monitor.sample()
    finally:
        monitor.stop()
    assert monitor.running is False
    made = after.tokens[F32] - before.tokens.get(F32, 0)
    assert made == 24
    assert last.tokens[F32] - after.tokens[F32] == free.stats.generation_tokens
    point = monitor.series()[-1]
    assert point["tokens_per_s"] > 0 and point[f"tps:{F32}"] == point["tokens_per_s"]
    assert point["ttft_p50"] is not None and point["ttft_p95"] >= point["ttft_p50"]
    assert point["memory:active"] > 0 and point["memory:process_rss"] > 0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5 and percentile([], 0.5) is None


def test_recent_requests_and_metrics_come_from_the_same_counters(server: LiveServer, engine: Engine) -> None:
    from openai import BadRequestError, OpenAI

    client = OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    client.chat.completions.create(
        model=F32, messages=[{"role": "user", "content": "Hi"}], max_tokens=6, extra_body={"ignore_eos": True}
    )
    with pytest.raises(BadRequestError):
        client.chat.completions.create(model=F32, messages=[{"role": "user", "content": "Hi"}], max_tokens=-1)
    monitor: ServerMonitor = server.app.state.monitor  # type: ignore[attr-defined]
    assert wait_until(lambda: len(monitor.recent()) >= 2, 30)
    refused, answered = monitor.recent()[:2]
    assert (refused.route, refused.status, refused.model) == ("POST /v1/chat/completions", 400, "")
    assert (answered.route, answered.status, answered.model) == ("POST /v1/chat/completions", 200, F32)
    assert answered.generation_tokens == 6 and answered.prompt_tokens > 0 and answered.ttft_s is not None
    # /metrics exposes the live counter the dashboard samples.
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    found = re.search(rf'workbench_generated_tokens_live_total{{model="{F32}"}} ([0-9.e+]+)', text)
    assert found is not None, text[-2000:]
    assert float(found.group(1)) == engine.tokens_generated()[F32]


@pytest.mark.slow
def test_the_server_tab_shows_tok_s_while_the_load_tool_runs(server: LiveServer, engine: Engine) -> None:
    from playwright.sync_api import sync_playwright

    result: dict[str, Any] = {}

    def load() -> None:  # long enough on a 3x faster machine: 4 forced 200-token replies, 2 at a time
        result["load"] = run_load(f"{server.url}/v1", F32, 2, 4, 16, 200, warmup=0)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1500})
        page.set_default_timeout(60_000)
        page.goto(server.url + "/ui/")
        page.wait_for_function("document.querySelector('#wb-header')?.innerText.includes('Engine on')")
        page.get_by_role("tab", name="Server").click()
        page.wait_for_function("document.querySelector('#server-now')?.innerText.includes('tok/s')")
        runner = threading.Thread(target=load, daemon=True)
        runner.start()
        # A non-zero rate while the load runs (streams active at that sample), and the chart
        # drawn with its points.
        page.wait_for_function(
            "/generated [1-9][0-9.]* tok\\/s · [1-9] active streams/"
            ".test(document.querySelector('#server-now')?.innerText || '')",
            timeout=300_000,
        )
        page.wait_for_function(
            "document.querySelector('#server-tps canvas, #server-tps svg .mark-line, #server-tps svg path')"
        )
        screenshot(page, "server-under-load")
        runner.join(600)
        page.wait_for_function(
            "document.querySelector('#server-requests')?.innerText.includes('/v1/completions')"
        )
        table = page.inner_text("#server-requests")
        # route, model, prompt tokens, 200 generated tokens
        assert re.search(rf"POST /v1/completions\s+{re.escape(F32)}\s+\d+\s+200\s", table), table
        screenshot(page, "server-after-load")
        browser.close()
    assert result["load"].errors == 0
