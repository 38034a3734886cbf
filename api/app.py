"""create_app: the composition root of the HTTP server. Builds the FastAPI app on
one Engine, whose thread starts and stops with the app's lifespan.

`workbench serve` runs it through uvicorn's factory string `api.app:create_app`,
so settings come from the environment the CLI prepared.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from api import routes_health
from api.anthropic import routes as anthropic_routes
from api.auth import require_api_key
from api.errors import install_error_handlers
from api.lifecycle import Drain, DrainGate, install_sigterm_drain
from api.metrics import Metrics, RequestCounter
from api.metrics import router as metrics_router
from api.openai import routes as openai_routes
from api.openapi import drop_validation_422
from api.security import install_security
from workbench import __version__
from workbench.config import Settings
from workbench.engine import Engine, EngineError

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None, engine: Engine | None = None, *, with_ui: bool = True
) -> FastAPI:
    """The ASGI app: `/v1` (OpenAI-compatible, plus Anthropic's `/v1/messages`),
    `/health` and, with `with_ui`, the Gradio workbench at `/ui` (`/` redirects
    there), all on one `engine`.

    SIGTERM under `workbench serve` drains first (api/lifecycle.py). Without `engine`,
    the app makes its own and owns it: started at lifespan startup
    (the default model then loads in the background; /health says 503 "loading" until it
    has), stopped at shutdown. A given engine is started
    if needed and left running (its creator owns it).
    """
    settings = settings or Settings.from_env()
    owns_engine = engine is None
    eng = engine if engine is not None else Engine(settings, start=False)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        app.state.status = ("loading", "the engine is starting and loading the default model")
        if not eng.running:
            eng.start()

        async def load_default() -> None:
            try:
                await run_in_threadpool(eng.load)
                app.state.status = ("ok", "")
                log.info(
                    "serving on engine: device=%s blas=%s default=%s", eng.device, eng.blas, eng.default_model
                )
            except EngineError as exc:
                log.error("the default model could not be loaded (the server runs on): %s", exc)
                app.state.status = ("failed", f"the default model could not be loaded: {exc}")

        # The default model loads (and, the first time, converts) in the background: the
        # server answers at once (/health: 503 "loading"; the UI opens), and requests that
        # need the engine meanwhile wait for it on the engine thread.
        loading = asyncio.create_task(load_default())
        undo_drain = install_sigterm_drain(
            app.state.drain,
            drain_s=settings.drain_s,
            idle=lambda: eng.active_streams == 0 and eng.queued_generations == 0,
        )
        try:
            yield
        finally:
            undo_drain()
            eng.remove_stats_listener(app.state.metrics.observe)  # a shared engine outlives the app
            if owns_engine:
                eng.stop()
            await asyncio.gather(loading, return_exceptions=True)

    app = FastAPI(
        title="MLX Workbench API",
        version=__version__,
        description="OpenAI-compatible API (and Anthropic's Messages API at /v1/messages) on one "
        "MLX engine. Responses carry a `timings` extension next to `usage` (TTFT, prompt and "
        "generation tok/s, peak memory).",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = eng
    app.state.status = ("loading", "the engine has not started")
    app.state.metrics = Metrics(eng)
    install_error_handlers(app, anthropic_prefix=anthropic_routes.PREFIX)
    drop_validation_422(app)
    app.state.drain = Drain()
    app.add_middleware(DrainGate, drain=app.state.drain)
    install_security(app, settings.served_hosts(), settings.cors_origins, settings.max_body_mb)
    app.add_middleware(RequestCounter, metrics=app.state.metrics)  # outermost: refusals count too
    protected = [Depends(require_api_key)]
    for router in (openai_routes.router, anthropic_routes.router, metrics_router):
        app.include_router(router, dependencies=protected)
    app.include_router(routes_health.router)
    if with_ui:
        # Imported here: gradio is heavy, and an API-only app does not need it.
        from workbench.ui import UI_PATH, mount_ui

        mount_ui(app, eng, settings, UI_PATH)

        @app.get("/", include_in_schema=False)
        def home() -> RedirectResponse:
            return RedirectResponse(f"{UI_PATH}/")

    return app
