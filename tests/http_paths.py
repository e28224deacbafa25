"""The two ways the server answers HLS requests, for tests that must hold on both.

`serve(app, path)` is an aiohttp TestServer for `app`: "aiohttp" answers every
request through aiohttp's request path (what `--http-fast-path off` does), "hot"
puts the server's own connection front in, as `mediaserver serve` does by default:
the HttpGate, then a HotConnection that answers the hot HLS requests itself
(mediaserver.hot_http) and hands everything else to aiohttp.
"""

from __future__ import annotations

import socket
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from hls.http import HLS_HOT
from mediaserver.hot_http import HotFront
from mediaserver.http_limits import GuardedSockSite, HttpGate, HttpLimits

PATHS = ("aiohttp", "hot")
# The server's defaults (mediaserver.config); tests that need others say so.
KEEPALIVE_TIMEOUT = 15.0
HEADER_TIMEOUT = 10.0
MAX_CONNECTIONS = 4096


class HotTestServer(TestServer):
    """A TestServer whose connections meet the gate and the hot front first."""

    def __init__(self, app: web.Application, keepalive_timeout: float = KEEPALIVE_TIMEOUT,
                 header_timeout: float = HEADER_TIMEOUT,
                 max_connections: int = MAX_CONNECTIONS, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.gate = HttpGate(HttpLimits(max_connections, header_timeout))
        self.front = HotFront(app[HLS_HOT], keepalive_timeout)
        self._keepalive_timeout = keepalive_timeout

    async def start_server(self, loop: Any = None, **kwargs: Any) -> None:
        if self.runner:
            return
        self.runner = await self._make_runner(handler_cancellation=True,
                                              keepalive_timeout=self._keepalive_timeout,
                                              **kwargs)
        await self.runner.setup()
        sock = socket.socket()
        sock.bind((self.host, 0))
        site = GuardedSockSite(self.runner, sock, self.gate, self.front)
        await site.start()
        self.port = sock.getsockname()[1]
        self.scheme = "http"
        self._root = URL(f"http://{self.host}:{self.port}")


def serve(app: web.Application, path: str, **kwargs: Any) -> TestServer:
    """A test server for `app` answering through `path` ("aiohttp" or "hot")."""
    if path == "hot":
        return HotTestServer(app, **kwargs)
    if path == "aiohttp":
        timeout = kwargs.pop("keepalive_timeout", None)
        if kwargs:
            raise TypeError(f"only the hot path takes {sorted(kwargs)}")
        return TestServer(app) if timeout is None else _TimedTestServer(app, timeout)
    raise ValueError(f"unknown HTTP path {path!r}")


class _TimedTestServer(TestServer):
    """aiohttp alone, with a keep-alive timeout of the test's choosing."""

    def __init__(self, app: web.Application, keepalive_timeout: float) -> None:
        super().__init__(app)
        self._keepalive_timeout = keepalive_timeout

    async def start_server(self, loop: Any = None, **kwargs: Any) -> None:
        await super().start_server(loop, keepalive_timeout=self._keepalive_timeout, **kwargs)
