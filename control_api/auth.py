"""Bearer-token check for the control API."""

from __future__ import annotations

import hmac

from aiohttp import web
from aiohttp.typedefs import Middleware

from control_api.errors import ApiError, ErrorCode, Handler

# Route names reachable without a token (the OpenAPI document is public on purpose:
# it describes the API and holds nothing secret).
PUBLIC_ROUTES = frozenset({"openapi"})

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="mediaserver"'}


def bearer_token(header: str | None) -> bytes | None:
    """The token of an `Authorization: Bearer TOKEN` header (scheme case-insensitive)."""
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    # Header values may hold any bytes; "replace" keeps compare_digest on bytes, never str.
    return token.strip().encode("utf-8", "replace")


def auth_middleware(token: str) -> Middleware:
    """A middleware that refuses every non-public route without the right token."""
    if not token:
        raise ValueError("the API token must not be empty")
    expected = token.encode("utf-8")

    @web.middleware
    async def check_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.match_info.route.name not in PUBLIC_ROUTES:
            given = bearer_token(request.headers.get("Authorization"))
            if given is None or not hmac.compare_digest(given, expected):
                raise ApiError(
                    401,
                    ErrorCode.UNAUTHORIZED,
                    "missing or invalid bearer token",
                    _CHALLENGE,
                )
        return await handler(request)

    return check_token
