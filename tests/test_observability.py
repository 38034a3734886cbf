"""/health while the default model loads or after it failed, and /metrics (Prometheus
text, key-guarded) counting what the engine and the HTTP edge did, on live servers."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import openai
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from tests.helpers import LiveServer
from workbench.config import Settings
from workbench.engine import Engine
from workbench.engine.embedded import EMBEDDED_IDS

F32 = EMBEDDED_IDS["f32"]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def test_health_is_503_while_the_default_model_loads_then_200(settings: Settings, tmp_path: Path) -> None:
    fresh = settings.with_(models_dir=tmp_path / "models", default_model=F32)  # converts on first load
    with LiveServer(create_app(fresh, with_ui=False), wait_ready=False) as live:
        seen = []
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            r = httpx.get(f"{live.url}/health", timeout=30)
            seen.append((r.status_code, r.json()["status"]))
            if r.status_code == 200:
                break
            time.sleep(0.1)
        assert seen[0] == (503, "loading"), seen[:3]
        assert seen[-1] == (200, "ok")
        assert set(seen) <= {(503, "loading"), (200, "ok")}


def test_health_is_503_when_the_default_model_failed(settings: Settings, engine: Engine) -> None:
    broken = settings.with_(default_model="no-such-model")
    with Engine(broken) as own, LiveServer(create_app(broken, own, with_ui=False)) as live:
        r = httpx.get(f"{live.url}/health")
        assert r.status_code == 503 and r.json()["status"] == "failed"
        assert "no-such-model" in r.json()["detail"]


def test_metrics_count_requests_tokens_and_latency(settings: Settings, engine: Engine) -> None:
    keyed = settings.with_(api_key="sekrit")
    with LiveServer(create_app(keyed, engine, with_ui=False)) as live:
        assert httpx.get(f"{live.url}/metrics").status_code == 401  # the key guards it
        auth = {"Authorization": "Bearer sekrit"}
        before = samples(httpx.get(f"{live.url}/metrics", headers=auth).text)
        client = openai.OpenAI(base_url=live.url + "/v1", api_key="sekrit", max_retries=0)
        reply = client.chat.completions.create(
            model=F32, messages=[{"role": "user", "content": "Hi"}], max_tokens=5, temperature=0
        )
        httpx.get(f"{live.url}/v1/models", headers={"Host": "elsewhere.example"})  # refused: 403
        r = httpx.get(f"{live.url}/metrics", headers=auth)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        after = samples(r.text)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    route = {"method": "POST", "route": "/v1/chat/completions", "status": "200"}
    assert grew("workbench_http_requests_total", **route) == 1
    assert grew("workbench_http_requests_total", method="GET", route="other", status="403") == 1
    finish = reply.choices[0].finish_reason
    assert grew("workbench_generations_total", model=F32, finish_reason=finish) == 1
    assert grew("workbench_prompt_tokens_total", model=F32) == reply.usage.prompt_tokens
    assert grew("workbench_generation_tokens_total", model=F32) == reply.usage.completion_tokens
    assert grew("workbench_ttft_seconds_count", model=F32) == 1
    assert value(after, "workbench_queue_depth") == 0 and value(after, "workbench_active_streams") == 0
    assert value(after, "workbench_model_loads_total") >= 0
    assert value(after, "workbench_memory_bytes", kind="process_rss") > 1e8
