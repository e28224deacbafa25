"""LL-HLS on the real server: real ffmpeg publishes, a player-like client follows ll.m3u8
over HTTP (blocking reloads, hinted parts), and ffprobe decodes what it fetched."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import aiohttp
import pytest

from benchmarks.llm3u8 import parse_ll_playlist
from tests.live import http_url, publishing, rtmp_url, running_server, wait_for
from tests.ll_client import LlFollower
from tests.m3u8 import parse_playlist

pytestmark = pytest.mark.integration

FOLLOW_STEPS = 15  # about 4.5 s of parts


async def test_a_player_follows_parts_as_they_land_and_ffprobe_decodes_them(
        tmp_path: Path, clip: Path) -> None:
    async with running_server(tmp_path) as server, aiohttp.ClientSession() as session:
        key = await server.store.create_channel("cam1")  # type: ignore[union-attr]
        base = http_url(server, "/live/cam1")
        async with publishing(rtmp_url(server, key), clip):
            follower = LlFollower(session, base)
            await wait_for(lambda: _ready(session, base), timeout=15, what="ll.m3u8")
            playlist = await follower.start()
            first_part = len(playlist.all_parts())
            waits = []
            for _ in range(FOLLOW_STEPS):
                asked = time.monotonic()
                playlist = await follower.step()
                waits.append(time.monotonic() - asked)
            _, ts_text = await follower.get("index.m3u8")
            status, init = await follower.get(playlist.maps[-1])
            async with session.get(http_url(server, "/metrics")) as response:
                metrics = await response.text()
        assert status == 200
        # Every blocked request the follower made was woken by a part: /metrics counts them.
        woken = next(float(line.split()[-1]) for line in metrics.splitlines()
                     if line.startswith("mediaserver_hls_blocked_wakeup_seconds_count"))
        assert woken >= FOLLOW_STEPS
        assert "mediaserver_hls_blocked_requests 0.0" in metrics
    # Each step waited for a new part (about 0.3 s), none for the 3-target-duration limit.
    assert sorted(waits)[len(waits) // 2] > 0.1 and max(waits) < 6
    assert set(follower.statuses) == {200}
    parts = playlist.all_parts()
    assert len(parts) > first_part
    assert all(part.duration <= 0.333 for part in parts)
    # Every part since the first playlist was fetched, with no hole in the numbering.
    numbers = sorted(int(uri.split("-")[0][4:]) for uri in follower.parts)
    assert numbers == list(range(numbers[0], numbers[-1] + 1))
    # The LL and TS playlists list the same segments.
    ts = parse_playlist(ts_text.decode())
    ll_numbers = [msn for msn, _, _ in playlist.segments]
    assert ll_numbers == [seg.sequence for seg in ts.segments][-len(ll_numbers):]
    # ffprobe decodes the init section plus every part fetched, in order, from the first
    # independent one.
    fetched = [p for p in parts if p.uri in follower.parts]
    start = next(i for i, p in enumerate(fetched) if p.independent)
    path = tmp_path / "followed.mp4"
    path.write_bytes(init + b"".join(follower.parts[p.uri] for p in fetched[start:]))
    probe = subprocess.run(
        ["ffprobe", "-v", "warning", "-count_frames", "-show_entries",
         "stream=codec_name,width,height,nb_read_frames", "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, check=True, timeout=60)
    assert probe.stderr == ""
    video, audio = probe.stdout.split()
    codec, width, height, frames = video.split(",")
    assert (codec, width, height) == ("h264", "1280", "720")
    seconds = sum(p.duration for p in fetched[start:])
    assert abs(int(frames) - seconds * 30) <= 3
    assert audio.startswith("aac,")


async def _ready(session: aiohttp.ClientSession, base: str) -> bool:
    async with session.get(f"{base}/ll.m3u8") as response:
        return response.status == 200 and bool(parse_ll_playlist(await response.text()).segments)


async def test_ll_hls_off_leaves_index_m3u8_alone(tmp_path: Path, clip: Path) -> None:
    async with running_server(tmp_path, ll_hls="off") as server, \
            aiohttp.ClientSession() as session:
        key = await server.store.create_channel("cam1")  # type: ignore[union-attr]
        base = http_url(server, "/live/cam1")
        async with publishing(rtmp_url(server, key), clip):
            playlist = await wait_for(lambda: _ts_playlist(session, base), timeout=15,
                                      what="index.m3u8")
            async with session.get(f"{base}/ll.m3u8") as response:
                assert response.status == 404
                assert "index.m3u8" in await response.text()
    assert playlist and "#EXT-X-VERSION:3" in playlist and ".m4s" not in playlist


async def _ts_playlist(session: aiohttp.ClientSession, base: str) -> str | None:
    async with session.get(f"{base}/index.m3u8") as response:
        return await response.text() if response.status == 200 else None
