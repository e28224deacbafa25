"""The control API as an aiohttp sub-application.

The composition root mounts it with `parent.add_subapp(API_PREFIX, api_app)`, so it
shares the HTTP listener with HLS and /metrics while its middlewares (JSON errors,
bearer auth) apply to API routes only.
"""

from __future__ import annotations

import json

from aiohttp import web

from control_api.auth import auth_middleware
from control_api.errors import error_middleware
from control_api.handlers import ApiHandlers
from control_api.live import LiveControl
from control_api.openapi import build_openapi
from control_api.query import query_middleware
from control_api.store import ChannelStore
from control_api.urls import PublicUrls

API_PREFIX = "/api/v1"


def create_api_app(
    store: ChannelStore, live: LiveControl, token: str, public_urls: PublicUrls
) -> web.Application:
    """The API sub-app; mount it at API_PREFIX. The caller owns (and closes) the store."""
    spec = build_openapi()
    app = web.Application(middlewares=[
        error_middleware, auth_middleware(token), query_middleware(spec, API_PREFIX)])
    handlers = ApiHandlers(store=store, live=live, urls=public_urls)
    document = json.dumps(spec)

    async def openapi(request: web.Request) -> web.Response:
        return web.Response(text=document, content_type="application/json")

    router = app.router
    router.add_get("/openapi.json", openapi, name="openapi")
    router.add_post("/channels", handlers.create_channel)
    router.add_get("/channels", handlers.list_channels)
    router.add_get("/channels/{name}", handlers.get_channel)
    router.add_delete("/channels/{name}", handlers.delete_channel)
    router.add_post("/channels/{name}/key", handlers.rotate_key)
    router.add_post("/keys/validate", handlers.validate_key)
    router.add_get("/streams", handlers.list_streams)
    router.add_delete("/streams/{channel}", handlers.kick_stream)
    return app


def create_root_app(
    store: ChannelStore, live: LiveControl, token: str, public_urls: PublicUrls
) -> web.Application:
    """A bare application with only the API mounted: for tests and API-only deployments."""
    root = web.Application()
    root.add_subapp(API_PREFIX, create_api_app(store, live, token, public_urls))
    return root
