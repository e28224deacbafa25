"""Bounds on the HTTP listener: a header-read timeout, a connection cap, a probe reserve.

aiohttp's RequestHandler has neither: a connection that never completes its
request headers is only closed by the keep-alive timer, and nothing caps how
many are open. So each accepted connection first meets a thin asyncio Protocol
(`_Guard`) that counts it, refuses it past the cap, arms the header timer, and
only then hands the transport to aiohttp's own handler, forwarding every
callback unchanged. `GuardedSockSite` is aiohttp's SockSite with that guard in
front of the runner's protocol factory.

The header timer runs from accept to the end of the first request's headers.
After a response aiohttp's keep-alive timer (`--http-keepalive-timeout`) takes
over: it closes a connection whose next request has not fully arrived in time.

Past the cap a few connections are still let in, but only for `/healthz` and
`/readyz`: an orchestrator must not restart a node because viewers filled it.

With a HotFront (mediaserver.hot_http) the guard forwards to a hot connection,
which answers the hot HLS requests itself and hands the rest to aiohttp.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from aiohttp import web
from aiohttp.web_runner import BaseSite

from .hot_http import HotFront

log = logging.getLogger("mediaserver.http")

# Past the cap, this many more connections may ask for the probes, and nothing else.
PROBE_RESERVE_CONNECTIONS = 8
PROBE_PATHS = frozenset({b"/healthz", b"/readyz"})
# A probe's request line is short; more bytes than this without one is not a probe.
MAX_PROBE_REQUEST_LINE = 1024
_HEADERS_END = b"\r\n\r\n"
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: text/plain\r\n"
    b"Retry-After: 1\r\n"
    b"Connection: close\r\n"
    b"Content-Length: 33\r\n\r\n"
    b"too many open connections; retry\n"
)


class Admission(enum.Enum):
    FULL = "full"  # under the cap: any request
    PROBE = "probe"  # past the cap, in the reserve: /healthz and /readyz only


@dataclass(frozen=True, slots=True)
class HttpLimits:
    max_connections: int
    header_timeout: float


@dataclass(slots=True)
class HttpStats:
    """Counters read by /metrics; open connections are `HttpGate.open_connections`."""

    connections_total: int = 0
    refused: int = 0
    header_timeouts: int = 0


class HttpGate:
    """Counts open HTTP connections and makes a guard for each one accepted."""

    def __init__(self, limits: HttpLimits) -> None:
        self.limits = limits
        self.stats = HttpStats()
        self._admitted = 0
        self._probes = 0
        # Probe-reserve connections whose headers are not complete, oldest first. A real
        # probe sends its request at once; a flood aimed at the reserve is what lingers.
        self._probing: dict[_Guard, None] = {}

    @property
    def open_connections(self) -> int:
        return self._admitted + self._probes

    def protocol_factory(self, handler_factory: Callable[[], asyncio.Protocol]
                         ) -> Callable[[], asyncio.Protocol]:
        return lambda: _Guard(self, handler_factory)

    def _admit(self) -> Admission | None:
        """How a new connection is let in, or None to refuse it."""
        if self._admitted < self.limits.max_connections:
            self._admitted += 1
            return Admission.FULL
        if self._probes < PROBE_RESERVE_CONNECTIONS:
            self._probes += 1
            return Admission.PROBE
        if self._probing:
            # The reserve is full of connections that have not finished their headers:
            # the oldest makes way, so a flood cannot keep real probes out.
            oldest = next(iter(self._probing))
            del self._probing[oldest]
            self.stats.refused += 1
            oldest.abort()
            self._probes += 1  # the aborted one gives its slot back on connection_lost
            return Admission.PROBE
        return None

    def abort_probing(self) -> None:
        """Close reserve connections still sending headers (aiohttp may not know them)."""
        for guard in list(self._probing):
            guard.abort()

    def _release(self, mode: Admission) -> None:
        if mode is Admission.FULL:
            self._admitted -= 1
        else:
            self._probes -= 1


class _Guard(asyncio.Protocol):
    """Stands in front of one connection's handler (aiohttp's RequestHandler, or a hot
    connection) and forwards to it once admitted."""

    __slots__ = ("_gate", "_handler", "_handler_factory", "_headers_done", "_held", "_mode",
                 "_timer", "_transport")

    def __init__(self, gate: HttpGate, handler_factory: Callable[[], asyncio.Protocol]) -> None:
        self._gate = gate
        self._handler_factory = handler_factory
        self._handler: asyncio.Protocol | None = None
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._mode: Admission | None = None
        self._headers_done = False
        # Probe: bytes held until the request line shows the path. Otherwise: the
        # last three bytes, so that a header end split across reads is still seen.
        self._held = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        gate = self._gate
        gate.stats.connections_total += 1
        self._mode = gate._admit()
        if self._mode is None:
            self._refuse()
            return
        self._timer = asyncio.get_running_loop().call_later(
            gate.limits.header_timeout, self._header_timeout)
        if self._mode is Admission.FULL:
            self._attach()
        else:
            gate._probing[self] = None

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _attach(self) -> None:
        self._handler = self._handler_factory()
        self._handler.connection_made(self._transport)  # type: ignore[arg-type]

    def _refuse(self) -> None:
        self._gate.stats.refused += 1
        assert self._transport is not None
        self._transport.write(_REFUSAL)
        self._transport.close()

    def _header_timeout(self) -> None:
        self._timer = None
        self._gate.stats.header_timeouts += 1
        # Abort, not close: a peer that sends nothing will not read a goodbye either.
        self.abort()

    def data_received(self, data: bytes) -> None:
        if self._handler is None:
            if self._mode is not Admission.PROBE:
                return  # refused: whatever it still sends is dropped
            self._held += data
            line_end = self._held.find(b"\r\n")
            if line_end < 0:
                if len(self._held) > MAX_PROBE_REQUEST_LINE:
                    self._refuse()
                return
            parts = self._held[:line_end].split(b" ")
            path = parts[1].partition(b"?")[0] if len(parts) == 3 else b""
            if path not in PROBE_PATHS:
                self._refuse()
                return
            data, self._held = self._held, b""
            self._attach()
        if not self._headers_done:
            seen = self._held + data
            if _HEADERS_END in seen:
                self._headers_done = True
                self._cancel_timer()
                self._gate._probing.pop(self, None)
            self._held = seen[-3:]
        assert self._handler is not None
        self._handler.data_received(data)

    def eof_received(self) -> bool | None:
        return self._handler.eof_received() if self._handler is not None else None

    def pause_writing(self) -> None:
        if self._handler is not None:
            self._handler.pause_writing()

    def resume_writing(self) -> None:
        if self._handler is not None:
            self._handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self._gate._probing.pop(self, None)
        if self._mode is not None:
            self._gate._release(self._mode)
            self._mode = None
        self._transport = None
        if self._handler is not None:
            handler, self._handler = self._handler, None
            handler.connection_lost(exc)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class GuardedSockSite(web.SockSite):
    """aiohttp's SockSite, with every connection passing an `HttpGate` first, and then,
    with a `HotFront`, a hot connection before aiohttp."""

    __slots__ = ("_gate", "_hot")

    def __init__(self, runner: web.BaseRunner, sock: socket.socket, gate: HttpGate,
                 hot: HotFront | None = None, **kwargs: object) -> None:
        super().__init__(runner, sock, **kwargs)  # type: ignore[arg-type]
        self._gate = gate
        self._hot = hot

    async def start(self) -> None:
        await BaseSite.start(self)  # registers the site with the runner, as SockSite does
        server = self._runner.server
        assert server is not None
        handler_factory: Callable[[], asyncio.Protocol] = server
        if self._hot is not None:
            handler_factory = self._hot.protocol_factory(server)
        self._server = await asyncio.get_running_loop().create_server(
            self._gate.protocol_factory(handler_factory), sock=self._sock,
            backlog=self._backlog)

    async def stop(self) -> None:
        await super().stop()
        self._gate.abort_probing()
        if self._hot is not None:
            self._hot.close_all()
