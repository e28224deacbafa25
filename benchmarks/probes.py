"""Probes that see the server from outside: first playable segment, live-edge lag, HLS latency.

Probes poll at a low rate so that they measure the server under the scenario's
load rather than adding their own.
"""

from __future__ import annotations

import asyncio
import random
import time

import aiohttp
from yarl import URL

from .m3u8 import MediaPlaylist, parse_media_playlist
from .viewer import fetch

# Resolution of the publish -> first segment measurement. Polling starts only at
# FIRST_SEGMENT_EARLIEST x the segment target: nothing can be ready before that, and
# hundreds of publishers polling from their first second would load the server.
FIRST_SEGMENT_POLL = 0.1
FIRST_SEGMENT_EARLIEST = 0.75
# One playlist + newest segment a second: about two viewers' worth, so that at N = 1 the
# sampler does not pass for a cost of the stream.
LATENCY_SAMPLE_INTERVAL = 1.0


async def load_playlist(session: aiohttp.ClientSession, url: str) -> MediaPlaylist | None:
    try:
        status, body, _ = await fetch(session, url)
    except (aiohttp.ClientError, TimeoutError, OSError):
        return None
    if status != 200:
        return None
    return parse_media_playlist(body.decode("utf-8", "replace"))


async def first_segment(session: aiohttp.ClientSession, url: str, since: float,
                        timeout: float, segment_target: float) -> float | None:
    """Seconds from `since` (monotonic) until a listed segment downloads; None on timeout."""
    deadline = since + timeout
    await asyncio.sleep(max(0.0, since + FIRST_SEGMENT_EARLIEST * segment_target
                            - time.monotonic()))
    while time.monotonic() < deadline:
        playlist = await load_playlist(session, url)
        if playlist is not None and playlist.segments:
            segment_url = URL(url).join(URL(playlist.segments[0].uri))
            try:
                status, body, _ = await fetch(session, segment_url)
            except (aiohttp.ClientError, TimeoutError, OSError):
                status, body = 0, b""
            if status == 200 and body:
                return time.monotonic() - since
        await asyncio.sleep(FIRST_SEGMENT_POLL)
    return None


def produced_seconds(playlist: MediaPlaylist) -> float:
    """Media seconds the server has segmented so far (window durations extrapolated back)."""
    if not playlist.segments:
        return 0.0
    durations = [s.duration for s in playlist.segments]
    mean = sum(durations) / len(durations)
    return playlist.media_sequence * mean + sum(durations)


async def edge_lag(session: aiohttp.ClientSession, url: str, media_sent: float) -> float | None:
    """Media seconds sent but not yet in a finished segment (normal: below ~2 targets)."""
    playlist = await load_playlist(session, url)
    if playlist is None:
        return None
    return media_sent - produced_seconds(playlist)


class LatencySampler:
    """A slow, steady HLS client on random streams: request latency under load."""

    def __init__(self, session: aiohttp.ClientSession, urls: list[str], seed: int = 1,
                 interval: float = LATENCY_SAMPLE_INTERVAL) -> None:
        self.session = session
        self.interval = interval
        self.urls = urls
        self.playlist: list[float] = []
        self.segment: list[float] = []
        self.errors = 0
        self._random = random.Random(seed)

    async def run(self, deadline: float) -> None:
        while time.monotonic() < deadline and self.urls:
            url = self._random.choice(self.urls)
            try:
                status, body, seconds = await fetch(self.session, url)
                if status == 200:
                    self.playlist.append(seconds)
                    playlist = parse_media_playlist(body.decode("utf-8", "replace"))
                    if playlist.segments:
                        status, _, seconds = await fetch(
                            self.session, URL(url).join(URL(playlist.segments[-1].uri)))
                        if status == 200:
                            self.segment.append(seconds)
                if status != 200:
                    self.errors += 1
            except (aiohttp.ClientError, TimeoutError, OSError):
                self.errors += 1
            await asyncio.sleep(self.interval)
