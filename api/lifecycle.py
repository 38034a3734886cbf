"""The app's life: its lifespan (the engine started, the default model loaded in the
background, an owned engine stopped) and the graceful drain on SIGTERM (in-flight requests
finish, new ones get 503). Knows Starlette, signals and the Engine's start/load/stop."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import ApiError
from api.security import API_PREFIX, refuse
from workbench.config import Settings
from workbench.engine import Engine, EngineError

log = logging.getLogger(__name__)
RETRY_AFTER_S = 5
_POLL_S = 0.05


def lifespan(
    engine: Engine, settings: Settings, *, owns_engine: bool
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The app's lifespan: `engine` started if it is not; the default model loaded (and, the
    first time, converted) in the background, so the server answers at once (/health: 503
    "loading" from app.state.status) and requests that need the engine wait for it on its
    thread; SIGTERM drained (`install_sigterm_drain`); the dashboard's monitor sampling. At
    shutdown the app's stats listeners leave the engine, which is stopped if the app owns
    it (a given one is its creator's)."""

    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        app.state.status = ("loading", "the engine is starting and loading the default model")
        if not engine.running:
            engine.start()
        loading = asyncio.create_task(_load_default(app, engine))
        app.state.monitor.start()
        undo_drain = install_sigterm_drain(
            app.state.drain,
            drain_s=settings.drain_s,
            idle=lambda: engine.active_streams == 0 and engine.queued_generations == 0,
        )
        try:
            yield
        finally:
            undo_drain()
            app.state.monitor.stop()
            engine.remove_stats_listener(app.state.metrics.observe)  # a shared engine outlives the app
            if owns_engine:
                engine.stop()
            await asyncio.gather(loading, return_exceptions=True)

    return run


async def _load_default(app: FastAPI, engine: Engine) -> None:
    try:
        await run_in_threadpool(engine.load)
        app.state.status = ("ok", "")
        facts = (engine.device, engine.blas, engine.default_model)
        log.info("serving on engine: device=%s blas=%s default=%s", *facts)
    except EngineError as exc:
        log.error("the default model could not be loaded (the server runs on): %s", exc)
        app.state.status = ("failed", f"the default model could not be loaded: {exc}")


@dataclass
class Drain:
    """Whether the server is draining, and how many /v1 requests are in flight."""

    draining: bool = False
    in_flight: int = 0


class DrainGate:
    """ASGI middleware: counts /v1 requests in flight; once draining, answers every new
    request but /health (which then says 503 "draining") with 503 and Retry-After."""

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
    """Put the drain in front of the current SIGTERM handler; returns the undo. The first
    SIGTERM starts the drain and hands over to that handler (uvicorn's exit: the lifespan
    shutdown stops the engine, `workbench serve` exits 0) once nothing is in flight (no /v1
    request, no generation: UI streams count there) or drain_s has passed; a second SIGTERM,
    and Ctrl-C, stop at once. A no-op outside the main thread, or when no Python handler is
    installed (not under `workbench serve`, where uvicorn installs its signal handlers)."""
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
