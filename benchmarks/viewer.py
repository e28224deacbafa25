"""Player-like HLS clients: the viewer load, and what they saw (stalls, latencies).

A viewer does what hls.js and Safari do with a live playlist: start three target
durations from the live edge, download segments in order, reload the playlist
about once per target duration (half that when it did not change), and play in
real time from the moment the first segment is in. A stall is the playback
clock catching up with the downloaded media: the next segment was not there in time.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import aiohttp
from yarl import URL

from .m3u8 import MediaPlaylist, parse_media_playlist

# Players start this many target durations behind the live edge (RFC 8216, 6.3.3).
START_DISTANCE = 3
READ_CHUNK = 256 * 1024
REQUEST_TIMEOUT = 10.0


@dataclass(slots=True)
class ViewerStats:
    playlist_latency: list[float] = field(default_factory=list)  # seconds per request
    segment_latency: list[float] = field(default_factory=list)
    segments: int = 0
    bytes: int = 0
    errors: int = 0  # failed or non-200 requests
    stalls: int = 0
    stall_seconds: float = 0.0
    skipped: int = 0  # segments that left the window before this viewer got to them
    started: bool = False  # playback began (a first segment arrived)

    def merge(self, other: ViewerStats) -> None:
        self.playlist_latency += other.playlist_latency
        self.segment_latency += other.segment_latency
        self.segments += other.segments
        self.bytes += other.bytes
        self.errors += other.errors
        self.stalls += other.stalls
        self.stall_seconds += other.stall_seconds
        self.skipped += other.skipped


async def fetch(session: aiohttp.ClientSession, url: str | URL) -> tuple[int, bytes, float]:
    """GET the whole body; returns status, body and seconds until the last byte."""
    started = time.perf_counter()
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)) as resp:
        body = await resp.read()
        return resp.status, body, time.perf_counter() - started


async def fetch_discard(session: aiohttp.ClientSession, url: URL) -> tuple[int, int, float]:
    """GET a segment without keeping it: status, byte count, seconds until the last byte."""
    started = time.perf_counter()
    size = 0
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)) as resp:
        async for chunk in resp.content.iter_chunked(READ_CHUNK):
            size += len(chunk)
        return resp.status, size, time.perf_counter() - started


class Viewer:
    """One player on one live playlist, until `deadline` (monotonic seconds)."""

    def __init__(self, session: aiohttp.ClientSession, playlist_url: str) -> None:
        self.session = session
        self.url = URL(playlist_url)
        self.stats = ViewerStats()
        self._play_start = 0.0
        self._buffered = 0.0  # media seconds downloaded since playback started

    async def run(self, deadline: float, delay: float = 0.0) -> ViewerStats:
        """Join after `delay` seconds (viewers arrive spread out), watch until deadline."""
        await asyncio.sleep(delay)
        next_sequence: int | None = None
        while time.monotonic() < deadline:
            playlist = await self._load_playlist()
            if playlist is None or not playlist.segments:
                await asyncio.sleep(0.5)
                continue
            if next_sequence is None:
                next_sequence = playlist.segments[max(0, len(playlist.segments)
                                                      - START_DISTANCE)].sequence
            elif next_sequence < playlist.media_sequence:
                self.stats.skipped += playlist.media_sequence - next_sequence
                next_sequence = playlist.media_sequence
            fresh = [s for s in playlist.segments if s.sequence >= next_sequence]
            for segment in fresh:
                if time.monotonic() >= deadline:
                    break
                await self._download(segment.uri, segment.duration)
                next_sequence = segment.sequence + 1
            target = playlist.target_duration or 2.0
            if playlist.ended:
                break
            await asyncio.sleep(min(target if fresh else target / 2,
                                    max(0.0, deadline - time.monotonic())))
        return self.stats

    async def _load_playlist(self) -> MediaPlaylist | None:
        try:
            status, body, seconds = await fetch(self.session, self.url)
        except (aiohttp.ClientError, TimeoutError, OSError):
            self.stats.errors += 1
            return None
        if status != 200:
            self.stats.errors += 1
            return None
        self.stats.playlist_latency.append(seconds)
        return parse_media_playlist(body.decode("utf-8", "replace"))

    async def _download(self, uri: str, duration: float) -> None:
        try:
            status, size, seconds = await fetch_discard(self.session, self.url.join(URL(uri)))
        except (aiohttp.ClientError, TimeoutError, OSError):
            self.stats.errors += 1
            return
        if status != 200:
            self.stats.errors += 1
            return
        stats = self.stats
        stats.segment_latency.append(seconds)
        stats.segments += 1
        stats.bytes += size
        now = time.monotonic()
        if not stats.started:
            stats.started = True
            self._play_start = now
        else:
            # The buffer ran dry at play_start + buffered + stalled time so far.
            dry_at = self._play_start + self._buffered + stats.stall_seconds
            if now > dry_at:
                stats.stalls += 1
                stats.stall_seconds += now - dry_at
        self._buffered += duration
