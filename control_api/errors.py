"""One error shape for the whole API, and the middleware that enforces it.

Every failure leaves as `{"error": {"code", "message"}}` with a 4xx/5xx status:
our own `ApiError`s, aiohttp's HTTP exceptions (404 no route, 405 wrong method) and a
store outage alike, so clients parse exactly one shape and bad input never yields a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from enum import StrEnum

from aiohttp import web

from control_api.store import StoreError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ErrorCode(StrEnum):
    BAD_REQUEST = "bad_request"
    INVALID_JSON = "invalid_json"
    INVALID_BODY = "invalid_body"
    INVALID_NAME = "invalid_name"
    INVALID_QUERY = "invalid_query"
    UNAUTHORIZED = "unauthorized"
    NOT_FOUND = "not_found"
    CHANNEL_NOT_FOUND = "channel_not_found"
    STREAM_NOT_LIVE = "stream_not_live"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    CHANNEL_EXISTS = "channel_exists"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    STORE_UNAVAILABLE = "store_unavailable"
    INTERNAL_ERROR = "internal_error"


_CODE_FOR_STATUS = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.UNAUTHORIZED,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
}

# Headers of an aiohttp HTTP exception worth keeping on the JSON version of it.
_KEPT_HEADERS = ("Allow", "WWW-Authenticate")


class ApiError(Exception):
    """A request the API refuses, with the status and code the client will see."""

    def __init__(
        self,
        status: int,
        code: ErrorCode,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.json_response(
        {"error": {"code": code, "message": message}}, status=status, headers=headers
    )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into the JSON error shape; mark responses uncacheable."""
    try:
        response = await handler(request)
    except ApiError as exc:
        response = error_response(exc.status, exc.code, exc.message, exc.headers)
    except StoreError as exc:
        log.warning("control API %s %s: store unavailable: %s", request.method, request.path, exc)
        response = error_response(
            503,
            ErrorCode.STORE_UNAVAILABLE,
            "the channel store is unavailable; try again shortly",
            {"Retry-After": "1"},
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = _from_http_exception(request, exc)
    except Exception:
        log.exception("control API %s %s failed", request.method, request.path)
        response = error_response(500, ErrorCode.INTERNAL_ERROR, "internal error")
    response.headers["Cache-Control"] = "no-store"
    return response


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> web.Response:
    fallback = ErrorCode.BAD_REQUEST if exc.status < 500 else ErrorCode.INTERNAL_ERROR
    code = _CODE_FOR_STATUS.get(exc.status, fallback)
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        message = f"method {request.method} not allowed here; allowed: {allowed}"
    elif isinstance(exc, web.HTTPNotFound):
        message = f"no such resource: {request.path}"
    else:
        message = exc.reason
    headers = {name: exc.headers[name] for name in _KEPT_HEADERS if name in exc.headers}
    return error_response(exc.status, code, message, headers)
