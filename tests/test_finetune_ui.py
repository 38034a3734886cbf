"""The Fine-tune tab in a real headless Chromium, on the real embedded model: the shipped spec fills
the form, Start trains (the loss plot and the step count change while it runs), Stop ends it after
a step with its rows and a registered variant, which the Chat picker lists; Open in Arena puts the
variant against its base in the Arena's run form. No waits on this machine's speed: the run is
long (1000 steps) and stopped once the page has shown its losses change."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from api.app import create_app
from tests.helpers import LiveServer, wait_until
from tests.test_ui_browser import CHROMIUM_ARGS, chromium_path, screenshot, set_number
from workbench.config import Settings
from workbench.engine import Engine
from workbench.engine.models.embedded import EMBEDDED_IDS
from workbench.reports.schema import FINETUNE_COLUMNS
from workbench.reports.store import read_results

pytestmark = pytest.mark.slow
VARIANT = f"{EMBEDDED_IDS['f32']}+uitune"
# Keeps each distinct loss plot (its image) and status line the page shows, in window.plots / .lines.
RECORD = """() => { window.plots = []; window.lines = [];
    const keep = (list, v) => { if (v && v !== list[list.length - 1]) list.push(v); };
    new MutationObserver(() => {
        const img = document.querySelector('#tune-plot img');
        keep(window.plots, img && img.getAttribute('src'));
        keep(window.lines, document.querySelector('#tune-status').innerText.trim());
    }).observe(document.querySelector('#tab-tune'), {subtree: true, childList: true, attributes: true,
                                                     characterData: true}); }"""


@pytest.fixture(scope="module")
def page(settings: Settings, engine: Engine) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with LiveServer(create_app(settings, engine)) as server, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        page.set_default_timeout(60_000)
        page.goto(server.url + "/ui/")
        page.wait_for_function("document.querySelector('#wb-header')?.innerText.includes('Engine on')")
        yield page
        browser.close()
    if any(m.id == VARIANT and m.loaded for m in engine.models()):
        engine.unload(VARIANT)


def steps_shown(page: Any) -> list[int]:
    lines = page.evaluate("window.lines")
    return [int(m.group(1)) for t in lines if (m := re.search(r"step (\d+)/1000", t))]


def test_train_from_the_tab_watch_the_loss_stop_and_open_in_arena(
    page: Any, settings: Settings, engine: Engine
) -> None:
    page.get_by_role("tab", name="Fine-tune").click()
    page.click("#tune-spec input")
    assert page.get_by_role("option", name="default.toml").count() == 0  # benchmark specs are not offered
    page.get_by_role("option", name="finetune_pirate.toml").click()
    page.wait_for_function("document.querySelector('#tune-train input')?.value.includes('pirate/train')")
    assert page.input_value("#tune-base input").startswith(EMBEDDED_IDS["f32"] + " · ")
    assert page.input_value("#tune-prompts input") == "pirate_questions.txt"
    page.fill("#tune-name textarea", "uitune")
    set_number(page, "#tune-iterations input", 1000)
    set_number(page, "#tune-val-interval input", 2)
    page.evaluate(RECORD)
    page.click("#tune-run")

    # The page gets the losses as they come: three plots and a step count that moves, mid-run.
    assert wait_until(lambda: len(page.evaluate("window.plots")) >= 3, timeout_s=600, interval_s=0.2)
    assert wait_until(lambda: len(set(steps_shown(page))) >= 2, timeout_s=600, interval_s=0.2)
    assert "train loss" in page.inner_text("#tune-status")
    assert any("fine-tuning uitune" in a for a in engine.activity()), engine.activity()
    screenshot(page, "finetune-training")
    page.click("#tune-stop")
    page.wait_for_function(
        "document.querySelector('#tune-status')?.innerText.includes('stopped at step')", timeout=600_000
    )
    status = page.inner_text("#tune-status")
    stopped_at = int(re.search(r"stopped at step (\d+)", status).group(1))
    assert 2 <= stopped_at < 1000 and VARIANT in status and "uitune.csv" in status, status
    df = read_results(settings.results_dir / "uitune.csv", FINETUNE_COLUMNS)
    df = df[df["run_id"] == df["run_id"].iloc[-1]]  # this run's rows (results/ outlives the suite)
    assert list(df[df["kind"] == "train"]["iteration"]) == list(range(1, stopped_at + 1))
    assert (df["variant"] == VARIANT).all() and len(df[df["kind"] == "valid"]) >= 2
    assert engine.model_info(VARIANT).source == "adapter"
    page.wait_for_selector("#tune-plot img")
    screenshot(page, "finetune-stopped")

    # The variant is in the Chat picker at once.
    page.get_by_role("tab", name="Chat").click()
    page.click("#chat-model input")
    assert page.get_by_role("option", name=re.compile(re.escape(VARIANT))).count() == 1
    page.keyboard.press("Escape")

    # Open in Arena: the run form with the variant against its base and the spec's prompt set.
    page.get_by_role("tab", name="Fine-tune").click()
    page.click("#tune-open-arena")
    page.wait_for_function("document.querySelector('#arena-models')?.offsetParent !== null")
    models = page.inner_text("#arena-models")
    assert VARIANT in models and EMBEDDED_IDS["f32"] in models.replace(VARIANT, ""), models
    assert page.input_value("#arena-prompts input") == "pirate_questions.txt"
    assert page.input_value("#arena-name textarea") == "uitune-vs-base"
    screenshot(page, "finetune-open-in-arena")
