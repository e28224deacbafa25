"""The asyncio side of RTMP: a thin Protocol feeding ServerConnection.

This is the only module of `rtmp/` that touches sockets or the clock. What a
publish is allowed to do is the owner's policy (`IngestPolicy`); media goes to
the `PublishSink` the policy hands back for an accepted publish.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Protocol

from .connection import ServerConnection
from .errors import ProtocolError
from .events import (
    AudioData,
    Connected,
    Metadata,
    PlayRequested,
    PublishEnded,
    PublishRequested,
    UnhandledCommand,
    VideoData,
)

log = logging.getLogger("rtmp")

# A handshake plus connect/createStream/publish takes a few round trips; a peer
# that has not asked to publish after this long is a port scanner or stuck.
HANDSHAKE_TIMEOUT = 10.0
# A publisher that sends no media for this long is dead or stuck (encoders send
# audio and video continuously); a half-open TCP connection or a client that only
# answers pings would otherwise hold the channel for ever.
IDLE_TIMEOUT = 20.0
# Open connections at once; past this, new ones are closed at accept.
MAX_CONNECTIONS = 1000
# How often the sweeper looks for timed-out connections.
SWEEP_INTERVAL = 1.0
# A publishing socket is read at most this often (seconds). Encoders write about
# one frame at a time, so reading on every wake-up pays a syscall, a loop callback,
# a TCP ACK and a cache full of some other stream's state per frame. Letting a few
# frames gather in the kernel buffer reads them in one go and parses one stream's
# frames back to back. HLS latency is counted in seconds; 100 ms does not show.
READ_INTERVAL = 0.1
# A paced socket can only deliver what the kernel buffers during a pause (about
# 1.3 MB per pause seen on Linux loopback once autotuned, 128 kB at first). A
# publisher that sends this much between two releases (40 Mbit/s at 100 ms) is
# too fast to pace safely: its socket goes back to being read on every wake-up.
PACED_BYTES_LIMIT = 512 * 1024
# Bytes one read can take: what uvloop and asyncio read at most per call.
RECEIVE_BUFFER_SIZE = 256 * 1024
# A read this big nearly filled the receive buffer: more is waiting in the
# kernel, so the socket is read on before pausing.
MORE_WAITING_BYTES = 192 * 1024


class PublishSink(Protocol):
    """Where an accepted publish's media goes (the stream hub's publisher)."""

    def on_metadata(self, values: dict[str, Any]) -> None: ...
    def on_audio(self, timestamp: int, payload: bytes | bytearray) -> None: ...
    def on_video(self, timestamp: int, payload: bytes | bytearray) -> None: ...
    def on_end(self, reason: str) -> None: ...


@dataclass(frozen=True, slots=True)
class PublishAccepted:
    sink: PublishSink
    channel: str


@dataclass(frozen=True, slots=True)
class PublishRejected:
    description: str
    code: str = "NetStream.Publish.BadName"
    result: str = "bad_key"  # for counting: bad_key, blocked, duplicate, unavailable


class IngestPolicy(Protocol):
    def authorize(
        self, session: RtmpSession, request: PublishRequested
    ) -> Awaitable[PublishAccepted | PublishRejected]: ...


@dataclass(slots=True)
class ServerStats:
    """Counters the metrics layer reads at scrape time."""

    connections_total: int = 0
    connections_refused: int = 0
    protocol_errors: int = 0
    handshake_timeouts: int = 0
    idle_timeouts: int = 0
    bytes_received: int = 0


class RtmpSession(asyncio.BufferedProtocol):
    """One TCP connection: bytes to the ServerConnection, events to the policy and sink.

    A buffered protocol: the loop reads straight into the server's one receive
    buffer, instead of allocating a bytes object per read for data_received.
    """

    def __init__(self, server: RtmpServer) -> None:
        self._server = server
        self.conn = ServerConnection(max_message_size=server.max_message_size)
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.channel: str | None = None
        self.sink: PublishSink | None = None
        self.stream_id = 0
        self.created_at = time.monotonic()
        self.last_activity = self.created_at
        self.last_media = self.created_at
        self.publishing = False
        self._authorizing: asyncio.Task[None] | None = None
        self._closed = False
        self._bytes_counted = 0
        self._held = False  # reading paused by the server's ReadPacer
        self._paced = True  # False once the feed proved too fast to pace
        self._bytes_since_release = 0
        self.reads = 0  # socket reads: what read pacing saves shows here

    # ---- asyncio.Protocol -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transports implement the Transport API without subclassing it.
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self._server.register(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._server.receive_buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.last_activity = time.monotonic()
        self.reads += 1
        try:
            # ServerConnection copies what it is given, so the shared buffer is free
            # again for the next read as soon as this returns.
            self.conn.receive_data(self._server.receive_buffer[:nbytes])
            self._process()
        except ProtocolError as exc:
            self._server.stats.protocol_errors += 1
            log.warning("rtmp protocol error peer=%s channel=%s: %s", self.peer, self.channel, exc)
            self.close(f"protocol error: {exc}")
            return
        pacer = self._server.read_pacer
        if pacer is not None and self.publishing and self._paced:
            self._bytes_since_release += nbytes
            if nbytes >= MORE_WAITING_BYTES:
                return
            if self._bytes_since_release < PACED_BYTES_LIMIT:
                pacer.hold(self)
            else:
                self._paced = False
                log.info("rtmp reads unpaced peer=%s channel=%s: %d bytes in one interval",
                         self.peer, self.channel, self._bytes_since_release)

    def eof_received(self) -> bool | None:
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._server.unregister(self)
        self._server.stats.bytes_received += self.conn.bytes_received - self._bytes_counted
        self._bytes_counted = self.conn.bytes_received
        if self._authorizing is not None and not self._authorizing.done():
            self._authorizing.cancel()
        self._end_sink("connection closed" if exc is None else f"connection lost: {exc}")

    # ---- event processing -----------------------------------------------------------

    def _process(self) -> None:
        conn = self.conn
        sink = self.sink
        media_seen = False
        while True:
            event = conn.next_event()
            if event is None:
                break
            cls = type(event)
            if cls is VideoData:
                media_seen = True
                if sink is not None:
                    sink.on_video(event.timestamp, event.payload)  # type: ignore[attr-defined]
            elif cls is AudioData:
                media_seen = True
                if sink is not None:
                    sink.on_audio(event.timestamp, event.payload)  # type: ignore[attr-defined]
            elif cls is PublishRequested:
                self._begin_authorize(event)  # type: ignore[arg-type]
            elif cls is Metadata:
                if sink is not None:
                    sink.on_metadata(event.values)  # type: ignore[attr-defined]
            elif cls is PublishEnded:
                log.info("rtmp unpublish peer=%s channel=%s reason=%s",
                         self.peer, self.channel, event.reason)  # type: ignore[attr-defined]
                self._end_sink(f"unpublished ({event.reason})")  # type: ignore[attr-defined]
                sink = None
            elif cls is Connected:
                log.info("rtmp connect peer=%s app=%s flashver=%r",
                         self.peer, event.app, event.flash_ver)  # type: ignore[attr-defined]
            elif cls is PlayRequested:
                log.info("rtmp play refused peer=%s (HLS only)", self.peer)
            elif cls is UnhandledCommand:
                log.debug("rtmp unhandled command %s peer=%s", event.name, self.peer)  # type: ignore[attr-defined]
        if media_seen:
            self.last_media = self.last_activity
        self._flush()

    def _flush(self) -> None:
        out = self.conn.data_to_send()
        if out and self.transport is not None and not self._closed:
            self.transport.write(out)

    def _begin_authorize(self, request: PublishRequested) -> None:
        assert self.transport is not None
        self.transport.pause_reading()
        self._authorizing = asyncio.get_running_loop().create_task(self._authorize(request))

    async def _authorize(self, request: PublishRequested) -> None:
        try:
            decision = await self._server.policy.authorize(self, request)
        except Exception as exc:  # the policy failing must not leave the encoder hanging
            log.exception("rtmp publish authorization failed peer=%s", self.peer)
            decision = PublishRejected(f"server error while checking the key: {exc}",
                                       result="error")
        if self._closed:
            if isinstance(decision, PublishAccepted):
                decision.sink.on_end("connection closed during authorization")
            return
        try:
            if isinstance(decision, PublishRejected):
                self._server.count_publish(decision.result)
                log.info("rtmp publish rejected peer=%s app=%s result=%s: %s",
                         self.peer, request.app, decision.result, decision.description)
                self.conn.reject_publish(request.stream_id, decision.description, decision.code)
                self._flush()
                self.close(decision.description)
                return
            self._server.count_publish("ok")
            self.channel = decision.channel
            self.sink = decision.sink
            self.stream_id = request.stream_id
            self.publishing = True
            self.conn.accept_publish(request.stream_id)
            log.info("rtmp publish started peer=%s channel=%s", self.peer, self.channel)
            assert self.transport is not None
            self.transport.resume_reading()
            self._process()
        except ProtocolError as exc:
            self._server.stats.protocol_errors += 1
            log.warning("rtmp protocol error peer=%s channel=%s: %s", self.peer, self.channel, exc)
            self.close(f"protocol error: {exc}")

    # ---- read pacing ----------------------------------------------------------------

    def pause_held(self) -> bool:
        """Pause reading until `release_held`; False if there is nothing to pause."""
        if self._held or self._closed or self.transport is None or self.transport.is_closing():
            return False
        self._held = True
        self.transport.pause_reading()
        return True

    def release_held(self) -> None:
        if self._held:
            self._held = False
            self._bytes_since_release = 0
            if self._authorizing is not None and not self._authorizing.done():
                return  # a publish awaits its decision: _authorize resumes reading after it
            if not self._closed and self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()

    # ---- closing --------------------------------------------------------------------

    def kick(self, reason: str) -> None:
        """End the publish from our side (API kick, takeover, shutdown)."""
        if self.publishing and not self._closed:
            self.conn.end_publish(self.stream_id, reason)
            self._flush()
        self.close(reason)

    def close(self, reason: str) -> None:
        self._end_sink(reason)
        if self.transport is not None and not self._closed:
            self._closed = True
            self.transport.close()

    def _end_sink(self, reason: str) -> None:
        sink, self.sink = self.sink, None
        self.publishing = False
        if sink is not None:
            log.info("rtmp publish ended peer=%s channel=%s: %s", self.peer, self.channel, reason)
            sink.on_end(reason)


class ReadPacer:
    """Keeps publishing sockets paused between reads; one timer resumes them all.

    One shared timer, not one per session: the held sockets become readable
    together, so the loop reads them all in one turn and the hub drains all their
    frames in one callback. Measured at 100 publishers, that is about a quarter
    cheaper than releasing each socket on its own phase (10 ms slots), at the price
    of HLS requests waiting behind one such turn (p99 about 30 ms).
    """

    __slots__ = ("_held", "_loop", "_timer", "interval")

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        self._loop = loop
        self.interval = interval
        self._held: list[RtmpSession] = []
        self._timer: asyncio.TimerHandle | None = None

    def hold(self, session: RtmpSession) -> None:
        if not session.pause_held():
            return
        self._held.append(session)
        if self._timer is None:
            self._timer = self._loop.call_later(self.interval, self.release_all)

    def release_all(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        held, self._held = self._held, []
        for session in held:
            session.release_held()


class RtmpServer:
    """Accepts RTMP connections, applies the connection-level bounds, sweeps timeouts."""

    def __init__(
        self,
        policy: IngestPolicy,
        *,
        max_connections: int = MAX_CONNECTIONS,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
        max_message_size: int | None = None,
        read_interval: float = READ_INTERVAL,
    ) -> None:
        """`read_interval` paces reads of publishing sockets (see READ_INTERVAL); 0: none."""
        from .chunk import MAX_MESSAGE_SIZE

        self.policy = policy
        self.max_connections = max_connections
        self.handshake_timeout = handshake_timeout
        self.idle_timeout = idle_timeout
        self.max_message_size = max_message_size or MAX_MESSAGE_SIZE
        self.read_interval = read_interval
        self.read_pacer: ReadPacer | None = None
        # Shared by every session: the loop is single-threaded and each read is
        # consumed (copied into its ServerConnection) before the next one starts.
        self.receive_buffer = memoryview(bytearray(RECEIVE_BUFFER_SIZE))
        self.stats = ServerStats()
        self.publish_results: dict[str, int] = {}
        self.sessions: set[RtmpSession] = set()
        self._server: asyncio.base_events.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(
        self, host: str | None = None, port: int | None = None, *, sock: socket.socket | None = None
    ) -> tuple[str, int]:
        """Listen on host:port, or on an already bound socket; returns the bound address."""
        loop = asyncio.get_running_loop()
        if self.read_interval > 0:
            self.read_pacer = ReadPacer(loop, self.read_interval)
        if sock is not None:
            self._server = await loop.create_server(lambda: RtmpSession(self), sock=sock)
        else:
            self._server = await loop.create_server(lambda: RtmpSession(self), host, port,
                                                    reuse_address=True)
        self._sweeper = loop.create_task(self._sweep())
        sockname = self._server.sockets[0].getsockname()
        return sockname[0], sockname[1]

    def register(self, session: RtmpSession) -> None:
        self.stats.connections_total += 1
        if len(self.sessions) >= self.max_connections:
            self.stats.connections_refused += 1
            log.warning("rtmp connection refused peer=%s: %d connections open (the cap)",
                        session.peer, len(self.sessions))
            session.close("connection cap reached")
            return
        self.sessions.add(session)

    def unregister(self, session: RtmpSession) -> None:
        self.sessions.discard(session)

    def count_publish(self, result: str) -> None:
        self.publish_results[result] = self.publish_results.get(result, 0) + 1

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            now = time.monotonic()
            for session in list(self.sessions):
                if (
                    not session.publishing
                    and session._authorizing is None
                    and now - session.created_at > self.handshake_timeout
                ):
                    self.stats.handshake_timeouts += 1
                    log.info("rtmp handshake/publish timeout peer=%s", session.peer)
                    session.close("no publish within the handshake timeout")
                    continue
                idle_since = session.last_media if session.publishing else session.last_activity
                if now - idle_since > self.idle_timeout:
                    self.stats.idle_timeouts += 1
                    log.info("rtmp idle timeout peer=%s channel=%s", session.peer, session.channel)
                    session.close(f"no media for {self.idle_timeout:.0f}s")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self.read_pacer is not None:
            self.read_pacer.release_all()
            self.read_pacer = None
        if self._server is not None:
            self._server.close()
        for session in list(self.sessions):
            session.kick("server shutting down")
        if self._server is not None:
            await self._server.wait_closed()
