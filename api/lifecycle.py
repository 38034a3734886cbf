"""Graceful shutdown on SIGTERM: requests in flight finish (for at most drain_s), new
ones get 503 with Retry-After, then uvicorn's own exit runs (the lifespan shutdown
stops the engine) and `workbench serve` exits with status 0.

- `Drain` is the shared state; `DrainGate` (ASGI middleware) counts /v1 requests in
  flight and, once draining, refuses every new request but /health (which then says
  503 "draining");
- `install_sigterm_drain` (at lifespan startup; only in the main thread, i.e. under
  `workbench serve`, where uvicorn has installed its signal handlers) puts itself in
  front of uvicorn's SIGTERM handler: the first SIGTERM starts the drain and hands
  over to uvicorn once nothing is in flight (no /v1 request, no generation on the
  engine: UI streams count there) or drain_s has passed; a second SIGTERM, and
  Ctrl-C, stop at once as before.

Knows Starlette, signals and an `idle` callable; nothing of the engine itself.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import ApiError
from api.security import API_PREFIX, refuse

log = logging.getLogger(__name__)
RETRY_AFTER_S = 5
_POLL_S = 0.05


@dataclass
class Drain:
    """Whether the server is draining, and how many /v1 requests are in flight."""

    draining: bool = False
    in_flight: int = 0


class DrainGate:
    """Count /v1 requests in flight; once draining, 503 every new request but /health."""

    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if self.drain.draining and path != "/health":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1001})  # going away
                return
            err = ApiError(
                503,
                "the server is shutting down: requests in flight finish, new ones are refused; "
                "retry against a running server",
                type="server_error",
                code="shutting_down",
                headers={"Retry-After": str(RETRY_AFTER_S), "Connection": "close"},
            )
            await refuse(scope, receive, send, err)
            return
        counted = path.startswith(API_PREFIX)
        self.drain.in_flight += counted
        try:
            await self.app(scope, receive, send)
        finally:
            self.drain.in_flight -= counted


def install_sigterm_drain(drain: Drain, *, drain_s: float, idle: Callable[[], bool]) -> Callable[[], None]:
    """Put the drain in front of the current SIGTERM handler; returns the undo. A no-op
    outside the main thread, or when no Python handler is installed (not under uvicorn)."""
    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        return lambda: None
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()  # the loop keeps only weak references
    hand_over: Callable[[int, FrameType | None], Any] = previous

    async def finish(sig: int, frame: FrameType | None) -> None:
        deadline = time.monotonic() + drain_s
        log.warning("SIGTERM: draining (new requests get 503; at most %.0f s)", drain_s)
        while time.monotonic() < deadline and not (drain.in_flight == 0 and idle()):
            await asyncio.sleep(_POLL_S)
        left = drain.in_flight
        log.warning("drained (%s); shutting down", f"{left} requests cut" if left else "nothing in flight")
        hand_over(sig, frame)

    def on_sigterm(sig: int, frame: FrameType | None) -> None:
        if drain.draining:  # a second SIGTERM: stop now
            hand_over(sig, frame)
            return
        drain.draining = True
        loop.call_soon_threadsafe(lambda: tasks.add(loop.create_task(finish(sig, frame))))

    signal.signal(signal.SIGTERM, on_sigterm)
    return lambda: signal.signal(signal.SIGTERM, previous)
