"""aiohttp handlers that serve what the segmenters hold: playlists and segments, from memory.

Headers are chosen for players on other origins and for caches in front:
playlists change every segment (no-cache); segment names are never reused
(see Segmenter's name token), so segments are immutable. CORS headers go on
every answer, 404s included, so a web player sees the real status instead of
an opaque network error.

Playlists answer conditional requests (ETag, If-None-Match -> 304) and are
gzipped when the request accepts it (RFC 8216 6.2.1's SHOULDs); the body, its
ETag and its gzipped form are made once per playlist change (hls.versions).

The hot URLs of local channels (playlists without delivery directives, segments,
parts, init sections) can also be answered below aiohttp, from bytes made ahead
(hls.hot): `add_hls_routes` builds those answers from the same versions and
headers as the handlers here, and leaves them in the app under HLS_HOT.

A channel not held here may be held by another node: with a RemoteSource
(hls/remote.py) the handlers ask it and serve its answer with the same headers
as a local channel's, so a player cannot tell which node holds the publisher.
Another node's edge following a channel held here has its index.m3u8 request
held until the playlist changes (hls.edge_hold).

LL-HLS (RFC 8216bis): ``ll.m3u8`` is the fMP4 rendition with parts; its init
sections (``.mp4``), parts and segments (``.m4s``) are immutable media like TS
segments. Delivery directives (hls.directives) are checked first (a bad one is a
400 that names it, on any node); a blocking reload, and a request for the
preload-hinted part, wait on the channel's one ChangeSignal (hls.waiters) for at
most BLOCKING_TARGETS target durations, then get 503 (RFC 8216bis 6.2.5.2).
"""

from __future__ import annotations

import logging
import re
import weakref
from collections.abc import Callable

from aiohttp import payload, web
from aiohttp.abc import AbstractStreamWriter

from .chunks import Chunks
from .directives import DirectiveError, Directives, parse_directives, satisfied, too_far
from .edge_hold import HoldError, hold, requested_hold
from .hot import Canned, HotAnswers, HotHeads
from .names import CHANNEL_NAME
from .remote import (
    EDGE_HEADER,
    WAIT_HEADER,
    Failed,
    Found,
    Kind,
    Missing,
    Redirect,
    RemoteAnswer,
    RemoteRequest,
    RemoteSource,
)
from .segmenter import Segmenter
from .store import Data
from .versions import CORS as _CORS
from .versions import PlaylistVersion, PlaylistVersions, etag_matches
from .waiters import Signals
from .wire import response_head

log = logging.getLogger("hls.http")

SEGMENT_STEM = re.compile(r"[A-Za-z0-9_-]{1,128}")
SEGMENT_TYPE = "video/mp2t"
FMP4_TYPE = "video/mp4"  # init sections, parts and fMP4 segments alike
# RFC 8216bis 6.2.5.2: a server that cannot answer a blocking request after this many
# target durations SHOULD answer 503. A hinted part is held as long.
BLOCKING_TARGETS = 3
# Any max-age is safe for names that are never reused; an hour keeps CDN edges useful
# for late re-requests without pinning segments of a long-gone stream for a day.
SEGMENT_MAX_AGE = 3600
PREFLIGHT_MAX_AGE = 86400
ALLOWED_METHODS = "GET, HEAD, OPTIONS"
DEFAULT_ALLOWED_HEADERS = "Range, Accept, Cache-Control, If-None-Match, If-Modified-Since"
_MAX_REQUESTED_HEADERS = 1024  # longest Access-Control-Request-Headers echoed back

# (kind, status, channel, client): client is "address user-agent", what a viewer count keys on.
RequestHook = Callable[[str, int, str, str], None]


def add_hls_routes(
    app: web.Application,
    lookup: Callable[[str], Segmenter | None],
    *,
    prefix: str = "/live",
    on_request: RequestHook | None = None,
    segment_max_age: int = SEGMENT_MAX_AGE,
    remote: RemoteSource | None = None,
) -> None:
    """Serve ``{prefix}/{channel}/index.m3u8`` and ``{prefix}/{channel}/{segment}.ts``,
    and the LL-HLS ``ll.m3u8`` with its ``{name}.mp4`` init sections and ``{name}.m4s``
    parts and segments.

    `lookup` maps a channel name to its segmenter (None: not live/unknown); `remote` is
    asked for channels the lookup does not know (another node may hold them).
    `on_request(kind, status, channel, client)` sees every answer; kind is "playlist",
    "ll_playlist", "segment" (any media) or "preflight".
    """
    handlers = _Handlers(lookup, on_request, segment_max_age, remote)
    app[HLS_HOT] = HotAnswers(lookup, handlers.versions, handlers.hot_heads(), prefix=prefix,
                              on_request=on_request)
    routes = (
        ("index.m3u8", handlers.playlist),
        ("ll.m3u8", handlers.ll_playlist),
        ("{segment}.ts", handlers.segment),
        ("{segment}.m4s", handlers.fmp4),
        ("{segment}.mp4", handlers.fmp4),
    )
    for path, handler in routes:
        resource = app.router.add_resource(f"{prefix}/{{channel}}/{path}")
        resource.add_route("GET", handler)
        resource.add_route("HEAD", handler)
        resource.add_route("OPTIONS", handlers.preflight)
    app[HLS_SIGNALS] = handlers.signals


# The blocked-request signals of an app's HLS routes (tests and benchmarks count waiters).
HLS_SIGNALS: web.AppKey[Signals] = web.AppKey("hls_signals", Signals)
# The same routes' hot answers, for a server that answers them below aiohttp (hls.hot).
HLS_HOT: web.AppKey[HotAnswers] = web.AppKey("hls_hot", HotAnswers)


class _Handlers:
    __slots__ = ("_lookup", "_on_request", "_remote", "_remote_playlists", "_segment_cache",
                 "signals", "versions")

    def __init__(
        self,
        lookup: Callable[[str], Segmenter | None],
        on_request: RequestHook | None,
        segment_max_age: int,
        remote: RemoteSource | None = None,
    ) -> None:
        self._lookup = lookup
        self._on_request = on_request
        self._remote = remote
        self._segment_cache = f"public, max-age={segment_max_age}, immutable"
        # Shared with the hot answers: a playlist change is encoded once for both.
        self.versions = PlaylistVersions()
        self.signals = Signals()
        # Per remote body, its version; goes away when the source lets go of the body.
        self._remote_playlists: weakref.WeakKeyDictionary[Found, PlaylistVersion] = (
            weakref.WeakKeyDictionary()
        )

    async def playlist(self, request: web.Request) -> web.Response:
        segmenter = self._find(request.match_info["channel"])
        if segmenter is None:
            return self._done(request, "playlist", await self.remote_playlist(request))
        if not segmenter.playlist_ready:
            return self._done(request, "playlist", _not_found(_NOT_READY))
        version = self._version(segmenter, "ts", segmenter.render_playlist())
        if WAIT_HEADER in request.headers:  # an edge following this playlist (hls.edge_hold)
            refused = await self._hold_for_edge(request, segmenter, version)
            if refused is not None:
                return self._done(request, "playlist", refused)
            version = self._version(segmenter, "ts", segmenter.render_playlist())
        return self._done(request, "playlist", _conditional(request, version))

    async def _hold_for_edge(self, request: web.Request, segmenter: Segmenter,
                             version: PlaylistVersion) -> web.Response | None:
        """Hold an edge's request while the playlist is still the one it has; the answer
        instead when the wait is malformed (400) or the channel left this node (404)."""
        channel = request.match_info["channel"]
        try:
            seconds = requested_hold(request.headers)
        except HoldError as exc:
            return self._bad_request(channel, str(exc))
        if not seconds or segmenter.ended or not etag_matches(
                request.headers.get("If-None-Match"), version.identity.etag):
            return None  # an ended playlist never changes: nothing to wait for
        text = segmenter.render_playlist()
        await hold(self.signals.of(segmenter), lambda: segmenter.render_playlist() != text,
                   lambda: request.transport is None or self._lookup(channel) is not segmenter,
                   seconds)
        if self._lookup(channel) is not segmenter:
            return _not_found("channel no longer held here")
        return None

    async def ll_playlist(self, request: web.Request) -> web.Response:
        """ll.m3u8: delivery directives checked, a blocking reload held until it can be
        answered (or BLOCKING_TARGETS target durations, then 503)."""
        channel = request.match_info["channel"]
        try:
            directives = parse_directives(request.query, _repeated(request))
        except DirectiveError as exc:
            return self._done(request, "ll_playlist", self._bad_request(channel, str(exc)))
        segmenter = self._find(channel)
        if segmenter is None:
            return self._done(request, "ll_playlist", await self.remote_playlist(request))
        if not segmenter.low_latency:
            return self._done(request, "ll_playlist", _not_found(_LL_OFF))
        if not segmenter.playlist_ready:
            return self._done(request, "ll_playlist", _not_found(_NOT_READY))
        refused, woken_at = await self._blocking_reload(segmenter, channel, directives)
        if refused is not None:
            return self._done(request, "ll_playlist", refused)
        delta = directives.skip
        text = segmenter.render_ll_playlist(delta)
        version = self._version(segmenter, "ll-delta" if delta else "ll", text)
        response = _conditional(request, version)
        self.signals.answered(woken_at)
        return self._done(request, "ll_playlist", response)

    async def _blocking_reload(self, segmenter: Segmenter, channel: str,
                               directives: Directives
                               ) -> tuple[web.Response | None, float | None]:
        """(None, when the change that answered it came, if it had to wait) once the
        playlist holds what the request waits for; else (the error, None)."""
        playlist = segmenter.playlist
        reason = too_far(playlist, directives)
        if reason is not None:
            return self._bad_request(channel, reason), None
        timeout = BLOCKING_TARGETS * playlist.target_duration
        signal = self.signals.of(segmenter)
        held, woken_at = await signal.wait_until(lambda: satisfied(playlist, directives),
                                                 timeout)
        if held:
            return None, woken_at
        return _unavailable(f"no such part within {timeout} s: the stream may have stalled"), None

    def _version(self, segmenter: Segmenter, form: str, text: str) -> PlaylistVersion:
        return self.versions.of(segmenter, form, text)

    def _bad_request(self, channel: str, reason: str) -> web.Response:
        log.info("bad HLS request channel=%s: %s", channel, reason)
        headers = {"Cache-Control": "no-store"} | _CORS
        return web.Response(status=400, text=reason + "\n", headers=headers)

    async def segment(self, request: web.Request) -> web.Response:
        found = await self._media_request(request, SEGMENT_TYPE)
        if isinstance(found, web.Response):
            return self._done(request, "segment", found)
        segmenter, name = found
        data = segmenter.segment(name)
        if data is None:
            return self._done(request, "segment", _not_found(_UNKNOWN_MEDIA))
        return self._done(request, "segment", self._media(request, data, SEGMENT_TYPE))

    async def _media_request(self, request: web.Request, content_type: str
                             ) -> tuple[Segmenter, str] | web.Response:
        """The channel's segmenter and the resource's name, or the answer already: a 404
        for a name that cannot be ours, or another node's answer for its channel."""
        stem = request.match_info["segment"]
        if not SEGMENT_STEM.fullmatch(stem):
            return _not_found(_UNKNOWN_MEDIA)
        segmenter = self._find(request.match_info["channel"])
        if segmenter is None:
            return await self.remote_media(request, content_type)
        return segmenter, stem + request.path[request.path.rfind("."):]

    async def fmp4(self, request: web.Request) -> web.Response:
        """An init section, part or fMP4 segment; the preload-hinted part is held until
        it is complete (RFC 8216bis 6.2.6), at most BLOCKING_TARGETS target durations."""
        found = await self._media_request(request, FMP4_TYPE)
        if isinstance(found, web.Response):
            return self._done(request, "segment", found)
        segmenter, name = found
        data = segmenter.segment(name)
        woken_at = None
        if data is None and name == segmenter.preload_hint:
            timeout = BLOCKING_TARGETS * segmenter.playlist.target_duration
            signal = self.signals.of(segmenter)
            # Done once the part exists, or is no longer the one hinted (the stream ended).
            held, woken_at = await signal.wait_until(
                lambda: segmenter.preload_hint != name or segmenter.segment(name) is not None,
                timeout)
            if not held:
                return self._done(request, "segment", _unavailable(
                    f"the hinted part did not come within {timeout} s"))
            data = segmenter.segment(name)
        if data is None:
            return self._done(request, "segment", _not_found(_UNKNOWN_MEDIA))
        response = self._media(request, data, FMP4_TYPE)
        self.signals.answered(woken_at)
        return self._done(request, "segment", response)

    def _media(self, request: web.Request, data: Data, content_type: str) -> web.Response:
        return _ranged(request.headers.get("Range"), data, self._media_headers(content_type))

    def _media_headers(self, content_type: str) -> dict[str, str]:
        return {
            "Content-Type": content_type,
            "Cache-Control": self._segment_cache,
            "Accept-Ranges": "bytes",
        } | _CORS

    def hot_heads(self) -> HotHeads:
        """The answers hls.hot gives without aiohttp, made by the functions these
        handlers answer with, so that both paths send the same headers."""
        return HotHeads(
            ts_media=response_head(200, self._media_headers(SEGMENT_TYPE)),
            fmp4_media=response_head(200, self._media_headers(FMP4_TYPE)),
            not_ready=_canned(_not_found(_NOT_READY)),
            ll_off=_canned(_not_found(_LL_OFF)),
            unknown_media=_canned(_not_found(_UNKNOWN_MEDIA)),
        )

    # ---- channels held by another node ------------------------------------------------
    # Public so that routes added later (LL-HLS playlists, parts, init sections) answer
    # for remote channels the same way: any playlist, any immutable media resource.

    async def remote_playlist(self, request: web.Request) -> web.Response:
        """A playlist of a channel not held here, from the remote source if it has one."""
        answer = await self._ask_remote(request, Kind.PLAYLIST)
        if isinstance(answer, Found):
            version = self._remote_playlists.get(answer)
            if version is None:
                version = self._remote_playlists[answer] = PlaylistVersion.of(answer.body)
            return _conditional(request, version)
        return _not_served(answer)

    async def remote_media(self, request: web.Request, content_type: str) -> web.Response:
        """A segment, part or init section of a channel not held here."""
        answer = await self._ask_remote(request, Kind.MEDIA)
        if isinstance(answer, Found):
            return self._media(request, answer.body, content_type)
        return _not_served(answer)

    async def _ask_remote(self, request: web.Request, kind: Kind) -> RemoteAnswer | None:
        channel = request.match_info["channel"]
        # Another node's edge asks only for what this node holds: never pass it on.
        if self._remote is None or EDGE_HEADER in request.headers:
            return None
        if not CHANNEL_NAME.fullmatch(channel):
            return None
        query = RemoteRequest(kind, channel, request.path, request.rel_url.raw_query_string)
        try:
            return await self._remote.fetch(query)
        except Exception:
            log.exception("remote source failed channel=%s path=%s", channel, request.path)
            return Failed(502, "origin fetch failed")

    async def preflight(self, request: web.Request) -> web.Response:
        requested = request.headers.get("Access-Control-Request-Headers", "").strip()
        allowed = requested if 0 < len(requested) <= _MAX_REQUESTED_HEADERS else None
        headers = {
            "Access-Control-Allow-Methods": ALLOWED_METHODS,
            "Access-Control-Allow-Headers": allowed or DEFAULT_ALLOWED_HEADERS,
            "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE),
        } | _CORS
        return self._done(request, "preflight", web.Response(status=204, headers=headers))

    def _find(self, channel: str) -> Segmenter | None:
        if not CHANNEL_NAME.fullmatch(channel):
            return None
        return self._lookup(channel)

    def _done(self, request: web.Request, kind: str, response: web.Response) -> web.Response:
        if self._on_request is not None:
            client = f"{request.remote or ''} {request.headers.get('User-Agent', '')}"
            try:
                self._on_request(kind, response.status, request.match_info["channel"], client)
            except Exception:
                log.exception("on_request hook failed")
        return response


_NOT_READY = "no segments yet: the stream has started, retry in a moment"
_UNKNOWN_MEDIA = "segment expired or unknown"
_LL_OFF = "low-latency HLS is off on this server: play index.m3u8"


def _repeated(request: web.Request) -> frozenset[str]:
    """Query parameters given more than once (a directive may appear only once)."""
    query = request.query
    if len(query) == len(set(query.keys())):
        return frozenset()
    return frozenset(name for name in query if len(query.getall(name)) > 1)


def _unavailable(text: str) -> web.Response:
    headers = {"Cache-Control": "no-store"} | _CORS
    return web.Response(status=503, text=text + "\n", headers=headers)


def _conditional(request: web.Request, version: PlaylistVersion) -> web.Response:
    """The playlist version the request accepts (gzip or not), or 304 if it has it."""
    headers = request.headers
    chosen, unchanged = version.choose(headers.get("Accept-Encoding"),
                                       headers.get("If-None-Match"))
    if unchanged:
        return web.Response(status=304, headers=chosen.not_modified_headers)
    return web.Response(body=chosen.body, headers=chosen.headers)


def _not_served(answer: Redirect | Missing | Failed | None) -> web.Response:
    """A remote answer that is not content: redirect, 404 or an origin's failure."""
    if answer is None:
        return _not_found("unknown channel")
    if isinstance(answer, Missing):
        return _not_found(answer.reason)
    # no-store: the origin may change (failover), so neither may be cached.
    headers = {"Cache-Control": "no-store"} | _CORS
    if isinstance(answer, Failed):
        return web.Response(status=answer.status, text=answer.reason + "\n", headers=headers)
    return web.Response(status=302, headers=headers | {"Location": answer.location})


def _canned(response: web.Response) -> Canned:
    """A response made once, as hls.hot writes it (aiohttp's own headers included)."""
    body = response.body
    assert isinstance(body, bytes)
    return Canned(response.status, response_head(response.status, response.headers, len(body)),
                  body)


def _not_found(text: str) -> web.Response:
    # no-store: a player polling for a stream that is starting must not be served a cached 404.
    headers = {"Cache-Control": "no-store"} | _CORS
    return web.Response(status=404, text=text + "\n", headers=headers)


def _ranged(range_header: str | None, data: Data, headers: dict[str, str]) -> web.Response:
    """Honour one ``bytes=`` range (players probe with them); anything fancier gets it all."""
    if range_header is None:
        return web.Response(body=_body(data), headers=headers)
    span = _parse_range(range_header, len(data))
    if span is None:
        return web.Response(body=_body(data), headers=headers)
    start, end = span
    if start >= len(data):
        headers = headers | {"Content-Range": f"bytes */{len(data)}"}
        return web.Response(status=416, headers=headers)
    headers = headers | {"Content-Range": f"bytes {start}-{end}/{len(data)}"}
    part = data.slice(start, end + 1) if isinstance(data, Chunks) else data[start : end + 1]
    return web.Response(status=206, body=_body(part), headers=headers)


def _body(data: Data) -> bytes | bytearray | memoryview | _ChunksPayload:
    return _ChunksPayload(data) if isinstance(data, Chunks) else data


class _ChunksPayload(payload.Payload):
    """A Chunks resource written buffer by buffer (no join); its size is known ahead."""

    def __init__(self, value: Chunks) -> None:
        super().__init__(value, content_type=None)
        self._size = value.size

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return bytes(self._value).decode(encoding, errors)

    async def write(self, writer: AbstractStreamWriter) -> None:
        for part in self._value:
            await writer.write(part)


def _parse_range(value: str, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single range; None to ignore the header (RFC 9110 14.2)."""
    unit, _, spec = value.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    first, last = first.strip(), last.strip()
    if not (first.isdigit() or first == "") or not (last.isdigit() or last == ""):
        return None
    if first == "":
        if last == "":
            return None
        suffix = int(last)
        return (max(size - suffix, 0), size - 1) if suffix else (size, size)  # -0: unsatisfiable
    start = int(first)
    if last == "":
        return (start, size - 1)
    end = int(last)
    if end < start:
        return None  # an invalid range-spec: ignore the header
    return (start, min(end, size - 1))
