"""Unknown query parameters are refused, not ignored.

A backend that misspells `block_seconds` would otherwise kick without blocking and
never know. What each operation accepts comes from the OpenAPI document, so the
two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from control_api.errors import ApiError, ErrorCode
from control_api.openapi import HTTP_METHODS

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]


def query_names(document: dict[str, Any]) -> dict[tuple[str, str], frozenset[str]]:
    """(METHOD, path template) -> the query parameter names the operation declares."""
    names: dict[tuple[str, str], frozenset[str]] = {}
    for path, path_item in document["paths"].items():
        shared = path_item.get("parameters", [])
        for method, operation in path_item.items():
            if method in HTTP_METHODS:
                declared = [*shared, *operation.get("parameters", [])]
                names[method.upper(), path] = frozenset(
                    p["name"] for p in declared if p.get("in") == "query")
    return names


def query_middleware(document: dict[str, Any], prefix: str) -> Middleware:
    """Refuse (422 invalid_query) a request whose query names a parameter its operation lacks.

    `prefix` is where the app is mounted: route templates carry it, the document's do not.
    """
    allowed = query_names(document)

    @web.middleware
    async def check_query(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.query:
            resource = request.match_info.route.resource
            if resource is not None:
                path = resource.canonical.removeprefix(prefix)
                known = allowed.get((request.method, path))
                if known is not None:
                    unknown = sorted(set(request.query) - known)
                    if unknown:
                        takes = ", ".join(sorted(known)) or "none"
                        raise ApiError(
                            422, ErrorCode.INVALID_QUERY,
                            f"unknown query parameter {unknown[0]!r}; this operation takes: "
                            f"{takes}")
        return await handler(request)

    return check_query
