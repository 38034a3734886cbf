"""Safe defaults at the HTTP edge, as ASGI middleware around the whole app (API and UI): a
Host-header allowlist, CORS only for configured origins, a bound on /v1 request bodies.
Errors have the shape of the API they hit; knows Starlette, nothing of the engine."""

from __future__ import annotations

import logging
from typing import Any

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import ApiError, error_response

log = logging.getLogger(__name__)
API_PREFIX = "/v1"
ANTHROPIC_PREFIX = "/v1/messages"


def host_name(header: str) -> str:
    """The name part of a Host header: `[::1]:8080` -> `::1`, `Example:80` -> `example`."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


async def refuse(scope: Scope, receive: Receive, send: Send, err: ApiError) -> None:
    """Answer `err` in the shape of the API the request hit, before any route runs."""
    path = scope.get("path", "")
    response = error_response(
        err, anthropic=path == ANTHROPIC_PREFIX or path.startswith(ANTHROPIC_PREFIX + "/")
    )
    await response(scope, receive, send)


class HostAllowlist:
    """Refuse (403) HTTP and websocket requests whose Host is not in `hosts` ('*': any;
    loopback names by default): a page on another site that rebinds its DNS name to
    127.0.0.1 still sends its own name as Host, so it is refused before any route runs."""

    def __init__(self, app: ASGIApp, hosts: tuple[str, ...]) -> None:
        self.app = app
        self.any = "*" in hosts
        self.hosts = frozenset(host_name(h) for h in hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self.any:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        name = host_name(headers.get(b"host", b"").decode("latin-1"))
        if name in self.hosts:
            await self.app(scope, receive, send)
            return
        log.warning("refused a request for host %r (allowed: %s)", name, sorted(self.hosts))
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        err = ApiError(
            403,
            f"host {name!r} is not served here (allowed: {', '.join(sorted(self.hosts))}); "
            "set WORKBENCH_ALLOWED_HOSTS to serve another name",
            type="invalid_request_error",
            code="host_not_allowed",
        )
        await refuse(scope, receive, send, err)


class BodyLimit:
    """413 for /v1 request bodies over `limit` bytes (Settings.max_body_mb), checked on
    Content-Length and on the bytes actually received."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    def _too_large(self, size: int | None = None) -> ApiError:
        said = f"is {size:,} bytes" if size is not None else "outgrew it while being sent"
        return ApiError(
            413,
            f"the request body {said}; the limit is {self.limit:,} bytes (WORKBENCH_MAX_BODY_MB)",
            type="invalid_request_error",
            code="request_too_large",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await refuse(scope, receive, send, self._too_large(int(declared)))
            return
        # Read the body first (API bodies are small JSON), refusing it as soon as it
        # outgrows the limit, then hand it to the app as one message.
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left while sending
                return
            chunks.append(message.get("body", b""))
            received += len(chunks[-1])
            if received > self.limit:
                await refuse(scope, receive, send, self._too_large())
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # later reads wait for the disconnect, as before

        await self.app(scope, replay, send)


def install_security(
    app: Any, hosts: tuple[str, ...], cors_origins: tuple[str, ...], max_body_mb: float
) -> None:
    """Wrap `app` (a Starlette/FastAPI app) in the body limit, CORS (when origins are
    configured) and, outermost, the Host allowlist."""
    app.add_middleware(BodyLimit, limit=int(max_body_mb * 1e6))
    if cors_origins:
        wildcard = "*" in cors_origins
        app.add_middleware(
            CORSMiddleware,
            allow_origins=["*"] if wildcard else list(cors_origins),
            allow_credentials=not wildcard,  # never a wildcard with credentials
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["*"],
        )
    app.add_middleware(HostAllowlist, hosts=hosts)
