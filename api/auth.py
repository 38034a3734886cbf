"""The optional API key: one dependency every protected route shares, documented in
/openapi.json as two security schemes (Bearer, x-api-key). With Settings.api_key unset,
everything is open; /health always is. Knows no route."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import Request

from api.errors import ApiError

# auto_error=False: a missing key is ours to refuse (401 in the API's own error shape, and
# only when a key is configured), not FastAPI's.
bearer = HTTPBearer(
    auto_error=False, description="`Authorization: Bearer <key>` (OpenAI clients), if a key is set"
)
x_api_key = APIKeyHeader(
    name="x-api-key", auto_error=False, description="`x-api-key: <key>` (Anthropic clients), if a key is set"
)


async def require_api_key(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    header_key: Annotated[str | None, Depends(x_api_key)],
) -> None:
    """`Authorization: Bearer <key>` (OpenAI clients) or `x-api-key: <key>` (Anthropic
    clients) must match the configured key; 401 otherwise."""
    key: str | None = request.app.state.settings.api_key
    if key is None:
        return
    offered = [(header_key or "").strip(), credentials.credentials if credentials else ""]
    # Compare every offered key (no short cut), so timing says nothing about which one.
    matches = [secrets.compare_digest(k.encode(), key.encode()) for k in offered if k]
    if any(matches):
        return
    # Any Authorization value (whatever its scheme) counts as a key that was sent.
    sent = request.headers.get("authorization", "").partition(" ")[2] or offered[0]
    given = "a wrong API key" if sent else "no API key"
    raise ApiError(
        401,
        "this server needs an API key (Authorization: Bearer <key> or x-api-key: <key>); "
        f"the request carried {given}",
        code="invalid_api_key",
        headers={"WWW-Authenticate": "Bearer"},
    )
