"""aiohttp handlers that serve what the segmenters hold: playlists and segments, from memory.

Headers are chosen for players on other origins and for caches in front:
playlists change every segment (no-cache); segment names are never reused
(see Segmenter's name token), so segments are immutable. CORS headers go on
every answer, 404s included, so a web player sees the real status instead of
an opaque network error.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from aiohttp import web

from .names import CHANNEL_NAME
from .segmenter import Segmenter

log = logging.getLogger("hls.http")

SEGMENT_STEM = re.compile(r"[A-Za-z0-9_-]{1,128}")
PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
SEGMENT_TYPE = "video/mp2t"
PLAYLIST_CACHE = "no-cache"
# Any max-age is safe for names that are never reused; an hour keeps CDN edges useful
# for late re-requests without pinning segments of a long-gone stream for a day.
SEGMENT_MAX_AGE = 3600
PREFLIGHT_MAX_AGE = 86400
ALLOWED_METHODS = "GET, HEAD, OPTIONS"
DEFAULT_ALLOWED_HEADERS = "Range, Accept, Cache-Control, If-None-Match, If-Modified-Since"
EXPOSED_HEADERS = "Content-Length, Content-Range, Accept-Ranges, Age, Date"
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
) -> None:
    """Serve ``{prefix}/{channel}/index.m3u8`` and ``{prefix}/{channel}/{segment}.ts``.

    `lookup` maps a channel name to its segmenter (None: not live/unknown).
    `on_request(kind, status, channel, client)` sees every answer; kind is "playlist",
    "segment" or "preflight".
    """
    handlers = _Handlers(lookup, on_request, segment_max_age)
    playlist = app.router.add_resource(f"{prefix}/{{channel}}/index.m3u8")
    playlist.add_route("GET", handlers.playlist)
    playlist.add_route("HEAD", handlers.playlist)
    playlist.add_route("OPTIONS", handlers.preflight)
    segment = app.router.add_resource(f"{prefix}/{{channel}}/{{segment}}.ts")
    segment.add_route("GET", handlers.segment)
    segment.add_route("HEAD", handlers.segment)
    segment.add_route("OPTIONS", handlers.preflight)


class _Handlers:
    __slots__ = ("_lookup", "_on_request", "_segment_cache")

    def __init__(
        self,
        lookup: Callable[[str], Segmenter | None],
        on_request: RequestHook | None,
        segment_max_age: int,
    ) -> None:
        self._lookup = lookup
        self._on_request = on_request
        self._segment_cache = f"public, max-age={segment_max_age}, immutable"

    async def playlist(self, request: web.Request) -> web.Response:
        segmenter = self._find(request.match_info["channel"])
        if segmenter is None:
            return self._done(request, "playlist", _not_found("unknown channel"))
        if not segmenter.playlist_ready:
            text = "no segments yet: the stream has started, retry in a moment"
            return self._done(request, "playlist", _not_found(text))
        body = segmenter.render_playlist().encode()
        headers = {"Content-Type": PLAYLIST_TYPE, "Cache-Control": PLAYLIST_CACHE}
        response = web.Response(body=body, headers=headers | _CORS)
        return self._done(request, "playlist", response)

    async def segment(self, request: web.Request) -> web.Response:
        segmenter = self._find(request.match_info["channel"])
        if segmenter is None:
            return self._done(request, "segment", _not_found("unknown channel"))
        stem = request.match_info["segment"]
        data = segmenter.segment(f"{stem}.ts") if SEGMENT_STEM.fullmatch(stem) else None
        if data is None:
            return self._done(request, "segment", _not_found("segment expired or unknown"))
        headers = {
            "Content-Type": SEGMENT_TYPE,
            "Cache-Control": self._segment_cache,
            "Accept-Ranges": "bytes",
        } | _CORS
        response = _ranged(request.headers.get("Range"), data, headers)
        return self._done(request, "segment", response)

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


_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": EXPOSED_HEADERS,
}


def _not_found(text: str) -> web.Response:
    # no-store: a player polling for a stream that is starting must not be served a cached 404.
    headers = {"Cache-Control": "no-store"} | _CORS
    return web.Response(status=404, text=text + "\n", headers=headers)


def _ranged(range_header: str | None, data: bytes, headers: dict[str, str]) -> web.Response:
    """Honour one ``bytes=`` range (players probe with them); anything fancier gets it all."""
    if range_header is None:
        return web.Response(body=data, headers=headers)
    span = _parse_range(range_header, len(data))
    if span is None:
        return web.Response(body=data, headers=headers)
    start, end = span
    if start >= len(data):
        headers = headers | {"Content-Range": f"bytes */{len(data)}"}
        return web.Response(status=416, headers=headers)
    headers = headers | {"Content-Range": f"bytes {start}-{end}/{len(data)}"}
    return web.Response(status=206, body=data[start : end + 1], headers=headers)


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
