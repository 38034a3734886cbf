"""create_app: the composition root of the HTTP server, one FastAPI app on one Engine (routers,
middleware, error handlers, the mounted UI). `workbench serve` runs it through uvicorn's
factory string `api.app:create_app`, so settings come from the environment the CLI set."""

from __future__ import annotations

from fastapi import Depends, FastAPI
from fastapi.responses import RedirectResponse

from api import routes_health
from api.anthropic import routes as anthropic_routes
from api.auth import require_api_key
from api.errors import install_error_handlers
from api.lifecycle import Drain, DrainGate, lifespan
from api.metrics import Metrics, RequestCounter
from api.metrics import router as metrics_router
from api.openai import routes as openai_routes
from api.openai.responses_api import routes as responses_routes
from api.openai.responses_api.store import ResponseStore
from api.openapi import drop_validation_422
from api.security import install_security
from workbench import __version__
from workbench.config import Settings
from workbench.engine import Engine
from workbench.monitor import ServerMonitor


def create_app(
    settings: Settings | None = None, engine: Engine | None = None, *, with_ui: bool = True
) -> FastAPI:
    """The ASGI app: `/v1` (OpenAI-compatible: chat, completions, responses; plus Anthropic's
    `/v1/messages`),
    `/health` and, with `with_ui`, the Gradio workbench at `/ui` (`/` redirects
    there), all on one `engine`.

    Without `engine` the app makes its own and owns it (api/lifecycle.py: started at
    lifespan startup, the default model loaded in the background, stopped at shutdown); a
    given engine is started if needed and left running. SIGTERM drains first.
    """
    settings = settings or Settings.from_env()
    owns_engine = engine is None
    eng = engine if engine is not None else Engine(settings, start=False)

    app = FastAPI(
        title="MLX Workbench API",
        version=__version__,
        description="OpenAI-compatible API (and Anthropic's Messages API at /v1/messages) on one "
        "MLX engine. Responses carry a `timings` extension next to `usage` (TTFT, prompt and "
        "generation tok/s, peak memory).",
        lifespan=lifespan(eng, settings, owns_engine=owns_engine),
    )
    app.state.settings = settings
    app.state.engine = eng
    app.state.status = ("loading", "the engine has not started")
    app.state.metrics = Metrics(eng)
    app.state.monitor = ServerMonitor(eng)  # the UI's Server tab; sampled while the app runs
    install_error_handlers(app, anthropic_prefix=anthropic_routes.PREFIX)
    drop_validation_422(app)
    app.state.drain = Drain()
    app.add_middleware(DrainGate, drain=app.state.drain)
    install_security(app, settings.served_hosts(), settings.cors_origins, settings.max_body_mb)
    # Outermost: refusals count too.
    app.add_middleware(RequestCounter, metrics=app.state.metrics, monitor=app.state.monitor)
    protected = [Depends(require_api_key)]
    app.state.responses = ResponseStore(settings.responses_stored)
    for router in (openai_routes.router, responses_routes.router, anthropic_routes.router, metrics_router):
        app.include_router(router, dependencies=protected)
    app.include_router(routes_health.router)
    if with_ui:
        # Imported here: gradio is heavy, and an API-only app does not need it.
        from workbench.ui import UI_PATH, mount_ui

        mount_ui(app, eng, settings, UI_PATH, monitor=app.state.monitor)

        @app.get("/", include_in_schema=False)
        def home() -> RedirectResponse:
            return RedirectResponse(f"{UI_PATH}/")

    return app
