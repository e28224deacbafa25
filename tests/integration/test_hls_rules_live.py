"""RFC 8216 rules with a real encoder: ffmpeg publishes an irregular-GOP clip over RTMP and
the playlists are read back as a player reads them (TARGETDURATION fixed, segments kept
after they leave the playlist, in files, conditional and gzipped playlist requests)."""

from __future__ import annotations

import gzip
import io
import os
import subprocess
from pathlib import Path

import aiohttp
import av
import pytest

from hls.playlist import rounded_duration
from tests.live import (
    FFMPEG,
    http_url,
    metric_samples,
    publishing,
    rtmp_url,
    running_server,
    wait_for,
)
from tests.m3u8 import Playlist, parse_playlist

pytestmark = pytest.mark.integration

# Keyframes at 0, 2, 4 s, then a 5 s GOP, then 2 s again: what an encoder with an
# irregular keyframe interval (scene cuts off, a stall, a hand-set interval) sends.
KEYFRAMES = "0,2,4,9,11"
CLIP_SECONDS = 13


@pytest.fixture(scope="module")
def irregular_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("media") / "irregular.flv"
    cmd = [FFMPEG, "-hide_banner", "-loglevel", "error", "-y",
           "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30",
           "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
           "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", "1000",
           "-sc_threshold", "0", "-force_key_frames", KEYFRAMES, "-bf", "2", "-b:v", "800k",
           "-c:a", "aac", "-b:a", "96k", "-ac", "2", "-t", str(CLIP_SECONDS), "-f", "flv",
           str(path)]
    subprocess.run(cmd, check=True, timeout=120)
    return path


@pytest.mark.parametrize("expired_segments", ["memory", "disk"])
async def test_irregular_gop_publish_keeps_the_rules(tmp_path: Path, irregular_clip: Path,
                                                     expired_segments: str) -> None:
    async with running_server(tmp_path, playlist_size=3,
                              expired_segments=expired_segments) as server, \
            aiohttp.ClientSession(auto_decompress=False) as session:
        key = await server.store.create_channel("cam1")  # type: ignore[union-attr]
        url = http_url(server, "/live/cam1/index.m3u8")
        texts: list[str] = []

        async with publishing(rtmp_url(server, key), irregular_clip):

            async def poll() -> Playlist | None:
                headers = {"Accept-Encoding": "identity"}
                async with session.get(url, headers=headers) as response:
                    if response.status != 200:
                        return None
                    text = await response.text()
                if not texts or texts[-1] != text:
                    texts.append(text)
                playlist = parse_playlist(text)
                # Done once seg0..seg2 left the window (the forced cuts happened by
                # then), or the encoder's stop ended the playlist (its last segment is
                # published with ENDLIST, a moment after ffmpeg exits).
                done = playlist.media_sequence >= 3 or playlist.ended
                return playlist if done else None

            last = await wait_for(poll, timeout=CLIP_SECONDS + 15, interval=0.1,
                                  what="three segments to leave the playlist")
            check_target_duration(texts)
            assert last.media_sequence >= 3
            first_uri = parse_playlist(texts[0]).segments[0].uri
            # seg0 left the playlist seconds ago; a slow player may still ask for it
            # (RFC 8216 6.2.2: its duration plus the longest playlist it was in, ~11 s).
            # With --expired-segments disk it waits in a file under the data directory;
            # either way it comes back as the MPEG-TS it was.
            spill = server.hub.spill
            if expired_segments == "disk":
                assert spill is not None and spill.written >= 1 and spill.file.stat().st_size
            else:
                assert spill is None and not (tmp_path / "expired").exists()
            async with session.get(http_url(server, f"/live/cam1/{first_uri}")) as response:
                assert response.status == 200, "a segment vanished right after leaving"
                body = await response.read()
            with av.open(io.BytesIO(body), format="mpegts") as container:
                kinds = {packet.stream.type for packet in container.demux() if packet.size}
            assert kinds == {"video", "audio"}
            async with session.get(http_url(server, "/metrics")) as response:
                samples = metric_samples(await response.text())
            written = samples.get(("mediaserver_hls_expired_segments_written_total", ()))
            failed = samples.get(("mediaserver_hls_expired_segment_write_failures_total", ()))
            in_file = samples.get(("mediaserver_hls_expired_segments_in_file", ()))
            in_use, free = (samples.get(("mediaserver_hls_expired_segment_file_bytes",
                                         (("state", state),))) for state in ("in_use", "free"))
            if spill is not None:
                assert (written, failed) == (spill.written, 0)
                assert (in_file, in_use, free) == (
                    spill.in_use, spill.bytes_in_use, spill.bytes_free) and spill.in_use >= 1
                assert spill.file.stat().st_size <= spill.bytes_in_use + spill.bytes_free
            else:
                assert (written, failed, in_file, in_use, free) == (None,) * 5

            # Conditional and gzipped playlist requests against the real server.
            async with session.get(url, headers={"Accept-Encoding": "gzip"}) as response:
                assert response.headers["Content-Encoding"] == "gzip"
                etag = response.headers["ETag"]
                assert gzip.decompress(await response.read()).startswith(b"#EXTM3U")
            headers = {"Accept-Encoding": "gzip", "If-None-Match": etag}
            async with session.get(url, headers=headers) as response:
                assert response.status in (200, 304)  # 200 only if a segment closed meanwhile
                if response.status == 304:
                    assert await response.read() == b""


    assert not (tmp_path / "expired" / str(os.getpid())).exists()  # removed at shutdown


def check_target_duration(texts: list[str]) -> None:
    """One TARGETDURATION in every playlist seen, every rounded EXTINF within it."""
    playlists = [parse_playlist(text) for text in texts]
    assert {p.target_duration for p in playlists} == {2}, "TARGETDURATION changed mid-stream"
    for playlist in playlists:
        assert max(rounded_duration(s.duration) for s in playlist.segments) <= 2
    seen = {s.sequence: s.duration for p in playlists for s in p.segments}
    assert max(seen.values()) > 2.3  # the 5 s GOP was cut without a keyframe, near 2.5 s
    # Independence is not promised while those cuts are listed.
    assert any(not p.independent for p in playlists)
    assert playlists[0].independent
