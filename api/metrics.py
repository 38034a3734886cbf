"""GET /metrics in Prometheus' text format (prometheus_client), one registry per app: HTTP
requests, every finished generation on the engine (API, UI, benchmarks alike), and figures
read when scraped. Guarded by the API key when one is set; answers from published state."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.engine_calls import fresh_status
from workbench.engine import Engine, GenerationStats
from workbench.monitor import ServerMonitor

router = APIRouter()
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
TPS_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0)


class _EngineCollector:
    """Engine figures read at scrape time."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        e = self.engine
        yield GaugeMetricFamily(
            "workbench_queue_depth",
            "generations admitted and not finished (running or waiting)",
            e.queued_generations,
        )
        yield GaugeMetricFamily(
            "workbench_active_streams", "generations on the engine thread", e.active_streams
        )
        yield CounterMetricFamily("workbench_model_loads", "models loaded by the engine", e.model_loads)
        live = CounterMetricFamily(
            "workbench_generated_tokens_live",
            "tokens generated, counted as each is made (running generations too)",
            labels=["model"],
        )
        for model, n in sorted(e.tokens_generated().items()):
            live.add_metric([model], n)
        yield live
        status = e.status()
        if e.running and status is not None:  # as published: never waits for the engine
            memory = GaugeMetricFamily("workbench_memory_bytes", "memory by kind", labels=["kind"])
            for kind, gb in asdict(status.memory).items():
                if kind.endswith("_gb"):
                    memory.add_metric([kind.removesuffix("_gb")], gb * 1e9)
            yield memory


class Metrics:
    """The app's metrics: HTTP requests by method, route and status (RequestCounter);
    generations by model and finish reason, prompt / cached / generated tokens, speculative
    decoding's drafted / accepted tokens and decode steps (acceptance rate = accepted / drafted,
    tokens per step = generated tokens of speculating generations / steps), TTFT and
    decode tok/s histograms (`observe`, the engine's stats listener: whoever asked for the
    generation; the app removes it at shutdown); read when scraped (_EngineCollector): queue
    depth (running + waiting generations), active streams, model loads, MLX and process memory."""

    def __init__(self, engine: Engine) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "workbench_http_requests", "HTTP requests answered", ["method", "route", "status"], registry=r
        )
        self.generations = Counter(
            "workbench_generations", "generations finished", ["model", "finish_reason"], registry=r
        )
        self.prompt_tokens = Counter("workbench_prompt_tokens", "prompt tokens", ["model"], registry=r)
        self.cached_tokens = Counter(
            "workbench_cached_prompt_tokens", "prompt tokens the prompt cache supplied", ["model"], registry=r
        )
        self.cache_lookups = Counter(
            "workbench_prompt_cache_lookups",
            "prompt cache lookups by result: hit (all it knew of the prompt), or the miss reason",
            ["model", "result"],
            registry=r,
        )
        self.generation_tokens = Counter(
            "workbench_generation_tokens", "generated tokens", ["model"], registry=r
        )
        self.draft_tokens = Counter(
            "workbench_speculative_draft_tokens",
            "tokens drafted by speculative decoding",
            ["model"],
            registry=r,
        )
        self.accepted_tokens = Counter(
            "workbench_speculative_accepted_tokens",
            "drafted tokens the model accepted",
            ["model"],
            registry=r,
        )
        self.decode_steps = Counter(
            "workbench_speculative_decode_steps",
            "forward passes of speculative decoding",
            ["model"],
            registry=r,
        )
        self.ttft = Histogram(
            "workbench_ttft_seconds", "time to first token", ["model"], buckets=TTFT_BUCKETS, registry=r
        )
        self.tps = Histogram(
            "workbench_generation_tokens_per_second",
            "decode tok/s of each generation",
            ["model"],
            buckets=TPS_BUCKETS,
            registry=r,
        )
        r.register(_EngineCollector(engine))  # type: ignore[arg-type]
        engine.add_stats_listener(self.observe)

    def observe(self, stats: GenerationStats) -> None:
        model = stats.model
        self.generations.labels(model, stats.finish_reason).inc()
        self.prompt_tokens.labels(model).inc(stats.prompt_tokens)
        self.cached_tokens.labels(model).inc(stats.cached_tokens)
        miss = stats.cache_miss
        self.cache_lookups.labels(model, miss.reason if miss else "hit").inc()
        self.generation_tokens.labels(model).inc(stats.generation_tokens)
        if stats.speculative:
            self.draft_tokens.labels(model).inc(stats.draft_tokens)
            self.accepted_tokens.labels(model).inc(stats.accepted_tokens)
            self.decode_steps.labels(model).inc(stats.decode_steps)
        if stats.generation_tokens:
            self.ttft.labels(model).observe(stats.ttft_s)
        if stats.generation_tps > 0:
            self.tps.labels(model).observe(stats.generation_tps)


# Where a request's generations leave their stats (api/engine_calls.py), for the monitor.
GENERATIONS_KEY = "workbench.generations"


class RequestCounter:
    """ASGI middleware: counts each HTTP response by method, route template and status;
    a /v1 request also goes to the dashboard's monitor with its generations' stats."""

    def __init__(self, app: ASGIApp, metrics: Metrics, monitor: ServerMonitor | None = None) -> None:
        self.app = app
        self.metrics = metrics
        self.monitor = monitor

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status, started = 0, time.perf_counter()
        generations: list[GenerationStats] = []
        scope[GENERATIONS_KEY] = generations

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            # The route template, not the raw path, so labels stay few.
            route = getattr(scope.get("route"), "path", None)
            if route is None:
                route = "/ui" if scope.get("path", "").startswith("/ui") else "other"
            self.metrics.requests.labels(scope.get("method", ""), route, str(status or 500)).inc()
            if self.monitor is not None and route.startswith("/v1"):
                where = f"{scope.get('method', '')} {route}"
                self.monitor.record_request(where, status or 500, time.perf_counter() - started, generations)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    # On the loop itself: every figure is a counter or published state (a few ms), and a
    # thread-pool hop could queue behind requests waiting for a busy engine.
    await fresh_status(request.app.state.engine)
    body = generate_latest(request.app.state.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
