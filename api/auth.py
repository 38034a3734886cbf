"""Optional API key: one dependency every protected route shares.

With `Settings.api_key` unset, everything is open (a local server on 127.0.0.1).
"""

from __future__ import annotations

import secrets

from starlette.requests import Request

from api.errors import ApiError


async def require_api_key(request: Request) -> None:
    """`Authorization: Bearer <key>` (OpenAI clients) or `x-api-key: <key>` (Anthropic
    clients) must match the configured key; 401 otherwise."""
    key: str | None = request.app.state.settings.api_key
    if key is None:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    offered = [request.headers.get("x-api-key", "").strip()]
    if scheme.lower() == "bearer":
        offered.append(token.strip())
    # Compare every offered key (no short cut), so timing says nothing about which one.
    matches = [secrets.compare_digest(k.encode(), key.encode()) for k in offered if k]
    if any(matches):
        return
    given = "a wrong API key" if token or offered[0] else "no API key"
    raise ApiError(
        401,
        "this server needs an API key (Authorization: Bearer <key> or x-api-key: <key>); "
        f"the request carried {given}",
        code="invalid_api_key",
        headers={"WWW-Authenticate": "Bearer"},
    )
