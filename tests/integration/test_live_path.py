"""The live path end to end: real ffmpeg publishes over RTMP, HLS is read back from memory."""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path

import aiohttp
import av
import pytest

from tests.live import (
    FFMPEG,
    http_url,
    publishing,
    rtmp_url,
    running_server,
    stop_process,
    wait_for,
)
from tests.m3u8 import Playlist, parse_playlist

pytestmark = pytest.mark.integration



async def fetch_playlist(session: aiohttp.ClientSession, url: str) -> Playlist | None:
    async with session.get(url) as response:
        if response.status != 200:
            return None
        assert response.content_type == "application/vnd.apple.mpegurl"
        return parse_playlist(await response.text())


async def fetch_segment(session: aiohttp.ClientSession, base: str, uri: str) -> bytes:
    async with session.get(f"{base}/{uri}") as response:
        assert response.status == 200, uri
        assert response.content_type == "video/mp2t"
        return await response.read()


async def test_ffmpeg_publish_produces_decodable_hls(tmp_path: Path, clip: Path) -> None:
    async with running_server(tmp_path) as server, aiohttp.ClientSession() as session:
        key = await server.store.create_channel("cam1")  # type: ignore[union-attr]
        base = http_url(server, "/live/cam1")
        started = time.monotonic()
        async with publishing(rtmp_url(server, key), clip):
            # Appears within 2 target durations of the first keyframe (plus ffmpeg start-up).
            first = await wait_for(lambda: fetch_playlist(session, base + "/index.m3u8"),
                                   timeout=4.0 + 2.0, what="the first playlist")
            first_seen = time.monotonic() - started
            assert first.segments and first.independent
            playlist = await wait_for(
                lambda: _with_segments(session, base + "/index.m3u8", 4), timeout=15,
                what="four segments")
        assert first_seen < 6.0
        assert playlist.target_duration == 2
        assert all(seg.program_date_time for seg in playlist.segments)
        previous_end: float | None = None
        for seg in playlist.segments[:4]:
            assert 1.9 <= seg.duration <= 2.1, seg
            data = await fetch_segment(session, base, seg.uri)
            with av.open(io.BytesIO(data)) as container:
                video = container.streams.video[0]
                audio = container.streams.audio[0]
                assert video.codec_context.name == "h264" and audio.codec_context.name == "aac"
                assert (video.codec_context.width, video.codec_context.height) == (1280, 720)
                frames = list(container.decode(video=0))
            assert len(frames) in range(59, 62)  # 2 s at 30 fps, decodable on its own
            start = float(frames[0].pts * frames[0].time_base)
            if previous_end is not None:
                assert abs(start - previous_end) < 0.05, "timestamps jump between segments"
            previous_end = start + seg.duration


async def _with_segments(session: aiohttp.ClientSession, url: str, count: int
                         ) -> Playlist | None:
    playlist = await fetch_playlist(session, url)
    return playlist if playlist is not None and len(playlist.segments) >= count else None


async def test_wrong_key_is_refused_fast_and_nothing_is_published(tmp_path: Path,
                                                                   clip: Path) -> None:
    async with running_server(tmp_path) as server, aiohttp.ClientSession() as session:
        await server.store.create_channel("cam1")  # type: ignore[union-attr]
        started = time.monotonic()
        async with publishing(rtmp_url(server, "not-a-valid-key"), clip) as proc:
            code = await asyncio.wait_for(proc.wait(), timeout=10)
            assert proc.stderr is not None
            stderr = (await proc.stderr.read()).decode(errors="replace")
        assert code != 0
        assert time.monotonic() - started < 5.0
        assert "BadName" in stderr or "unknown stream key" in stderr or "Error" in stderr
        assert server.hub.publishers() == [] and server.hub.channels == {}
        assert server.rtmp is not None and server.rtmp.publish_results.get("bad_key") == 1
        async with session.get(http_url(server, "/live/cam1/index.m3u8")) as response:
            assert response.status == 404


async def test_reconnect_within_grace_continues_playlist_with_discontinuity(
    tmp_path: Path, clip: Path
) -> None:
    async with running_server(tmp_path, grace_period=30) as server, \
            aiohttp.ClientSession() as session:
        key = await server.store.create_channel("cam1")  # type: ignore[union-attr]
        url = http_url(server, "/live/cam1/index.m3u8")
        # Leaving the block kills the encoder: it drops with no unpublish.
        async with publishing(rtmp_url(server, key), clip):
            await wait_for(lambda: _with_segments(session, url, 2), timeout=12, what="2 segments")
        await wait_for(lambda: not server.hub.is_live("cam1"), timeout=5, what="publisher gone")
        before = await fetch_playlist(session, url)
        assert before is not None and not before.ended
        async with publishing(rtmp_url(server, key), clip):
            after = await wait_for(
                lambda: _with_segments(session, url, len(before.segments) + 3), timeout=15,
                what="segments from the returning publisher")
        assert not after.ended
        sequences = [s.sequence for s in after.segments]
        assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
        assert after.media_sequence == before.media_sequence  # window not yet full: same start
        discontinuities = [s for s in after.segments if s.discontinuity]
        assert len(discontinuities) == 1
        assert discontinuities[0].sequence > before.segments[-1].sequence - 1
        # The segments after the discontinuity decode too.
        data = await fetch_segment(session, url.rsplit("/", 1)[0], discontinuities[0].uri)
        with av.open(io.BytesIO(data)) as container:
            assert next(container.decode(video=0)).width == 1280


async def test_grace_period_over_ends_playlist(tmp_path: Path, clip: Path) -> None:
    async with running_server(tmp_path, grace_period=1) as server, \
            aiohttp.ClientSession() as session:
        key = await server.store.create_channel("cam1")  # type: ignore[union-attr]
        url = http_url(server, "/live/cam1/index.m3u8")
        async with publishing(rtmp_url(server, key), clip):
            await wait_for(lambda: _with_segments(session, url, 1), timeout=10, what="a segment")
        ended = await wait_for(lambda: _ended(session, url), timeout=6, what="ENDLIST")
        assert ended.segments


async def _ended(session: aiohttp.ClientSession, url: str) -> Playlist | None:
    playlist = await fetch_playlist(session, url)
    return playlist if playlist is not None and playlist.ended else None


async def test_ffmpeg_plays_the_hls_for_ten_seconds(tmp_path: Path, clip: Path) -> None:
    async with running_server(tmp_path) as server, aiohttp.ClientSession() as session:
        key = await server.store.create_channel("cam1")  # type: ignore[union-attr]
        url = http_url(server, "/live/cam1/index.m3u8")
        async with publishing(rtmp_url(server, key), clip, loops=2):
            await wait_for(lambda: _with_segments(session, url, 1), timeout=10, what="a segment")
            player = await asyncio.create_subprocess_exec(
                FFMPEG, "-hide_banner", "-v", "error", "-xerror", "-i", url, "-t", "10",
                "-f", "null", "-", stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
            try:
                code = await asyncio.wait_for(player.wait(), timeout=40)
                assert player.stderr is not None
                errors = (await player.stderr.read()).decode(errors="replace")
            finally:
                await stop_process(player)
        assert code == 0, errors
        assert errors.strip() == "", errors


async def test_segments_concatenate_into_one_clean_stream(tmp_path: Path, clip: Path) -> None:
    """Read as one stream (as ffmpeg's HLS demuxer does), no packet is flagged corrupt."""
    async with running_server(tmp_path) as server, aiohttp.ClientSession() as session:
        key = await server.store.create_channel("cam1")  # type: ignore[union-attr]
        url = http_url(server, "/live/cam1/index.m3u8")
        async with publishing(rtmp_url(server, key), clip):
            playlist = await wait_for(lambda: _with_segments(session, url, 3), timeout=15,
                                      what="three segments")
        joined = tmp_path / "joined.ts"
        joined.write_bytes(b"".join([
            await fetch_segment(session, url.rsplit("/", 1)[0], seg.uri)
            for seg in playlist.segments[:3]
        ]))
    checker = await asyncio.create_subprocess_exec(
        FFMPEG, "-hide_banner", "-v", "warning", "-i", str(joined), "-f", "null", "-",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, stderr = await asyncio.wait_for(checker.communicate(), timeout=60)
    assert checker.returncode == 0
    assert b"corrupt" not in stderr.lower() and b"continuity" not in stderr.lower(), stderr
