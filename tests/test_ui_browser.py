"""The workbench UI in a real headless Chromium (the system's, driven by Playwright)
against a live server on 127.0.0.1 that serves UI and API from one engine; the same
server answers the openai SDK meanwhile, and gradio_client calls the UI's chat API.

Screenshots of each tab land in test-artifacts/ui/ (WORKBENCH_TEST_ARTIFACTS moves it).
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import jsonschema
import pytest

from api.app import create_app
from tests.helpers import FinishedGenerations, LiveServer, wait_until
from workbench.config import Settings
from workbench.engine import Engine
from workbench.engine.models.embedded import EMBEDDED_IDS, embedded_gguf_path

pytestmark = pytest.mark.slow

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = (
    Path(os.environ.get("WORKBENCH_TEST_ARTIFACTS", Path(__file__).parents[1] / "test-artifacts")) / "ui"
)
F32, Q4 = EMBEDDED_IDS["f32"], EMBEDDED_IDS["4bit"]
LAST_REPLY = """() => { const m = document.querySelectorAll('#chat-log [data-testid=bot] .message-content');
                       return m.length ? m[m.length - 1].innerText : ''; }"""
# Keeps every text the last reply shows, as the page renders it, in window.seen.
RECORD_REPLIES = """() => { window.seen = []; const last = LAST_REPLY;
    new MutationObserver(() => { const t = last();
        if (t && t !== window.seen[window.seen.length - 1]) window.seen.push(t); })
    .observe(document.querySelector('#chat-log'),
             {subtree: true, childList: true, characterData: true}); }""".replace("LAST_REPLY", LAST_REPLY)
# The last reply's own text, without its stats line.
LAST_REPLY_TEXT = """() => {
    const m = document.querySelectorAll('#chat-log [data-testid=bot] .message-content');
    if (!m.length) return ''; const c = m[m.length - 1].cloneNode(true);
    c.querySelectorAll('.wb-stats').forEach(s => s.remove()); return c.textContent.trim(); }"""
SCHEMA = {
    "type": "object",
    "properties": {
        "color": {"type": "string", "enum": ["red", "green", "blue"]},
        "count": {"type": "integer", "minimum": 0, "maximum": 100},
    },
    "required": ["color", "count"],
}
# Keeps every text the element `sel` shows in window.shown.
RECORD_TEXTS = """(sel) => { window.shown = []; const el = document.querySelector(sel);
    new MutationObserver(() => { const t = el.innerText.trim();
        if (t !== window.shown[window.shown.length - 1]) window.shown.push(t); })
    .observe(el, {subtree: true, childList: true, characterData: true}); }"""


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    mac = Path("/Applications/Google Chrome.app/Contents/MacOS/Google Chrome")
    if mac.exists():
        return str(mac)
    if sys.platform != "linux":
        pytest.skip("no Chromium or Chrome found for the browser tests")
    pytest.fail("Chromium not found: `make test` installs Debian's chromium (scripts/setup_system.sh --test)")


@pytest.fixture(scope="module")
def ui(
    settings: Settings, engine: Engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    ui_settings = settings.with_(results_dir=tmp_path_factory.mktemp("ui-results"))
    with LiveServer(create_app(ui_settings, engine)) as server:
        yield {"url": server.url, "settings": ui_settings}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, ui: dict[str, Any], request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page_errors: list[str] = []
    page.on("pageerror", lambda exc: page_errors.append(str(exc)))
    page.goto(ui["url"] + "/")  # the root redirects to the UI
    # The header is rewritten once the page-load events (pickers, tables) have run.
    page.wait_for_function("document.querySelector('#wb-header')?.innerText.includes('Engine on')")
    yield page
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        screenshot(page, f"FAILED-{request.node.name}")
    context.close()
    assert not page_errors, page_errors


def screenshot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def set_number(page: Any, selector: str, value: Any) -> None:
    # Gradio takes a number's value on blur; a fill made while the page is still
    # settling has been seen not to stick, so it is checked (and made again).
    for _ in range(3):
        page.fill(selector, str(value))
        page.press(selector, "Tab")
        page.wait_for_timeout(200)
        if page.input_value(selector) == str(value):
            return
    raise AssertionError(f"{selector} did not take {value!r}: it shows {page.input_value(selector)!r}")


def pick(page: Any, selector: str, model_id: str) -> None:
    """Choose a model in a picker by typing its id (pickers accept typed ids)."""
    page.fill(f"{selector} input", model_id)
    page.press(f"{selector} input", "Enter")


def chat_settings(page: Any, max_tokens: int, temperature: float = 0) -> None:
    page.click("#chat-sampling button.label-wrap")
    set_number(page, "#chat-temperature input[type=number]", temperature)
    set_number(page, "#chat-max-tokens input", max_tokens)


def test_chat_streams_a_reply_with_its_stats_line(page: Any, engine: Engine) -> None:
    chat_settings(page, max_tokens=32)
    page.evaluate(RECORD_REPLIES)
    page.fill("#chat-input textarea", "Describe Paris in two sentences.")
    page.press("#chat-input textarea", "Enter")
    page.wait_for_selector("#chat-log .wb-stats", timeout=120_000)
    stats = page.inner_text("#chat-log .wb-stats")
    screenshot(page, "chat")
    # Streamed: the reply grew in place through several partial texts before its stats came.
    partial = [t.strip() for t in page.evaluate("window.seen") if "TTFT" not in t and t.strip() != "…"]
    assert len(partial) >= 2, partial  # (how many depends on the machine's speed)
    assert all(b.startswith(a[: len(a) - 1]) for a, b in itertools.pairwise(partial)), partial
    for part in (F32, "TTFT", "tok/s", "gen ", "peak", "GB"):
        assert part in stats, stats
    assert "Traceback" not in page.content()
    # Export: the conversation as JSON, each reply with its stats and sampling.
    page.click("#chat-export")
    link = page.wait_for_selector("#chat-export-file a[href]")
    exported = httpx.get(urljoin(page.url, link.get_attribute("href")), timeout=30).json()
    assert [m["role"] for m in exported["messages"]] == ["user", "assistant"]
    reply = exported["messages"][1]
    assert reply["content"].strip() and reply["stats"]["model"] == F32
    assert reply["stats"]["generation_tokens"] > 0 and reply["sampling"]["max_tokens"] == 32


def test_chat_follows_a_json_schema_and_shows_the_parsed_object(page: Any) -> None:
    chat_settings(page, max_tokens=48)
    page.click("#chat-schema-box button.label-wrap")
    status = "document.querySelector('#chat-schema-status')?.innerText"
    # Not JSON: said at once, as it is typed.
    page.fill("#chat-schema textarea", '{"type": "object",')
    page.wait_for_function(f"{status}.includes('not valid JSON')")
    page.fill("#chat-schema textarea", json.dumps(SCHEMA, indent=2))
    page.wait_for_function(f"{status}.includes('Replies follow this schema')")
    page.fill("#chat-input textarea", "Pick a colour and a number of apples.")
    page.press("#chat-input textarea", "Enter")
    page.wait_for_selector("#chat-log .wb-stats", timeout=120_000)
    page.wait_for_function(f"{status}.includes('parsed')")
    reply = json.loads(page.evaluate(LAST_REPLY_TEXT))
    jsonschema.validate(reply, SCHEMA)
    # The panel shows the same object (its tree view puts each token on a line of its own).
    label, *tree = page.inner_text("#chat-parsed").splitlines()
    assert label == "Parsed reply" and json.loads("".join(tree)) == reply, tree
    screenshot(page, "chat-schema")

    # A schema llguidance cannot enforce: a clear message, and nothing is lost.
    history = page.inner_text("#chat-log")
    page.fill("#chat-schema textarea", '{"type": "nonsense"}')
    page.fill("#chat-input textarea", "And another one?")
    page.click("#chat-send")
    page.wait_for_function(f"{status}.includes('cannot be enforced')")
    page.wait_for_selector("text=JSON schema: cannot be enforced")  # the warning toast, too
    assert page.input_value("#chat-input textarea") == "And another one?"
    assert page.inner_text("#chat-log") == history
    assert page.evaluate("document.querySelectorAll('#chat-log [data-testid=bot]').length") == 1
    assert "color" not in page.inner_text("#chat-parsed")  # emptied when the reply was asked for
    assert "Traceback" not in page.content()
    screenshot(page, "chat-schema-error")

    # Clearing the schema means free text again: the status and the panel empty.
    page.fill("#chat-schema textarea", "")
    page.wait_for_function(f"{status}.trim() === ''")
    assert page.inner_text("#chat-parsed").strip() == "Parsed reply"  # its label only


def test_compare_runs_the_4bit_and_f32_variants_side_by_side(page: Any) -> None:
    page.get_by_role("tab", name="Compare").click()
    page.fill("#compare-prompt textarea", "Name three colors.")
    set_number(page, "#compare-temperature input[type=number]", 0)
    set_number(page, "#compare-max-tokens input", 16)
    # By default the sides hold the default model and its sibling variant.
    pickers = [page.input_value(f"#compare-model-{i} input") for i in (0, 1)]
    assert [p.split(" ·")[0] for p in pickers] == [F32, Q4], pickers
    pick(page, "#compare-model-0", Q4)
    pick(page, "#compare-model-1", F32)
    page.click("#compare-run")
    page.wait_for_function(
        "document.querySelectorAll('#compare-stats-0 .wb-stats, #compare-stats-1 .wb-stats').length == 2",
        timeout=120_000,
    )
    screenshot(page, "compare")
    titles = {page.inner_text(f"#compare-title-{i}") for i in (0, 1)}
    assert titles == {f"A · {Q4}", f"B · {F32}"}, titles
    for i in (0, 1):
        assert page.inner_text(f"#compare-output-{i}").strip()
        stats = page.inner_text(f"#compare-stats-{i}")
        assert "TTFT" in stats and "tok/s" in stats and "peak" in stats and "not comparable" not in stats
    # Live mode interleaves the sides and says their tok/s do not compare.
    page.get_by_text("Live: sides interleave").click()
    page.click("#compare-run")
    page.wait_for_function(
        "[0, 1].every(i => document.querySelector(`#compare-stats-${i}`)"
        "?.innerText.includes('not comparable'))",
        timeout=120_000,
    )
    for i in (0, 1):
        assert page.inner_text(f"#compare-output-{i}").strip()


def test_blind_vote_appends_one_row_with_the_hidden_identities(page: Any, ui: dict[str, Any]) -> None:
    votes = Path(ui["settings"].results_dir) / "votes.csv"
    before = len(list(csv.DictReader(votes.open()))) if votes.exists() else 0
    page.get_by_role("tab", name="Compare").click()
    page.fill("#compare-prompt textarea", "Say hello.")
    set_number(page, "#compare-max-tokens input", 12)
    pick(page, "#compare-model-0", F32)
    pick(page, "#compare-model-1", Q4)
    page.click("#compare-blind input")
    page.evaluate(RECORD_TEXTS, "#compare-output-0")
    page.click("#compare-run")
    page.wait_for_selector("#vote-A", state="visible", timeout=120_000)
    # Blind replies do not stream (their pace would give the variant away): side A went
    # from the waiting note straight to its whole reply.
    # Gradio's own status line: "0.1s", "queue: 1/1 | 0.2/10.2s", "processing | 0.2s".
    progress = re.compile(r"^(queue: \d+/\d+ \| )?(processing \| )?[\d./]+s$")
    shown_a = [t for t in page.evaluate("window.shown") if t and not progress.match(t)]
    assert shown_a[-1] == page.inner_text("#compare-output-0").strip()
    assert all(t.startswith("generating") for t in shown_a[:-1]), shown_a
    # Until the vote: no names, no stats (speed would give the variant away).
    for i, label in enumerate("AB"):
        assert page.inner_text(f"#compare-title-{i}").strip() == label
        assert "hidden until you vote" in page.inner_text(f"#compare-stats-{i}")
    shown = [page.inner_text(f"#compare-output-{i}") for i in (0, 1)]
    screenshot(page, "compare-blind")
    page.click("#vote-B")
    page.wait_for_function("document.querySelector('#vote-status')?.innerText.includes('saved')")
    rows = list(csv.DictReader(votes.open()))
    assert len(rows) == before + 1
    row = rows[-1]
    assert {row["model_a"], row["model_b"]} == {F32, Q4}
    assert row["verdict"] == "b" and row["winner_model"] == row["model_b"]
    assert row["picker_order"] in ("1,2", "2,1") and row["mode"] == "fair" and row["prompt"] == "Say hello."
    assert int(row["seed"]) >= 0 and row["max_tokens"] == "12" and row["git_sha"]

    # The page renders the replies as markdown (`*x*` shows as x): compare them as shown.
    def plain(text: str) -> str:
        return " ".join(re.sub(r"[*_`#]", "", text).split())

    assert [plain(row["output_a"]), plain(row["output_b"])] == [plain(s) for s in shown]
    for side in "ab":
        assert float(row[f"generation_tps_{side}"]) > 0 and float(row[f"peak_memory_gb_{side}"]) > 0
    # The vote reveals who was who, matching the row.
    assert page.inner_text("#compare-title-0") == f"A · {row['model_a']}"
    assert not page.is_visible("#vote-A")


def test_stop_cancels_the_generation_in_the_engine(
    page: Any, browser: Any, engine: Engine, ui: dict[str, Any]
) -> None:
    from openai import OpenAI

    chat_settings(page, max_tokens=1500)
    page.fill(
        "#chat-input textarea", "Write a long story about a dragon who learns to fly, in many chapters."
    )
    page.click("#chat-send")
    assert wait_until(lambda: len(page.evaluate(LAST_REPLY)) > 40, timeout_s=120, interval_s=0.1)
    assert engine.active_streams >= 1
    # Meanwhile the same server answers the official SDK on /v1, from the same engine.
    client = OpenAI(base_url=ui["url"] + "/v1", api_key="unused", max_retries=0, timeout=120)
    reply = client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0
    )
    assert reply.choices[0].message.content and reply.model_extra["timings"]["concurrent_streams"] >= 2
    assert engine.active_streams >= 1, "the story should still be generating"
    # Another page's reply waits in the UI's engine queue behind the story; its Stop reaches it there.
    other = browser.new_context().new_page()
    other.goto(ui["url"] + "/")
    other.wait_for_function("document.querySelector('#wb-header')?.innerText.includes('Engine on')")
    other.fill("#chat-input textarea", "Write a poem about the sea.")
    other.click("#chat-send")
    other.wait_for_selector("#chat-log [data-testid=user]")
    other.click("#chat-stop")
    with FinishedGenerations(engine) as finished:
        page.click("#chat-stop")
        stats = finished.cancelled(max_tokens=1500)  # the story itself ended as cancelled
    waited = "stopped by the user"
    assert wait_until(lambda: waited in other.evaluate(LAST_REPLY), timeout_s=60)
    assert "gen 0 tok" in other.evaluate(LAST_REPLY)  # the engine did no work for it
    other.context.close()
    assert stats.generation_tokens > 5
    assert wait_until(lambda: engine.active_streams == 0, timeout_s=60)
    # The reply's own last chunk says so, with the cancelled generation's stats: the last word.
    said = f"gen {stats.generation_tokens} tok"
    assert wait_until(lambda: said in page.evaluate(LAST_REPLY), timeout_s=60)
    stopped_at = page.evaluate(LAST_REPLY)
    assert "stopped by the user" in stopped_at and "cancelled" in stopped_at
    time.sleep(1.0)
    assert page.evaluate(LAST_REPLY) == stopped_at  # nothing more arrives
    assert engine.active_streams == 0
    screenshot(page, "chat-stopped")


def test_models_tab_lists_loads_and_imports(page: Any, engine: Engine) -> None:
    page.get_by_role("tab", name="Models").click()
    page.wait_for_function(f"document.querySelector('#models-table')?.innerText.includes('{Q4}')")
    assert "MLX" in page.inner_text("#models-memory") and "available" in page.inner_text("#models-memory")
    # Import by path: a GGUF file registers under its own name (one id per variant).
    gguf = embedded_gguf_path()
    assert gguf is not None
    page.fill("#models-path textarea", str(gguf))
    page.click("#models-import")
    page.wait_for_function("document.querySelector('#models-status')?.innerText.includes('Registered')")
    assert gguf.stem in page.inner_text("#models-table")
    assert any(m.id == gguf.stem for m in engine.models())
    # A bad path is a readable message, not a stack trace.
    page.fill("#models-path textarea", "/no/such/model.gguf")
    page.click("#models-import")
    page.wait_for_selector("text=no such file or folder")
    assert "Traceback" not in page.content()
    # Load the 4-bit variant and see the table say so.
    pick(page, "#models-target", Q4)
    page.click("#models-load")
    page.wait_for_function("document.querySelector('#models-status')?.innerText.includes('Loaded')")
    assert engine.model_info(Q4).loaded
    page.click("#models-unload")
    page.wait_for_function("document.querySelector('#models-status')?.innerText.includes('Unloaded')")
    assert not engine.model_info(Q4).loaded
    time.sleep(1.0)  # let the table's update settle before the picture
    screenshot(page, "models")


def test_gradio_client_calls_the_chat_endpoint(ui: dict[str, Any], engine: Engine) -> None:
    from gradio_client import Client
    from gradio_client.utils import Status

    client = Client(ui["url"] + "/ui/", verbose=False)
    conversation, _ = client.predict(
        text="What is the capital of France?",
        model_id=F32,
        system_prompt="",
        temperature=0,
        max_tokens=12,
        seed=1,
        api_name="/chat",
    )
    assert [m["role"] for m in conversation] == ["user", "assistant"]
    reply = conversation[-1]["content"][0]["text"]
    assert "wb-stats" in reply and "TTFT" in reply
    assert reply.split("<span")[0].strip()
    # Engine-bound events take turns in one queue: a second chat waits, visibly queued,
    # while the first runs, and the engine never runs two UI generations at once. The test
    # holds the engine meanwhile, so the first cannot finish before the second is seen queued.
    ask = dict(text="Tell me about the sea.", model_id=F32, system_prompt="", temperature=0, api_name="/chat")
    with engine.exclusive("test: holding the engine"):
        first = client.submit(**ask, max_tokens=24)
        second = client.submit(**ask, max_tokens=4)
        # Whichever the queue took first runs (blocked on the engine); the other waits.
        codes = lambda: {first.status().code, second.status().code}  # noqa: E731
        assert wait_until(lambda: codes() == {Status.PROCESSING, Status.IN_QUEUE}, timeout_s=60), codes()
        assert not first.done() and not second.done()
    most = 0
    while not (first.done() and second.done()):
        most = max(most, engine.active_streams)
        time.sleep(0.02)
    assert most == 1
    assert "TTFT" in second.result()[0][-1]["content"][0]["text"]
    # Errors reach API callers as readable messages too.
    with pytest.raises(Exception, match="unknown model"):
        client.predict(text="Hi", model_id="no-such-model", system_prompt="", max_tokens=4, api_name="/chat")


def test_gradio_client_chat_takes_a_json_schema(ui: dict[str, Any]) -> None:
    from gradio_client import Client

    client = Client(ui["url"] + "/ui/", verbose=False)
    ask = dict(model_id=F32, system_prompt="", temperature=0, max_tokens=48, api_name="/chat")
    conversation, _ = client.predict(
        text="Pick a colour and a number of apples.", json_schema=json.dumps(SCHEMA), seed=1, **ask
    )
    reply = conversation[-1]["content"][0]["text"].split("<span")[0].strip()
    jsonschema.validate(json.loads(reply), SCHEMA)
    # A bad schema is refused with a readable message.
    for bad, why in (('{"type": ', "not valid JSON"), ('{"type": "nonsense"}', "cannot be enforced")):
        with pytest.raises(Exception, match=f"JSON schema: {why}"):
            client.predict(text="Hi", json_schema=bad, **ask)


def test_benchmark_tab_runs_shows_results_and_stops(page: Any, ui: dict[str, Any], engine: Engine) -> None:
    from workbench.reports.store import count_rows, read_results

    page.get_by_role("tab", name="Benchmark").click()
    # An experiment file fills the settings.
    page.click("#bench-experiment input")
    page.get_by_role("option", name="default.toml").click()
    page.wait_for_function("document.querySelector('#bench-prompts textarea')?.value === '16, 64'")
    # (The page may render the filled fields one at a time.)
    page.wait_for_function(
        "document.querySelector('#bench-question textarea')?.value.includes('4-bit vs float32')"
    )
    assert Q4 in page.inner_text("#bench-models")
    # A tiny run of its own: the float32 model only, 2 prompt lengths x 2 trials.
    page.click(f"#bench-models .token:has-text('{Q4}') .token-remove")
    page.fill("#bench-name textarea", "uitiny")
    page.fill("#bench-prompts textarea", "8, 24")
    page.fill("#bench-gens textarea", "4")
    set_number(page, "#bench-trials input", 2)
    set_number(page, "#bench-warmup input", 0)
    page.evaluate(RECORD_TEXTS, "#tab-bench")
    page.click("#bench-run")
    page.wait_for_function("document.querySelector('#bench-status')?.innerText.includes('finished')")
    status = page.inner_text("#bench-status")
    assert "4 rows" in status and "uitiny.csv" in status, status
    assert any(re.search(r"\d/4 trials", t) for t in page.evaluate("window.shown")), "no progress bar"
    summary = page.inner_text("#bench-summary")
    assert F32 in summary and Q4 not in summary
    for i in range(4):  # the report plots, drawn from the same rows
        page.wait_for_selector(f"#bench-plot-{i} img")
    link = page.get_attribute("#bench-csv a", "href")
    assert link
    csv_path = ui["settings"].results_dir / "uitiny.csv"
    download = httpx.get(urljoin(page.url, link), timeout=30)
    assert download.status_code == 200 and download.content == csv_path.read_bytes()
    assert len(read_results(csv_path)) == 4
    screenshot(page, "benchmark")

    # Stop ends a longer run after the trial in flight; its completed rows are kept.
    page.fill("#bench-gens textarea", "48")
    set_number(page, "#bench-trials input", 5)
    page.click("#bench-run")
    assert wait_until(lambda: count_rows(csv_path) >= 5, timeout_s=120)
    page.click("#bench-stop")
    page.wait_for_function("document.querySelector('#bench-status')?.innerText.includes('stopped')")
    kept = len(read_results(csv_path)) - 4
    assert 1 <= kept < 10 and f"{kept} rows" in page.inner_text("#bench-status")
    assert wait_until(lambda: not engine.exclusive_held, timeout_s=30)


def test_quantize_tab_makes_variants_plots_pareto_and_fills_the_pickers(
    page: Any, ui: dict[str, Any], engine: Engine
) -> None:
    from workbench.reports.schema import QUANT_COLUMNS
    from workbench.reports.store import read_results

    page.get_by_role("tab", name="Quantize").click()
    # A sweep file fills the settings; the benchmark specs are not offered here.
    page.click("#quant-experiment input")
    assert page.get_by_role("option", name="default.toml").count() == 0
    page.get_by_role("option", name="quant_sweep.toml").click()
    page.wait_for_function("document.querySelector('#quant-question textarea')?.value.includes('quality')")
    assert "mxfp4" in page.inner_text("#quant-recipes")
    # A tiny sweep of its own: a fresh page has q8, q4, q2; keep q8, add a typed q3-g32.
    page.reload()
    page.wait_for_function("document.querySelector('#wb-header')?.innerText.includes('Engine on')")
    page.get_by_role("tab", name="Quantize").click()
    for recipe in ("q4", "q2"):
        page.click(f"#quant-recipes .token:has-text('{recipe}') .token-remove")
    page.fill("#quant-recipes input", "q3-g32")
    page.press("#quant-recipes input", "Enter")
    page.fill("#quant-name textarea", "uiquant")
    for key, value in (
        ("eval-tokens", 32), ("window", 32), ("divergence-prompts", 1), ("divergence-tokens", 4),
        ("prompt-tokens", 8), ("generation-tokens", 2), ("trials", 1), ("warmup", 0),
    ):  # fmt: skip
        set_number(page, f"#quant-{key} input", value)
    page.evaluate(RECORD_TEXTS, "#tab-quant")
    page.click("#quant-run")
    page.wait_for_function(
        "document.querySelector('#quant-status')?.innerText.includes('finished')", timeout=300_000
    )
    status = page.inner_text("#quant-status")
    assert "3 variants" in status and "uiquant.csv" in status, status
    assert any(re.search(r"\d+/\d+ steps", t) for t in page.evaluate("window.shown")), "no progress bar"
    table = page.inner_text("#quant-table")
    assert "reference" in table and "q8-g64" in table and "q3-g32" in table
    page.wait_for_selector("#quant-pareto img")
    df = read_results(ui["settings"].results_dir / "uiquant.csv", QUANT_COLUMNS)
    assert list(df["recipe"]) == ["reference", "q8-g64", "q3-g32"] and df["kl_mean"].iloc[0] == 0
    screenshot(page, "quantize")

    # The new variants are in the Chat picker at once, and chat with them works.
    page.get_by_role("tab", name="Chat").click()
    page.click("#chat-model input")
    assert page.get_by_role("option", name=re.compile("smollm2-135m-instruct-q3-g32")).count() == 1
    page.keyboard.press("Escape")
    assert "smollm2-135m-instruct-q3-g32" in [m.id for m in engine.models()]


def test_arena_runs_battles_and_judges_three_blind(page: Any, ui: dict[str, Any], tmp_path: Path) -> None:
    from workbench.arena.battles import read_battles

    prompts = tmp_path / "uiarena.txt"
    prompts.write_text("Say hello.\nName a fruit.\nName a colour.\n")
    page.get_by_role("tab", name="Arena").click()
    page.click("#arena-run-box button.label-wrap")
    # The default model and its 4-bit sibling are picked; the prompt set is typed as a path.
    assert F32 in page.inner_text("#arena-models") and Q4 in page.inner_text("#arena-models")
    page.fill("#arena-prompts input", str(prompts))
    page.press("#arena-prompts input", "Enter")
    set_number(page, "#arena-temperature input[type=number]", 0)
    set_number(page, "#arena-max-tokens input", 6)
    page.click("#arena-run")
    page.wait_for_function(
        "document.querySelector('#arena-run-status')?.innerText.includes('3 battles')", timeout=300_000
    )
    # The new set opens for judging: blind, no model name anywhere in the judging area.
    page.wait_for_function("document.querySelector('#arena-progress')?.innerText.includes('0 / 3 judged')")
    battles = read_battles(ui["settings"].results_dir / "uiarena.battles.csv")
    assert len(battles) == 3 and {b["picker_order"] for b in battles} <= {"1,2", "2,1"}
    judging = ["#arena-progress", "#arena-prompt", "#arena-output-a", "#arena-output-b", "#arena-reveal"]
    for sel in judging:
        text = page.inner_text(sel)
        assert F32 not in text and Q4 not in text, (sel, text)
    assert battles[0]["prompt"] in page.inner_text("#arena-prompt")
    assert page.inner_text("#arena-output-a").strip() == battles[0]["output_a"].strip()
    screenshot(page, "arena-blind")

    # Three votes: the keyboard (A), a click (B), the keyboard (T); each reveals its models.
    page.click("#arena-progress")  # the focus leaves the text fields, so keys vote
    for n, (how, verdict) in enumerate([("key", "a"), ("click", "b"), ("key", "t")], start=1):
        battle = battles[n - 1]
        if how == "key":
            page.keyboard.press(verdict.upper())
        else:
            page.click(f"#arena-vote-{verdict}")
        page.wait_for_function(
            f"document.querySelector('#arena-progress')?.innerText.includes('{n} / 3 judged')"
        )
        reveal = page.inner_text("#arena-reveal")
        assert f"A was {battle['model_a']}" in reveal and f"B was {battle['model_b']}" in reveal, reveal
        # The table updates with every vote.
        page.wait_for_function(
            f"document.querySelector('#arena-caption')?.innerText.startsWith('{n} vote')", timeout=30_000
        )
    assert "all judged" in page.inner_text("#arena-progress")
    pairs = page.inner_text("#arena-pair-table")
    models = page.inner_text("#arena-model-table")
    assert F32 in models and Q4 in models and "tok" not in pairs
    page.wait_for_selector("#arena-plot img")
    with open(ui["settings"].results_dir / "uiarena.votes.csv", newline="") as f:
        votes = list(csv.DictReader(f))
    assert [v["verdict"] for v in votes] == ["a", "b", "tie"]
    assert [v["winner_model"] for v in votes] == [battles[0]["model_a"], battles[1]["model_b"], ""]
    wins = {F32: 0, Q4: 0}
    for v in votes[:2]:
        wins[v["winner_model"]] += 1
    # The pair row shows the same counts as the file: x wins, y wins, 1 tie.
    # (The table's text: its label, the 12 headers, then the one row's 12 cells.)
    texts = [t.strip() for t in pairs.splitlines() if t.strip()]
    cells = texts[texts.index("hint") + 1 :]
    x, y = cells[0], cells[1]
    assert {x, y} == {F32, Q4} and cells[2] == "3"
    assert (int(cells[3]), int(cells[4]), int(cells[5])) == (wins[x], wins[y], 1), cells
    screenshot(page, "arena")
