"""The operator's dashboard: a static page at `/` and the JSON it polls.

`/dashboard/streams.json` needs no token, so a wallboard can show the page
without one. It carries only what any viewer of those channels can already
see (names, picture size, rates, health) and never stream keys or publisher
addresses. Management (create, rotate, kick) goes from the page straight to
the control API with the bearer token the operator typed, which the page
keeps in sessionStorage only.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .hub import StreamHub

STATIC_DIR = Path(__file__).parent / "static"
# The page loads only its own scripts; hls.js feeds <video> through MediaSource
# (blob: URLs) and may start its transmuxer worker from a blob.
CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "media-src 'self' blob:",
    "connect-src 'self'",
    "worker-src 'self' blob:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
))
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

ViewerCount = Callable[[str, float], int]


def _number(value: float | None, digits: int) -> float | None:
    return round(value, digits) if value is not None and math.isfinite(value) else None


def stream_cards(hub: StreamHub, viewers: ViewerCount, now: float | None = None
                 ) -> list[dict[str, object]]:
    """One card per channel that is live or waiting for its publisher to come back."""
    now = time.time() if now is None else now
    cards: dict[str, dict[str, object]] = {}
    for stats in hub.live_streams():
        cards[stats.channel] = {
            "name": stats.channel,
            "state": "live",
            "started_at": stats.started_at,
            "uptime_seconds": max(round(now - stats.started_at), 0),
            "video_codec": stats.video_codec,
            "width": stats.width,
            "height": stats.height,
            "fps": _number(stats.fps, 2),
            "bitrate_bps": _number(stats.bitrate_bps, 0),
            "keyframe_interval": _number(stats.keyframe_interval, 3),
            "audio_codec": stats.audio_codec,
            "sample_rate": stats.sample_rate,
            "audio_channels": stats.audio_channels,
            "warnings": list(stats.warnings),
        }
    grace = hub.settings.grace_period
    for name, live in hub.channels.items():
        if name not in cards:
            if live.ended_at is not None or live.left_at is None:
                continue  # ended playlists are on their way out of memory
            cards[name] = {
                "name": name,
                "state": "reconnecting",
                "warnings": [f"publisher disconnected: the playlist waits up to {grace:g} s "
                             "for it to come back"],
            }
        segmenter = live.segmenter
        cards[name] |= {
            "playback_url": f"/live/{name}/index.m3u8",
            # The page's player plays this with hls.js lowLatencyMode when there is one.
            "ll_playback_url": f"/live/{name}/ll.m3u8" if segmenter.low_latency else None,
            "thumbnail_url": f"/live/{name}/thumbnail.jpg",
            "playlist_ready": segmenter.playlist_ready,
            "segments_produced": segmenter.segments_produced,
            "viewers": viewers(name, max(float(segmenter.target_duration_seen), 1.0)),
        }
    return [cards[name] for name in sorted(cards)]


class Dashboard:
    """Routes for the page, its static files and its JSON."""

    def __init__(self, hub: StreamHub, viewers: ViewerCount, api_prefix: str,
                 static_dir: Path = STATIC_DIR) -> None:
        self._hub = hub
        self._viewers = viewers
        self._api_prefix = api_prefix
        self._static = static_dir

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/", self._index)
        app.router.add_get("/dashboard/streams.json", self._streams)
        app.router.add_static("/static/", self._static, name="static")

    async def _index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(self._static / "index.html", headers=PAGE_HEADERS)

    async def _streams(self, request: web.Request) -> web.Response:
        body = {
            "server_time": time.time(),
            "api_prefix": self._api_prefix,
            "player_available": (self._static / "vendor" / "hls.min.js").is_file(),
            "streams": stream_cards(self._hub, self._viewers),
        }
        return web.json_response(body, headers={"Cache-Control": "no-store"})
