"""The Models tab's hub panel in a real headless Chromium: search finds the loopback endpoint's
model (tests/fake_hub.py), Download shows progress (held half way) and finishes, the model is
in the Chat picker and answers there, and Delete removes it from the cache and the pickers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from api.app import create_app
from tests.fake_hub import FakeHub, write_tiny_model
from tests.helpers import FinishedGenerations, LiveServer
from tests.test_ui_browser import CHROMIUM_ARGS, chat_settings, chromium_path, screenshot
from workbench.config import Settings
from workbench.engine import Engine, cached_models
from workbench.engine.models.embedded import EMBEDDED_IDS

pytestmark = pytest.mark.slow
REPO, WEIGHTS = "test/tiny-mlx", "model.safetensors"


@pytest.fixture(scope="module")
def hub(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeHub]:
    source = Path(engine.load(EMBEDDED_IDS["f32"]).path or "")
    folder = tmp_path_factory.mktemp("tiny") / "tiny-mlx"
    params = write_tiny_model(source, folder)
    with FakeHub() as fake, pytest.MonkeyPatch.context() as env:
        fake.add_repo(REPO, folder, params=params)
        env.setenv("HF_ENDPOINT", fake.url)
        env.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf")))
        env.delenv("HF_HUB_CACHE", raising=False)
        env.delenv("HF_HUB_OFFLINE", raising=False)
        fake.hold_after[WEIGHTS] = (folder / WEIGHTS).stat().st_size // 2
        yield fake
        if any(c.repo == REPO for c in cached_models()):  # the test failed before its Delete
            fake.release()
            engine.downloads.cancel_all()
            engine.unload(REPO)
            engine.delete_cached(REPO)


@pytest.fixture(scope="module")
def page(hub: FakeHub, settings: Settings, engine: Engine) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with LiveServer(create_app(settings, engine)) as server, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.set_default_timeout(60_000)
        page.goto(server.url + "/ui/")
        page.wait_for_function("document.querySelector('#wb-header')?.innerText.includes('Engine on')")
        yield page
        browser.close()


def test_search_download_chat_and_delete(page: Any, hub: FakeHub, engine: Engine) -> None:
    page.get_by_role("tab", name="Models").click()
    page.fill("#hub-query textarea, #hub-query input", "tiny")
    page.click("#hub-search")
    page.wait_for_function(f"document.querySelector('#hub-results')?.innerText.includes('{REPO}')")
    results = page.inner_text("#hub-results")
    assert "12.9" in results and "fits (0.01 GB)" in results, results  # MB on disk, and the budget
    page.get_by_role("gridcell", name=REPO).first.click()
    page.wait_for_function(
        f"document.querySelector('#hub-repo textarea, #hub-repo input')?.value === '{REPO}'"
    )
    page.click("#hub-download")
    # Held half way by the endpoint: the bar and the line show bytes, percent and rate.
    assert hub.held.wait(120)
    page.wait_for_function(
        "/of 16.4 MB \\([1-9]\\d?%\\)/.test(document.querySelector('#hub-progress')?.innerText || '')"
    )
    line = page.inner_text("#hub-progress")
    assert re.search(r"test/tiny-mlx: \d+\.\d of 16\.4 MB \((\d+)%\), \d+\.\d+ MB/s", line), line
    assert 0 < int(re.search(r"\((\d+)%\)", line).group(1)) < 100
    assert page.locator("#hub-progress progress").count() == 1
    screenshot(page, "models-download-progress")
    hub.release()
    page.wait_for_function("document.querySelector('#hub-progress')?.innerText.includes('done, 16.4 MB')")
    page.wait_for_function(f"document.querySelector('#models-table')?.innerText.includes('{REPO}')")
    page.wait_for_function("document.querySelector('#hub-cache')?.innerText.includes('complete')")
    screenshot(page, "models-downloaded")

    # In the Chat picker at once, and it answers there.
    page.get_by_role("tab", name="Chat").click()
    page.click("#chat-model input")
    page.get_by_role("option", name=re.compile("tiny-mlx")).click()
    chat_settings(page, max_tokens=8)
    with FinishedGenerations(engine) as finished:
        page.fill("#chat-input textarea", "Hello there.")
        page.press("#chat-input textarea", "Enter")
        page.wait_for_selector("#chat-log .wb-stats", timeout=120_000)
        (stats,) = finished.wait(1)
    assert stats.model == REPO and stats.generation_tokens > 0
    assert REPO in page.inner_text("#chat-log .wb-stats")
    screenshot(page, "chat-downloaded-model")

    # Delete: refused while loaded (said in the page), then gone from cache and pickers.
    page.get_by_role("tab", name="Models").click()
    page.fill("#hub-repo textarea, #hub-repo input", REPO)
    page.click("#hub-delete")
    page.wait_for_function("document.body.innerText.includes('unload it first')")
    engine.unload(REPO)
    page.click("#hub-delete")
    page.wait_for_function("document.querySelector('#models-status')?.innerText.includes('Deleted')")
    assert REPO not in page.inner_text("#hub-cache") and REPO not in page.inner_text("#models-table")
    assert "Traceback" not in page.content()
