"""The asyncio side of RTMP: a thin Protocol feeding ServerConnection.

This is the only module of `rtmp/` that touches sockets or the clock. What a
publish is allowed to do is the owner's policy (`PublishPolicy`); media goes to
the `PublishSink` the policy hands back for an accepted publish.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .chunk import COMPILED_READER
from .connection import MSG_VIDEO, ServerConnection, State
from .errors import LocalProtocolError, ProtocolError
from .events import (
    AudioData,
    Connected,
    ConnectRejected,
    MediaReceived,
    Metadata,
    PlayRequested,
    PublishRequested,
    UnhandledCommand,
    Unpublished,
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
# Messages handled per loop callback for one connection; the rest waits for the next
# loop turn (reading paused meanwhile), so one peer's burst cannot hold the loop.
# A paced publisher brings 10-30 media messages per read; a 256 kB read of tiny
# commands is ten thousand, each answered (20-40 us apiece): 64 keeps one callback
# near a millisecond or two, so 20 such peers still let the loop turn every ~50 ms.
MAX_EVENTS_PER_TURN = 64
# Output a peer may leave unread in our transport buffer (past what the kernel took).
# What we send is small (acks, replies, statuses: kilobytes a minute for an
# encoder); a peer this far behind is not reading, and every byte is our memory.
MAX_UNSENT_BYTES = 1024 * 1024
# After refusing a connect or publish we half-close and wait this long for the
# encoder to read the refusal and leave. librtmp writes FCUnpublish + deleteStream
# once it sees our EOF and dies of SIGPIPE if the socket is gone by then; a slow
# link needs a round trip or two, and a refused peer must not hold a slot for long.
REFUSAL_LINGER = 2.5
# After we close, a peer gets this long to take our last bytes; then the socket is
# aborted (a peer that does not read would hold it, and its slot, for ever).
CLOSE_FLUSH_TIMEOUT = 5.0


class PublishSink(Protocol):
    """Where an accepted publish's media goes (the stream hub's publisher)."""

    def on_metadata(self, values: dict[str, Any]) -> None: ...
    def on_audio(self, timestamp: int, payload: bytes | bytearray) -> None: ...
    def on_video(self, timestamp: int, payload: bytes | bytearray) -> None: ...
    # Optional: on_media(frames) takes a run of media messages in one call,
    # `(type_id, timestamp, payload)` each, type 8 audio or 9 video, and does what
    # on_audio/on_video would do one by one. A sink without it gets those calls.
    def on_end(self, reason: str, *, unpublished: bool = False) -> None:
        """The publish ended; `unpublished`: the encoder stopped it on purpose
        (FCUnpublish, deleteStream, closeStream), not a dropped or kicked connection."""
        ...


@dataclass(frozen=True, slots=True)
class PublishAccepted:
    sink: PublishSink
    channel: str


@dataclass(frozen=True, slots=True)
class PublishRejected:
    description: str
    code: str = "NetStream.Publish.BadName"
    result: str = "bad_key"  # for counting: bad_key, blocked, duplicate, unavailable


class PublishPolicy(Protocol):
    """The owner's decisions: which applications exist, and who may publish."""

    def app_exists(self, app: str) -> bool:
        """Whether `connect` may name this application (else Connect.Rejected)."""
        ...

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
    # Connections aborted for leaving more than MAX_UNSENT_BYTES of our output unread.
    output_overflows: int = 0
    # LocalProtocolError: our own bug, not the peer's; logged with a traceback.
    internal_errors: int = 0


class RtmpSession(asyncio.BufferedProtocol):
    """One TCP connection: bytes to the ServerConnection, events to the policy and sink.

    A buffered protocol: the loop reads straight into the server's one receive
    buffer, instead of allocating a bytes object per read for data_received.
    Reading is paused while any of three reasons holds: a publish awaits the
    policy's decision, the ReadPacer holds the socket, or events are left over
    from a read (they are handled on the next loop turn).
    """

    def __init__(self, server: RtmpServer) -> None:
        self._server = server
        self.conn = ServerConnection(max_message_size=server.max_message_size,
                                     app_exists=server.policy.app_exists, batch_media=True)
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.channel: str | None = None
        self.sink: PublishSink | None = None
        self._on_media: Callable[[list[tuple[int, int, bytes]]], None] = _no_media
        self.stream_id = 0
        self.created_at = time.monotonic()
        self.last_activity = self.created_at
        self.last_media = self.created_at
        self.publishing = False
        self._authorizing: asyncio.Task[None] | None = None
        self._deciding = False  # a publish awaits the policy: reading paused
        self._backlog = False  # events left for the next loop turn: reading paused
        self._reading_paused = False
        self._closed = False  # close() or abort() was called, or the connection is gone
        self._lingering = False  # refused: half-closed, waiting for the peer to leave
        self._deadline: asyncio.TimerHandle | None = None  # aborts a close that hangs
        self._bytes_counted = 0
        self._held = False  # reading paused by the server's ReadPacer
        self._paced = True  # False once the feed proved too fast to pace
        self._bytes_since_release = 0
        self.reads = 0  # socket reads: what read pacing saves shows here

    @property
    def closing(self) -> bool:
        """True once the session is on its way out (closed, aborted or refused)."""
        return self._closed or self._lingering

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
        # ServerConnection copies what it is given, so the shared buffer is free
        # again for the next read as soon as this returns.
        if not self._run(self._server.receive_buffer[:nbytes]):
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
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._server.unregister(self)
        self._server.stats.bytes_received += self.conn.bytes_received - self._bytes_counted
        self._bytes_counted = self.conn.bytes_received
        if self._authorizing is not None and not self._authorizing.done():
            self._authorizing.cancel()
        self._end_sink("connection closed" if exc is None else f"connection lost: {exc}")

    # ---- event processing -----------------------------------------------------------

    def _run(self, data: memoryview | None = None,
             decide: Callable[[], None] | None = None) -> bool:
        """Feed bytes or apply a publish decision, then handle events; errors by fault.

        False if the connection was closed for an error.
        """
        try:
            if data is not None:
                self.conn.receive_data(data)
            if decide is not None:
                decide()
            self._process()
        except LocalProtocolError as exc:
            self._server.stats.internal_errors += 1
            log.error("rtmp internal error (ours, not the peer's) peer=%s channel=%s",
                      self.peer, self.channel, exc_info=exc)
            self.close(f"internal error: {exc}")
            return False
        except ProtocolError as exc:
            self._server.stats.protocol_errors += 1
            log.warning("rtmp protocol error peer=%s channel=%s: %s", self.peer, self.channel, exc)
            self.close(f"protocol error: {exc}")
            return False
        return True

    def _process(self) -> None:
        conn = self.conn
        sink = self.sink
        media_seen = False
        budget = MAX_EVENTS_PER_TURN
        while True:
            if budget == 0:
                # Leave the rest for the next loop turn, so other peers get theirs.
                self._backlog = True
                asyncio.get_running_loop().call_soon(self._continue)
                break
            event = conn.next_event()
            if event is None:
                break
            cls = type(event)
            if cls is MediaReceived:
                frames = event.frames  # type: ignore[attr-defined]
                budget = max(budget - len(frames), 0)
                media_seen = True
                if sink is not None:
                    self._on_media(frames)
                continue
            budget -= 1
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
            elif cls is Unpublished:
                log.info("rtmp unpublish peer=%s channel=%s reason=%s",
                         self.peer, self.channel, event.reason)  # type: ignore[attr-defined]
                self._end_sink(f"unpublished ({event.reason})",  # type: ignore[attr-defined]
                               unpublished=True)
                sink = None
            elif cls is Connected:
                log.info("rtmp connect peer=%s app=%s flashver=%r",
                         self.peer, event.app, event.flash_ver)  # type: ignore[attr-defined]
            elif cls is ConnectRejected:
                self._server.count_publish("bad_app")
                log.info("rtmp connect rejected peer=%s: unknown app %r",
                         self.peer, event.app)  # type: ignore[attr-defined]
            elif cls is PlayRequested:
                log.info("rtmp play refused peer=%s (HLS only)", self.peer)
            elif cls is UnhandledCommand:
                log.debug("rtmp unhandled command %s peer=%s", event.name, self.peer)  # type: ignore[attr-defined]
        if media_seen:
            self.last_media = self.last_activity
        self._flush()
        if conn.state is State.CLOSING:
            self._linger("refused")
        self._update_reading()

    def _continue(self) -> None:
        self._backlog = False
        if not self._closed:
            self._run()
        self._update_reading()

    def _flush(self) -> None:
        out = self.conn.data_to_send()
        transport = self.transport
        if not out or transport is None or self._closed:
            return
        transport.write(out)
        unsent = transport.get_write_buffer_size()
        if unsent > MAX_UNSENT_BYTES:
            self._server.stats.output_overflows += 1
            log.warning("rtmp peer not reading peer=%s channel=%s: %d bytes unsent, aborting",
                        self.peer, self.channel, unsent)
            self.abort("peer does not read what we send")

    def _update_reading(self) -> None:
        """Pause or resume reading to match the reasons to pause (see the class doc)."""
        transport = self.transport
        if transport is None or self._closed or transport.is_closing():
            return
        paused = self._deciding or self._held or self._backlog
        if paused != self._reading_paused:
            self._reading_paused = paused
            if paused:
                transport.pause_reading()
            else:
                transport.resume_reading()

    def _begin_authorize(self, request: PublishRequested) -> None:
        self._deciding = True
        self._update_reading()
        self._authorizing = asyncio.get_running_loop().create_task(self._authorize(request))

    async def _authorize(self, request: PublishRequested) -> None:
        try:
            decision = await self._server.policy.authorize(self, request)
        except Exception as exc:  # the policy failing must not leave the encoder hanging
            log.exception("rtmp publish authorization failed peer=%s", self.peer)
            decision = PublishRejected(f"server error while checking the key: {exc}",
                                       result="error")
        self._deciding = False
        if self._closed:
            if isinstance(decision, PublishAccepted):
                decision.sink.on_end("connection closed during authorization")
            return
        self._run(decide=lambda: self._decide(request, decision))

    def _decide(self, request: PublishRequested,
                decision: PublishAccepted | PublishRejected) -> None:
        if isinstance(decision, PublishRejected):
            self._server.count_publish(decision.result)
            log.info("rtmp publish rejected peer=%s app=%s result=%s: %s",
                     self.peer, request.app, decision.result, decision.description)
            self.conn.reject_publish(request.stream_id, decision.description, decision.code)
            return  # _process flushes the refusal and lingers
        self._server.count_publish("ok")
        self.channel = decision.channel
        self.sink = decision.sink
        self._on_media = _media_handler(decision.sink)
        self.stream_id = request.stream_id
        self.publishing = True
        self.conn.accept_publish(request.stream_id)
        log.info("rtmp publish started peer=%s channel=%s", self.peer, self.channel)

    # ---- read pacing ----------------------------------------------------------------

    def pause_held(self) -> bool:
        """Pause reading until `release_held`; False if there is nothing to pause."""
        if self._held or self.closing or self.transport is None or self.transport.is_closing():
            return False
        self._held = True
        self._update_reading()
        return True

    def release_held(self) -> None:
        if self._held:
            self._held = False
            self._bytes_since_release = 0
            self._update_reading()

    # ---- closing --------------------------------------------------------------------

    def kick(self, reason: str) -> None:
        """End the publish from our side (API kick, takeover, shutdown)."""
        if self.publishing and not self._closed:
            self.conn.end_publish(self.stream_id, reason)
            self._flush()
        self.close(reason)

    def close(self, reason: str) -> None:
        """Close after our last bytes are sent; abort if the peer will not take them."""
        self._end_sink(reason)
        if self.transport is not None and not self._closed:
            self._closed = True
            self.transport.close()
            self._arm_deadline(CLOSE_FLUSH_TIMEOUT, "did not take our last bytes")

    def abort(self, reason: str) -> None:
        """Drop the connection now, unsent output and all (timeouts, peers that never read)."""
        self._end_sink(reason)
        if self.transport is not None and not self._closed:
            self._closed = True
            self.transport.abort()

    def _linger(self, reason: str) -> None:
        """After a refusal: half-close, read and ignore what the peer still says, then go.

        The peer reads our refusal and then EOF; its goodbye (FCUnpublish,
        deleteStream) still finds an open socket; its close ends the connection.
        """
        if self._lingering or self._closed or self.transport is None:
            return
        self._lingering = True
        self._end_sink(reason)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._arm_deadline(REFUSAL_LINGER, "did not leave after a refusal")

    def _arm_deadline(self, seconds: float, why: str) -> None:
        if self._deadline is None:
            self._deadline = asyncio.get_running_loop().call_later(
                seconds, self._deadline_passed, why)

    def _deadline_passed(self, why: str) -> None:
        self._deadline = None
        log.info("rtmp connection aborted peer=%s channel=%s: %s", self.peer, self.channel, why)
        self._closed = True
        if self.transport is not None:
            self.transport.abort()

    def _end_sink(self, reason: str, *, unpublished: bool = False) -> None:
        sink, self.sink = self.sink, None
        self._on_media = _no_media
        self.publishing = False
        if sink is not None:
            log.info("rtmp publish ended peer=%s channel=%s: %s", self.peer, self.channel, reason)
            sink.on_end(reason, unpublished=unpublished)


def _no_media(frames: list[tuple[int, int, bytes]]) -> None:
    """The media handler while no publish is accepted."""


def _media_handler(sink: PublishSink) -> Callable[[list[tuple[int, int, bytes]]], None]:
    """The sink's on_media, or one on_audio/on_video call per frame for a sink without it."""
    on_media = getattr(sink, "on_media", None)
    if on_media is not None:
        return on_media  # type: ignore[no-any-return]

    def one_by_one(frames: list[tuple[int, int, bytes]]) -> None:
        for type_id, timestamp, payload in frames:
            if type_id == MSG_VIDEO:
                sink.on_video(timestamp, payload)
            else:
                sink.on_audio(timestamp, payload)

    return one_by_one


class ReadPacer:
    """Keeps publishing sockets paused between reads; one timer resumes them all.

    One shared timer, not one per session: the held sockets become readable
    together, so the loop reads them all in one turn and the hub drains their
    frames together. Measured at 100 publishers, that is about a quarter
    cheaper than releasing each socket on its own phase (10 ms slots), at the price
    of HLS requests waiting behind one such turn; the hub's readers then drain what it
    brought in slices of a few milliseconds (mediaserver.readers), with the loop turning
    between them, rather than all at once.
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
        policy: PublishPolicy,
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
        log.info("rtmp chunk reader: %s", "compiled" if COMPILED_READER else
                 "pure Python (MEDIASERVER_NO_EXTENSIONS set, or the extension is not built)")
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
            # No session may stay referenced across the sleep: a loop variable here
            # would keep the last one (and its publisher) alive after it ended.
            self._sweep_once(time.monotonic())

    def _sweep_once(self, now: float) -> None:
        for session in list(self.sessions):
            self._check_timeouts(session, now)

    def _check_timeouts(self, session: RtmpSession, now: float) -> None:
        """Abort (not close) a timed-out session: it may be a peer that never reads,
        and a close would wait on it for ever. Sessions on their way out have their
        own deadline and are left alone, so each is logged once."""
        if session.closing:
            return
        if (
            not session.publishing
            and session._authorizing is None
            and now - session.created_at > self.handshake_timeout
        ):
            self.stats.handshake_timeouts += 1
            log.info("rtmp handshake/publish timeout peer=%s", session.peer)
            session.abort("no publish within the handshake timeout")
            return
        idle_since = session.last_media if session.publishing else session.last_activity
        if now - idle_since > self.idle_timeout:
            self.stats.idle_timeouts += 1
            log.info("rtmp idle timeout peer=%s channel=%s", session.peer, session.channel)
            session.abort(f"no media for {self.idle_timeout:.0f}s")

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
