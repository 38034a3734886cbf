"""ServerMonitor: the last 15 minutes of a server for the dashboard, from the counters /metrics
exposes (requests, live generated tokens, TTFT, queue, streams, memory) and the recent requests.
Reads only what the engine publishes, so it never waits for the engine thread."""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from workbench.engine import Engine, GenerationStats

SAMPLE_S = 2.0
WINDOW_S = 15 * 60
TTFT_WINDOW_S = 30.0  # TTFT percentiles over the generations finished in the last 30 s
RECENT = 200


@dataclass(frozen=True)
class Sample:
    """The counters and gauges at one moment (`at`: time.time())."""

    at: float
    queue: int
    active: int
    requests: int
    tokens: dict[str, int]
    memory: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class RequestRow:
    """One finished /v1 request: route, the model and tokens of its generations (none for a
    refused one), first TTFT, decode tok/s, HTTP status, time to the last byte."""

    at: float
    route: str
    status: int
    duration_s: float
    model: str = ""
    prompt_tokens: int = 0
    generation_tokens: int = 0
    ttft_s: float | None = None
    tps: float | None = None


def percentile(values: Sequence[float], q: float) -> float | None:
    """The `q` quantile (0..1) by linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


class ServerMonitor:
    """Samples `engine` every `sample_s` on a thread of its own (start / stop) and keeps
    WINDOW_S of samples, the TTFT of finished generations (an engine stats listener) and the
    last RECENT requests (record_request, called by the HTTP layer)."""

    def __init__(self, engine: Engine, sample_s: float = SAMPLE_S) -> None:
        self.engine = engine
        self.sample_s = sample_s
        keep = int(WINDOW_S / sample_s) + 1
        self._samples: deque[Sample] = deque(maxlen=keep)
        self._ttfts: deque[tuple[float, str, float]] = deque(maxlen=10_000)
        self._recent: deque[RequestRow] = deque(maxlen=RECENT)
        self._requests = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- inputs ------------------------------------------------------------
    def observe(self, stats: GenerationStats) -> None:
        """Engine stats listener: a finished generation's TTFT."""
        if stats.generation_tokens:
            with self._lock:
                self._ttfts.append((time.time(), stats.model, stats.ttft_s))

    def record_request(
        self, route: str, status: int, duration_s: float, stats: Sequence[GenerationStats]
    ) -> None:
        """A finished /v1 request and the generations it ran (its choices)."""
        row = RequestRow(time.time(), route, status, duration_s)
        if stats:
            first = stats[0]
            tps = [s.generation_tps for s in stats if s.generation_tps > 0]
            row = RequestRow(
                row.at,
                route,
                status,
                duration_s,
                model=first.model,
                prompt_tokens=sum(s.prompt_tokens for s in stats),
                generation_tokens=sum(s.generation_tokens for s in stats),
                ttft_s=first.ttft_s,
                tps=sum(tps) / len(tps) if tps else None,
            )
        with self._lock:
            self._requests += 1
            self._recent.append(row)

    def sample(self) -> Sample:
        """Take one sample now (the thread does every sample_s)."""
        status = self.engine.status()
        memory = {k.removesuffix("_gb"): v for k, v in asdict(status.memory).items()} if status else {}
        with self._lock:
            requests = self._requests
        e = self.engine
        sample = Sample(
            time.time(), e.queued_generations, e.active_streams, requests, e.tokens_generated(), memory
        )
        with self._lock:
            self._samples.append(sample)
        return sample

    # ---- the sampling thread -----------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self.engine.add_stats_listener(self.observe)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="server-monitor", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        """The sampling thread runs (else a reader may take samples itself)."""
        return self._thread is not None

    def stop(self) -> None:
        self.engine.remove_stats_listener(self.observe)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(self.sample_s):
                return

    # ---- outputs -----------------------------------------------------------
    def recent(self) -> list[RequestRow]:
        """The recent requests, newest first."""
        with self._lock:
            return list(reversed(self._recent))

    def series(self) -> list[dict[str, Any]]:
        """One point per sample interval of the window: `t` (time.time()), requests/s,
        generated tok/s (total and `tps:<model>`), TTFT p50/p95 (s), queue, active streams
        and memory (GB, by kind)."""
        with self._lock:
            samples, ttfts = list(self._samples), list(self._ttfts)
        points = []
        for before, now in itertools.pairwise(samples):
            dt = max(now.at - before.at, 1e-9)
            point: dict[str, Any] = {
                "t": now.at,
                "requests_per_s": (now.requests - before.requests) / dt,
                "tokens_per_s": (sum(now.tokens.values()) - sum(before.tokens.values())) / dt,
                "queue": now.queue,
                "active_streams": now.active,
                **{f"memory:{k}": v for k, v in now.memory.items()},
            }
            for model, n in now.tokens.items():
                point[f"tps:{model}"] = (n - before.tokens.get(model, 0)) / dt
            recent = [ttft for at, _, ttft in ttfts if now.at - TTFT_WINDOW_S < at <= now.at]
            point["ttft_p50"], point["ttft_p95"] = percentile(recent, 0.5), percentile(recent, 0.95)
            points.append(point)
        return points
