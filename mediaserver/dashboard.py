"""The operator's dashboard: a static page at `/` and the JSON it polls.

`/dashboard/streams.json` needs no token, so a wallboard can show the page
without one. It carries only what any viewer of those channels can already
see (names, picture size, rates, health) and never stream keys or publisher
addresses. Management (create, rotate, kick) goes from the page straight to
the control API with the bearer token the operator typed, which the page
keeps in sessionStorage only.

In a cluster every node's live streams are listed, each with the node that
holds it. With `--edge proxy` the others' play and show their picture through
this node like its own; with `--edge redirect` the page cannot follow a
redirect to another origin (its Content-Security-Policy), so their cards say
which node holds them and link to that node's dashboard instead.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from control_api.live import StreamStats

if TYPE_CHECKING:
    from .cluster.registry import RemoteStream
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
Card = dict[str, object]


@dataclass(frozen=True, slots=True)
class ClusterCards:
    """What the dashboard of a node in a cluster shows of the others."""

    node: str  # this node's id
    elsewhere: Callable[[], Awaitable[list[RemoteStream]]]  # their live streams
    proxied: bool  # --edge proxy: their channels play through this node


def _number(value: float | None, digits: int) -> float | None:
    return round(value, digits) if value is not None and math.isfinite(value) else None


def _live_card(stats: StreamStats, now: float) -> Card:
    return {
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


def stream_cards(hub: StreamHub, viewers: ViewerCount, now: float | None = None
                 ) -> list[Card]:
    """One card per channel that is live or waiting for its publisher to come back."""
    now = time.time() if now is None else now
    cards: dict[str, Card] = {}
    for stats in hub.live_streams():
        cards[stats.channel] = _live_card(stats, now)
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


def remote_cards(local: list[Card], streams: list[RemoteStream], hub: StreamHub,
                 viewers: ViewerCount, cluster: ClusterCards, now: float | None = None
                 ) -> list[Card]:
    """`local`'s cards marked as this node's, with a card for each stream another node
    holds (over a card of this node's that only waits for its publisher)."""
    now = time.time() if now is None else now
    cards = {str(card["name"]): card | {"node": cluster.node, "here": True} for card in local}
    low_latency = hub.settings.part_duration is not None  # a cluster's nodes share settings
    window = max(hub.settings.segment_duration, 1.0)
    for stream in streams:
        name = stream.stats.channel
        if name in cards and cards[name]["state"] == "live":
            continue
        proxied = cluster.proxied
        cards[name] = _live_card(stream.stats, now) | {
            "node": stream.node,
            "here": False,
            # Served through this node (edge proxy); else only from its own node.
            "playback_url": f"/live/{name}/index.m3u8" if proxied else None,
            "ll_playback_url": f"/live/{name}/ll.m3u8" if proxied and low_latency else None,
            "thumbnail_url": f"/live/{name}/thumbnail.jpg" if proxied else None,
            "node_url": None if proxied else stream.address + "/",
            "playlist_ready": None,  # not known here: the player asks and retries
            "segments_produced": None,
            "viewers": viewers(name, window),  # of this node
        }
    return [cards[name] for name in sorted(cards)]


class Dashboard:
    """Routes for the page, its static files and its JSON."""

    def __init__(self, hub: StreamHub, viewers: ViewerCount, api_prefix: str,
                 static_dir: Path = STATIC_DIR, cluster: ClusterCards | None = None) -> None:
        self._hub = hub
        self._viewers = viewers
        self._api_prefix = api_prefix
        self._static = static_dir
        self._cluster = cluster

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/", self._index)
        app.router.add_get("/dashboard/streams.json", self._streams)
        app.router.add_static("/static/", self._static, name="static")

    async def _index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(self._static / "index.html", headers=PAGE_HEADERS)

    async def _streams(self, request: web.Request) -> web.Response:
        cards = stream_cards(self._hub, self._viewers)
        if self._cluster is not None:
            cards = remote_cards(cards, await self._cluster.elsewhere(), self._hub,
                                 self._viewers, self._cluster)
        body = {
            "server_time": time.time(),
            "api_prefix": self._api_prefix,
            "player_available": (self._static / "vendor" / "hls.min.js").is_file(),
            "streams": cards,
        }
        return web.json_response(body, headers={"Cache-Control": "no-store"})
