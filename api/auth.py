"""Optional API key: one dependency every protected route shares.

With `Settings.api_key` unset, everything is open (a local server on 127.0.0.1).
"""

from __future__ import annotations

import secrets

from starlette.requests import Request

from api.errors import ApiError


async def require_api_key(request: Request) -> None:
    """`Authorization: Bearer <key>` must match the configured key; 401 otherwise."""
    key: str | None = request.app.state.settings.api_key
    if key is None:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and secrets.compare_digest(token.strip().encode(), key.encode()):
        return
    given = "a wrong API key" if token else "no API key"
    raise ApiError(
        401,
        f"this server needs an API key (Authorization: Bearer <key>); the request carried {given}",
        code="invalid_api_key",
        headers={"WWW-Authenticate": "Bearer"},
    )
