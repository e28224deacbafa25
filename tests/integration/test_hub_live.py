"""The hub under real publishers: fast senders, deliberate stops, dropped connections."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest

from tests.live import (
    FFMPEG,
    http_url,
    publish,
    publishing,
    rtmp_url,
    running_server,
    stop_process,
    wait_for,
)
from tests.m3u8 import Playlist, parse_playlist

pytestmark = pytest.mark.integration

# The RTMP side tells a deliberate stop (FCUnpublish/deleteStream) from a dropped
# connection through on_end(..., unpublished=True); the hub ends the playlist at once
# on the first and keeps the grace period for the second.
@pytest.fixture(scope="module")
def small_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 s of 320x180 H.264 at ~300 kbit/s + 64 kbit/s AAC: many small frames per byte."""
    path = tmp_path_factory.mktemp("small") / "small.flv"
    subprocess.run(
        [FFMPEG, "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
         "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", "60",
         "-keyint_min", "60", "-sc_threshold", "0", "-b:v", "300k", "-maxrate", "300k",
         "-bufsize", "300k", "-c:a", "aac", "-b:a", "64k", "-ac", "2", "-t", "4",
         "-f", "flv", str(path)],
        check=True, timeout=60)
    return path


async def publish_fast(url: str, clip: Path, loops: int) -> asyncio.subprocess.Process:
    """ffmpeg sending the clip as fast as it can (no -re): far faster than real time."""
    return await asyncio.create_subprocess_exec(
        FFMPEG, "-hide_banner", "-loglevel", "error", "-stream_loop", str(loops),
        "-i", str(clip), "-c", "copy", "-f", "flv", url,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL)


async def fetch_playlist(session: aiohttp.ClientSession, url: str) -> Playlist | None:
    async with session.get(url) as response:
        if response.status != 200:
            return None
        return parse_playlist(await response.text())


async def _last_sequence(session: aiohttp.ClientSession, url: str) -> int:
    playlist = await fetch_playlist(session, url)
    return playlist.segments[-1].sequence if playlist and playlist.segments else -1


async def _ended(session: aiohttp.ClientSession, url: str) -> Playlist | None:
    playlist = await fetch_playlist(session, url)
    return playlist if playlist is not None and playlist.ended else None


async def test_fast_low_bitrate_publisher_keeps_its_channel_going(
    tmp_path: Path, small_clip: Path, clip: Path
) -> None:
    """Item 8: a sender far faster than real time keeps its channel going, never vanishes.

    Bounded work per read (rtmp.server) now keeps the HLS reader's queue short even
    here; when a reader does fall behind it skips to a keyframe (tests/component).
    """
    async with running_server(tmp_path, grace_period=5) as server, \
            aiohttp.ClientSession() as session:
        key = await server.store.create_channel("fast")  # type: ignore[union-attr]
        url = http_url(server, "/live/fast/index.m3u8")
        segments: list[int] = []
        server.hub.segment_listeners.append(lambda channel, info: segments.append(info.sequence))
        proc = await publish_fast(rtmp_url(server, key), small_clip, loops=-1)
        try:
            await wait_for(lambda: server.hub.is_live("fast"), timeout=10, what="live")
            live = server.hub.channels["fast"]
            # Many clip loops' worth: far more media than real time allows in this time.
            await wait_for(lambda: len(segments) >= 20, timeout=30,
                           what="segments from the fast publisher")
            assert server.hub.is_live("fast") and server.hub.channels["fast"] is live
        finally:
            await stop_process(proc)  # killed: a dropped connection, grace applies
        await wait_for(lambda: not server.hub.is_live("fast"), timeout=5, what="not live")
        before = await fetch_playlist(session, url)
        assert before is not None and not before.ended
        # A republish within grace continues the same playlist.
        async with publishing(rtmp_url(server, key), clip):
            await wait_for(lambda: _grew(session, url, before.segments[-1].sequence + 2),
                           timeout=15, what="segments from the returning publisher")
            assert server.hub.is_live("fast") and server.hub.channels["fast"] is live
        ended = await wait_for(lambda: _ended(session, url), timeout=12, what="ENDLIST")
        assert ended.segments[-1].sequence > before.segments[-1].sequence
        assert all(seg.duration <= 2.5 for seg in ended.segments), "a segment spans a skip"
        async with session.get(http_url(server, "/metrics")) as response:
            metrics = await response.text()
        assert f"mediaserver_hls_reader_skips_total {float(live.reader.times_skipped)}" in metrics


async def _grew(session: aiohttp.ClientSession, url: str, sequence: int) -> bool:
    return await _last_sequence(session, url) >= sequence


async def test_an_encoder_that_stops_ends_the_playlist_at_once(
    tmp_path: Path, small_clip: Path
) -> None:
    """Item 3: ffmpeg ending a clip sends FCUnpublish + deleteStream: ENDLIST now, no grace."""
    async with running_server(tmp_path, grace_period=30) as server, \
            aiohttp.ClientSession() as session:
        key = await server.store.create_channel("stops")  # type: ignore[union-attr]
        url = http_url(server, "/live/stops/index.m3u8")
        proc = await publish(rtmp_url(server, key), small_clip)  # 4 s in real time
        try:
            await wait_for(lambda: server.hub.is_live("stops"), timeout=10, what="live")
            assert await asyncio.wait_for(proc.wait(), timeout=20) == 0
            finished = time.monotonic()
        finally:
            await stop_process(proc)
        ended = await wait_for(lambda: _ended(session, url), timeout=5, what="ENDLIST")
        assert time.monotonic() - finished < 5.0  # far inside the 30 s grace period
        assert sum(seg.duration for seg in ended.segments) == pytest.approx(4.0, abs=0.1)
        assert not server.hub.is_live("stops")
        # A new publish later starts a new playlist.
        async with publishing(rtmp_url(server, key), small_clip):
            fresh = await wait_for(lambda: _fresh(session, url), timeout=10,
                                   what="a new playlist")
        assert fresh.media_sequence == 0
        assert fresh.segments[0].uri != ended.segments[0].uri


async def test_a_killed_encoder_keeps_the_grace_period(tmp_path: Path, small_clip: Path
                                                       ) -> None:
    """Item 3, the other half: a dropped connection is not an unpublish."""
    async with running_server(tmp_path, grace_period=30) as server, \
            aiohttp.ClientSession() as session:
        key = await server.store.create_channel("drops")  # type: ignore[union-attr]
        url = http_url(server, "/live/drops/index.m3u8")
        async with publishing(rtmp_url(server, key), small_clip, loops=-1):
            await wait_for(lambda: _grew(session, url, 0), timeout=10, what="a segment")
        await wait_for(lambda: not server.hub.is_live("drops"), timeout=5, what="not live")
        playlist = await fetch_playlist(session, url)
        assert playlist is not None and not playlist.ended
        channel = server.hub.channels["drops"]
        assert channel.left_at is not None and channel.ended_at is None


async def _fresh(session: aiohttp.ClientSession, url: str) -> Playlist | None:
    playlist = await fetch_playlist(session, url)
    return playlist if playlist is not None and not playlist.ended and playlist.segments \
        else None
