"""/health while the default model loads or after it failed; /health, /metrics and
/v1/models answering at once (< 1 s) with correct content while the engine loads a model or
runs a benchmark; /metrics (Prometheus text, key-guarded) counting what the engine and the
HTTP edge did. On live servers."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import openai
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from tests.helpers import LiveServer, wait_until
from workbench.bench.runner import run_benchmark
from workbench.bench.spec import BenchSpec
from workbench.config import Settings
from workbench.engine import CancelToken, Engine
from workbench.engine.models.embedded import EMBEDDED_IDS

F32 = EMBEDDED_IDS["f32"]
Q4 = EMBEDDED_IDS["4bit"]
# What "at once" means for the three routes an orchestrator polls, whatever the engine does.
PROMPT_S = 1.0


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(found: dict, name: str, default: float | None = None, **labels: str) -> float:
    """A sample's value; a missing sample fails the test unless `default` is given."""
    key = (name, tuple(sorted(labels.items())))
    if default is None:
        assert key in found, f"no sample {key} in /metrics"
        return found[key]
    return found.get(key, default)


def test_health_is_503_while_the_default_model_loads_then_200(settings: Settings, tmp_path: Path) -> None:
    """The first load converts the embedded GGUF (seconds): meanwhile all three routes answer
    at once, /health 503 naming the load, /v1/models listing the ids, /metrics its gauges.
    Polled from a child process, as an orchestrator would: its timings are the server's."""
    fresh = settings.with_(models_dir=tmp_path / "models", default_model=F32)  # converts on first load
    with LiveServer(create_app(fresh, with_ui=False), wait_ready=False) as live:
        polled = subprocess.run(
            [sys.executable, "-m", "tests.route_poller", live.url, "300"],
            capture_output=True,
            text=True,
            timeout=330,
            check=False,
        )
        final = httpx.get(f"{live.url}/v1/models", timeout=30).json()
    assert polled.returncode == 0, polled.stderr[-2000:]
    answers = [json.loads(line) for line in polled.stdout.splitlines()]
    slow = [(a["path"], round(a["took_s"], 2)) for a in answers if a["took_s"] >= PROMPT_S]
    assert not slow, slow
    seen, activities = [], set()
    for a in answers:
        if a["path"] == "/health":
            seen.append((a["status"], a["body"]["status"]))
            activities.update(a["body"]["engine"].get("activity", []))
        elif a["path"] == "/metrics":
            assert a["status"] == 200 and "workbench_queue_depth" in a["body"], a
        elif a["status"] == 200:  # /v1/models: 503 only before the engine thread has started
            assert F32 in {m["id"] for m in a["body"]["data"]}
    assert seen[0] == (503, "loading"), seen[:3]
    assert seen[-1] == (200, "ok")
    assert set(seen) <= {(503, "loading"), (200, "ok")}
    assert f"loading {F32}" in activities, activities
    loaded = {m["id"]: m["loaded"] for m in final["data"]}
    assert loaded[F32] is True


def test_the_three_routes_answer_at_once_while_a_benchmark_holds_the_engine(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    """A real benchmark (it loads its model alone, then generates, under engine.exclusive())
    runs until cancelled; meanwhile every poll answers within PROMPT_S, /health names the
    benchmark, /v1/models shows the model it loaded, /metrics its memory. Polled from a child
    process, as an orchestrator would (the test process's own interpreter lock is not timed)."""
    # ignore_eos and a long generation: the run lasts until cancelled on any machine.
    spec = BenchSpec(
        name="held", models=(Q4,), prompt_tokens=(8,), generation_tokens=(4000,), trials=1, warmup=0
    )
    cancel = CancelToken()
    failure: list[BaseException] = []
    stop = tmp_path / "stop"

    def bench() -> None:
        try:
            run_benchmark(engine, spec, cancel=cancel)
        except BaseException as exc:
            failure.append(exc)

    with LiveServer(create_app(settings, engine, with_ui=False)) as live:
        runner = threading.Thread(target=bench, daemon=True)
        runner.start()
        poller = subprocess.Popen(
            [sys.executable, "-m", "tests.route_poller", live.url, "300", str(stop)],
            stdout=subprocess.PIPE,
            text=True,
        )
        named, slow, current = [], [], {}
        try:
            assert poller.stdout is not None
            for line in poller.stdout:  # /health, /metrics, /v1/models, again and again
                answer = json.loads(line)
                if answer["took_s"] >= PROMPT_S:
                    slow.append((answer["path"], round(answer["took_s"], 2)))
                current[answer["path"]] = answer
                if answer["path"] != "/v1/models":
                    continue
                health = current["/health"]["body"]
                assert current["/health"]["status"] == 200, health
                models = {m["id"]: m for m in answer["body"]["data"]}
                assert {F32, Q4} <= set(models)
                found = samples(current["/metrics"]["body"])
                assert value(found, "workbench_memory_bytes", kind="process_rss") > 1e8
                held = any(a.startswith("benchmark held, run ") for a in health["engine"]["activity"])
                if held and health["engine"]["active_streams"] == 1:  # past its load: generating
                    named.append((health, models))
                if len(named) >= 3:
                    break
        finally:
            stop.touch()
            poller.wait(timeout=60)
            cancel.cancel()
            runner.join(timeout=120)
    assert len(named) >= 3, (failure, poller.returncode)
    assert not slow, slow
    health, models = named[-1]
    assert models[Q4]["loaded"] and not models[F32]["loaded"]  # the run loaded its model alone
    assert [m["id"] for m in health["loaded_models"]] == [Q4]
    assert not runner.is_alive() and not failure, failure
    assert wait_until(lambda: not engine.activity() and engine.active_streams == 0, timeout_s=30)


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
        return value(after, name, **labels) - value(before, name, 0.0, **labels)

    route = {"method": "POST", "route": "/v1/chat/completions", "status": "200"}
    assert grew("workbench_http_requests_total", **route) == 1
    assert grew("workbench_http_requests_total", method="GET", route="other", status="403") == 1
    finish = reply.choices[0].finish_reason
    assert grew("workbench_generations_total", model=F32, finish_reason=finish) == 1
    assert grew("workbench_prompt_tokens_total", model=F32) == reply.usage.prompt_tokens
    assert grew("workbench_generation_tokens_total", model=F32) == reply.usage.completion_tokens
    assert grew("workbench_ttft_seconds_count", model=F32) == 1
    assert value(after, "workbench_queue_depth") == 0 and value(after, "workbench_active_streams") == 0
    assert value(after, "workbench_model_loads_total") >= 1  # the session engine has loaded one
    assert value(after, "workbench_memory_bytes", kind="process_rss") > 1e8
