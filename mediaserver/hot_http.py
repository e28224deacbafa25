"""HTTP/1.1 connections whose hot HLS requests are answered without aiohttp.

Each accepted connection (once the HttpGate has let it in) starts here. Request
heads are parsed by httptools (llhttp, the parser aiohttp's own C parser is built
on, so what it refuses is what aiohttp refuses); a GET or HEAD that hls.hot can
answer at once (a local channel's playlist without directives, a segment, part or
init section) is answered from bytes made ahead, head and body in one writelines,
the body being the segmenter's own buffer. The first request that is anything
else (the API, the dashboard, /metrics, a blocking reload, Range, OPTIONS,
another node's channel, a parse error, HTTP/1.0...) hands the connection to
aiohttp's RequestHandler for good, with every byte not yet answered, so aiohttp
serves it and all that follows exactly as it would have from the start.
Answers already written stay in order: they went to the transport first.

What aiohttp would do and this must do too, because a hot connection may never
meet aiohttp:
- keep-alive timeout: a connection with no complete request for
  `keepalive_timeout` seconds after its last answer (or its start) is closed,
  whether it is silent or half way through a head;
- `Connection: close` is honoured (the answer says it, then the connection closes);
- pipelined requests are answered in order, and while the transport is over its
  high-water mark (a peer that does not read) no further request is answered and
  reading stops, so a peer cannot make us buffer more than one answer;
- requests are counted by kind through the hls.http hook, as the handlers count them.
The HttpGate in front keeps the connection cap, the probe reserve and the
header timeout for the first request; those need nothing from here.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import socket
import time
from collections.abc import Callable
from typing import cast

import httptools

from hls.chunks import Chunks
from hls.hot import HotAnswers
from hls.remote import EDGE_HEADER, WAIT_HEADER

log = logging.getLogger("mediaserver.http")

# A request head longer than this is nothing a player sends: aiohttp takes the
# connection and applies its own limits (8190 bytes per line, 128 headers).
MAX_HEAD_BYTES = 8192
_HEAD_END = b"\r\n\r\n"
# Headers whose presence means the request is not a plain hot GET: aiohttp answers it
# (another node's edge, whose playlist requests may ask to be held, included).
# (A body, chunked or not, is seen as a message that does not end with its head.)
_NOT_HOT_HEADERS = frozenset({b"range", b"expect", b"upgrade",
                              *(name.lower().encode() for name in (EDGE_HEADER, WAIT_HEADER))})


class HttpDate:
    """The Date line (RFC 9110 6.6.1: an origin server with a clock MUST send it),
    formatted once a second, with and without a Connection: close before it."""

    __slots__ = ("_close", "_keep", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._keep = self._close = b""

    def lines(self, keep_alive: bool) -> bytes:
        """The last header lines of an answer and the blank line that ends its head."""
        now = int(time.time())
        if now != self._second:
            date = email.utils.formatdate(now, usegmt=True).encode()
            self._keep = b"Date: " + date + b"\r\n\r\n"
            self._close = b"Connection: close\r\nDate: " + date + b"\r\n\r\n"
            self._second = now
        return self._keep if keep_alive else self._close


class HotStats:
    """Counters read by /metrics."""

    __slots__ = ("answered", "handed_over")

    def __init__(self) -> None:
        self.answered = 0  # requests answered here
        self.handed_over = 0  # connections handed to aiohttp


class HotFront:
    """Makes the connections of one HTTP server and knows those still open here."""

    def __init__(self, answers: HotAnswers, keepalive_timeout: float) -> None:
        self.answers = answers
        self.keepalive_timeout = keepalive_timeout
        self.stats = HotStats()
        self.date = HttpDate()
        self._open: set[HotConnection] = set()

    def protocol_factory(self, handler_factory: Callable[[], asyncio.Protocol]
                         ) -> Callable[[], HotConnection]:
        """`handler_factory`: aiohttp's (web.Server), for the connections handed over."""
        return lambda: HotConnection(self, handler_factory)

    def close_all(self) -> None:
        """At shutdown: close connections not handed over (aiohttp closes its own).
        Their answers are whole on the transport, which sends them before closing."""
        for connection in list(self._open):
            connection.close()


class HotConnection(asyncio.Protocol):
    """One HTTP connection: hot requests answered here until one is not."""

    __slots__ = ("_accept_encoding", "_buffer", "_closing", "_complete", "_front",
                 "_handler", "_handler_factory", "_if_none_match", "_keep_alive",
                 "_last_answer", "_loop", "_method", "_not_hot", "_parser", "_peer",
                 "_reading_paused", "_timer", "_transport", "_url", "_user_agent", "_version",
                 "_writing_paused")

    def __init__(self, front: HotFront, handler_factory: Callable[[], asyncio.Protocol]
                 ) -> None:
        self._front = front
        self._handler_factory = handler_factory
        self._handler: asyncio.Protocol | None = None
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        # The parser holds this object for its callbacks: dropped when the connection
        # ends or goes to aiohttp, so that reference counting frees both (no cycle).
        self._parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)
        self._buffer = b""  # an incomplete head, or requests held while the peer is not reading
        self._peer = ""
        self._timer: asyncio.TimerHandle | None = None
        self._last_answer = 0.0
        self._writing_paused = False
        self._reading_paused = False
        self._closing = False
        self._reset_request()

    # ---- asyncio callbacks --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self._peer = peer[0] if isinstance(peer, tuple) else ""
        sock = transport.get_extra_info("socket")
        if sock is not None:  # as aiohttp's handler does (tcp_keepalive)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self._front._open.add(self)
        self._last_answer = self._loop.time()
        self._timer = self._loop.call_at(self._last_answer + self._front.keepalive_timeout,
                                         self._idle_check)

    def data_received(self, data: bytes) -> None:
        if self._handler is not None:
            self._handler.data_received(data)
            return
        if self._closing:
            return
        if self._buffer:
            data, self._buffer = self._buffer + data, b""
        self._serve(data)

    def eof_received(self) -> bool | None:
        if self._handler is not None:
            return self._handler.eof_received()
        return None  # close: every complete request has been answered already

    def pause_writing(self) -> None:
        if self._handler is not None:
            self._handler.pause_writing()
        else:
            self._writing_paused = True

    def resume_writing(self) -> None:
        if self._handler is not None:
            self._handler.resume_writing()
            return
        self._writing_paused = False
        # As aiohttp's: the keep-alive wait starts once an answer is fully handed over.
        self._last_answer = self._loop.time()
        if self._reading_paused and self._transport is not None:
            self._reading_paused = False
            self._transport.resume_reading()
        if self._buffer and not self._closing:
            data, self._buffer = self._buffer, b""
            self._serve(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self._front._open.discard(self)
        self._transport = None
        self._parser = None
        if self._handler is not None:
            handler, self._handler = self._handler, None
            handler.connection_lost(exc)

    def close(self) -> None:
        if self._handler is None and self._transport is not None:
            self._closing = True
            self._transport.close()

    # ---- httptools callbacks (one request head at a time) -------------------------------

    def on_url(self, url: bytes) -> None:
        self._url = url

    def on_header(self, name: bytes, value: bytes) -> None:
        # The first of repeated headers counts, as aiohttp's headers.get() gives it.
        key = name.lower()
        if key == b"user-agent":
            if self._user_agent is None:
                self._user_agent = value
        elif key == b"accept-encoding":
            if self._accept_encoding is None:
                self._accept_encoding = value
        elif key == b"if-none-match":
            if self._if_none_match is None:
                self._if_none_match = value
        elif key in _NOT_HOT_HEADERS:
            self._not_hot = True

    def on_message_complete(self) -> None:
        # Read here: llhttp resets them for the next message once this one is done.
        parser = self._parser
        assert parser is not None
        self._complete = True
        self._keep_alive = parser.should_keep_alive()
        self._method = parser.get_method()
        self._version = parser.get_http_version()

    # ---- serving ------------------------------------------------------------------------

    def _serve(self, data: bytes) -> None:
        """Answer every complete head in `data` that is hot; hand over at the first not."""
        start, size = 0, len(data)
        while start < size:
            if self._closing:
                return
            if self._writing_paused:
                self._buffer = data[start:]
                if not self._reading_paused and self._transport is not None:
                    self._reading_paused = True
                    self._transport.pause_reading()
                return
            end = data.find(_HEAD_END, start)
            if end < 0:
                rest = data[start:] if start else data
                if len(rest) > MAX_HEAD_BYTES:
                    self._hand_over(rest)
                else:
                    self._buffer = rest
                return
            end += len(_HEAD_END)
            if not self._answer(data if start == 0 and end == size else data[start:end]):
                self._hand_over(data[start:] if start else data)
                return
            start = end

    def _answer(self, head: bytes) -> bool:
        """Answer one request head; False (nothing written) if it is not hot."""
        self._reset_request()
        parser = self._parser
        if parser is None:
            return False
        try:
            parser.feed_data(head)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            return False  # aiohttp's parser will say what is wrong with it
        if not self._complete or self._not_hot or self._url is None or self._version != "1.1":
            return False
        method = self._method
        if method == b"GET":
            head_only = False
        elif method == b"HEAD":
            head_only = True
        else:
            return False
        try:
            found = self._front.answers.answer(self._url, head_only, self._accept_encoding,
                                               self._if_none_match, self._peer,
                                               self._user_agent)
        except Exception:
            log.exception("hot answer failed for %r; aiohttp takes the connection", self._url)
            return False
        if found is None:
            return False
        transport = self._transport
        assert transport is not None
        answer_head, body = found
        keep_alive = self._keep_alive
        lines = self._front.date.lines(keep_alive)
        if body is None:
            transport.write(answer_head + lines)
        elif type(body) is Chunks:
            transport.writelines((answer_head, lines, *body.parts))
        else:
            transport.writelines((answer_head, lines, body))
        self._front.stats.answered += 1
        self._last_answer = self._loop.time()
        if not keep_alive:
            self._closing = True
            transport.close()
        return True

    def _reset_request(self) -> None:
        self._url: bytes | None = None
        self._user_agent: bytes | None = None
        self._accept_encoding: bytes | None = None
        self._if_none_match: bytes | None = None
        self._not_hot = False
        self._complete = False
        self._keep_alive = True
        self._method = b""
        self._version = ""

    def _hand_over(self, data: bytes) -> None:
        """aiohttp takes the connection from here on, starting with `data`."""
        self._cancel_timer()  # aiohttp's handler keeps its own keep-alive timer
        self._front._open.discard(self)
        self._parser = None
        self._front.stats.handed_over += 1
        handler = self._handler = self._handler_factory()
        handler.connection_made(self._transport)  # type: ignore[arg-type]
        if self._writing_paused:
            handler.pause_writing()
        if self._reading_paused and self._transport is not None:
            self._reading_paused = False
            self._transport.resume_reading()  # aiohttp paces its reads itself
        handler.data_received(data)

    # ---- keep-alive ---------------------------------------------------------------------

    def _idle_check(self) -> None:
        """Close a connection idle since its last answer for the keep-alive timeout;
        one timer per connection, moved on lazily rather than re-armed per request."""
        self._timer = None
        if self._handler is not None or self._transport is None or self._closing:
            return
        now = self._loop.time()
        due = self._last_answer + self._front.keepalive_timeout
        if now < due:
            self._timer = self._loop.call_at(due, self._idle_check)
        elif self._writing_paused:  # the peer is still reading an answer: not idle
            self._timer = self._loop.call_at(now + self._front.keepalive_timeout,
                                             self._idle_check)
        else:
            self._closing = True
            self._transport.close()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
