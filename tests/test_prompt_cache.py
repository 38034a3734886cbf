"""The cache explainer: each reply's timings say why the prompt cache did not supply more, and
/metrics counts lookups by result (a real server on its own engine with a 2-entry cache)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from api.app import create_app
from tests.helpers import LiveServer
from workbench.config import Settings
from workbench.engine import Engine, GenerationRequest
from workbench.engine.cache_miss import common_prefix
from workbench.engine.models.embedded import EMBEDDED_IDS

F32 = EMBEDDED_IDS["f32"]
ROMANS = "The history of the Roman empire, told briefly for a school class of twelve year olds: "
CHANGED = ROMANS.replace("Roman", "Persian")
OTHER = "Write a short shopping list for a picnic in the park on a sunny afternoon: "


@pytest.fixture(scope="module")
def two_entries(settings: Settings) -> Iterator[tuple[str, Engine]]:
    small = settings.with_(prompt_cache_entries=2)
    own = Engine(small)
    own.load(F32)
    with own, LiveServer(create_app(small, own, with_ui=False)) as server:
        yield server.url, own


def timings_of(client: openai.OpenAI, prompt: str) -> dict[str, Any]:
    reply = client.completions.create(model=F32, prompt=prompt, max_tokens=3, temperature=0)
    return reply.model_extra["timings"]


def test_a_miss_says_why_no_entry_diverged_at_the_right_token_and_evicted(
    two_entries: tuple[str, Engine],
) -> None:
    url, own = two_entries
    client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=120)
    first = timings_of(client, ROMANS)
    assert first["cached_tokens"] == 0 and first["cache_miss"]["reason"] == "no_entry"

    # One word changed: the cached entry serves the shared start and says where it stopped.
    at = common_prefix(own.tokenize(ROMANS, F32), own.tokenize(CHANGED, F32))
    assert 0 < at < len(own.tokenize(CHANGED, F32)) - 1
    changed = timings_of(client, CHANGED)
    miss = changed["cache_miss"]
    assert miss["reason"] == "diverged" and miss["at"] == at and changed["cached_tokens"] == at
    assert "Roman" in miss["cached_text"] and "Persian" in miss["prompt_text"]

    # A third prompt fills the 2-entry cache past its bound: the oldest (ROMANS) is dropped.
    assert timings_of(client, OTHER)["cache_miss"]["reason"] == "no_entry"
    again = timings_of(client, ROMANS)["cache_miss"]
    assert again["reason"] == "evicted" and again["bound"] == "max entries (2)"
    assert again["at"] == len(own.tokenize(ROMANS, F32)) - 1

    # The same prompt once more: all of it but the last token comes from the cache, no miss.
    hit = timings_of(client, ROMANS)
    assert hit["cache_miss"] is None and hit["cached_tokens"] == len(own.tokenize(ROMANS, F32)) - 1

    text = httpx.get(url + "/metrics", timeout=30).text
    lookups = {
        result: next(
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith("workbench_prompt_cache_lookups_total") and f'result="{result}"' in line
        )
        for result in ("no_entry", "diverged", "evicted", "hit")
    }
    assert lookups == {"no_entry": 2.0, "diverged": 1.0, "evicted": 1.0, "hit": 1.0}
    # The stats line under a reply (chat tab, CLI) shows the cached tokens.
    stats = own.generate(GenerationRequest(prompt=ROMANS, model=F32, max_tokens=2)).stats
    assert f"prompt {stats.prompt_tokens} tok ({stats.cached_tokens} cached)" in stats.summary()
