"""Small helpers shared by tests (no fixtures here)."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(predicate: Callable[[], bool], timeout_s: float = 5.0, interval_s: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """A real uvicorn serving `app` on 127.0.0.1 from a background thread."""

    def __init__(self, app: object, *, wait_ready: bool = True) -> None:
        import threading

        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")  # type: ignore[arg-type]
        )
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn-{self.port}", daemon=True)
        self.wait_ready = wait_ready

    def __enter__(self) -> LiveServer:
        self.thread.start()
        if not wait_until(lambda: self.server.started or not self.thread.is_alive(), timeout_s=120):
            raise TimeoutError("uvicorn did not start")
        if not self.server.started:
            raise RuntimeError("uvicorn failed to start (see the log above)")
        if self.wait_ready and not wait_until(self._ready, timeout_s=300, interval_s=0.05):
            raise TimeoutError("the app stayed 'loading' (its default model) for 5 minutes")
        return self

    def _ready(self) -> bool:
        """The default model has loaded (or failed to): /health no longer says 'loading'."""
        import httpx

        try:
            return httpx.get(f"{self.url}/health", timeout=10).json().get("status") != "loading"
        except (httpx.HTTPError, ValueError):
            return False

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


class FinishedGenerations:
    """The stats of every generation the engine finishes while the block runs (an engine
    stats listener), so a test can wait for an outcome instead of timing one."""

    def __init__(self, engine: object) -> None:
        self.engine = engine
        self.seen: list = []

    def __enter__(self) -> FinishedGenerations:
        self.engine.add_stats_listener(self.seen.append)  # type: ignore[attr-defined]
        return self

    def __exit__(self, *exc: object) -> None:
        self.engine.remove_stats_listener(self.seen.append)  # type: ignore[attr-defined]

    def wait(self, count: int = 1, timeout_s: float = 300) -> list:
        """The first `count` finished generations' stats (waits for them; an uncancelled
        4000-token generation would take minutes here, so a cancel shows as one that ended
        early with finish_reason 'cancelled')."""
        assert wait_until(lambda: len(self.seen) >= count, timeout_s=timeout_s, interval_s=0.01), self.seen
        return self.seen[:count]

    def cancelled(self, max_tokens: int, timeout_s: float = 300) -> object:
        """Waits for the one generation to end and checks it was cancelled well short of
        `max_tokens` (its length was forced with ignore_eos): the cancel reached the engine."""
        (stats,) = self.wait(1, timeout_s)
        assert stats.finish_reason == "cancelled", stats
        assert stats.generation_tokens < max_tokens // 2, stats
        return stats
