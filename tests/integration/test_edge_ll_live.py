"""LL-HLS through an edge node: two real nodes on loopback, real ffmpeg to the origin,
player-like followers of ll.m3u8 on the edge (see test_edge_live.py for the set-up)."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import aiohttp
import pytest

from benchmarks.llm3u8 import parse_ll_playlist
from tests.integration.test_edge_live import CHANNEL, edge_node, origin_requests, registry_of
from tests.live import http_url, publishing, rtmp_url, running_server, wait_for
from tests.ll_client import LlFollower

pytestmark = pytest.mark.integration

FOLLOWERS = 10
STEPS = 12  # about 3.6 s of parts


async def test_edge_followers_get_every_part_and_the_origin_sees_each_request_once(
        tmp_path: Path, clip: Path) -> None:
    async with running_server(tmp_path / "origin") as origin, \
            edge_node(tmp_path / "edge", registry_of(origin)) as edge, \
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        key = await origin.store.create_channel(CHANNEL)  # type: ignore[union-attr]
        on_edge = http_url(edge, f"/live/{CHANNEL}")
        on_origin = http_url(origin, f"/live/{CHANNEL}")
        async with publishing(rtmp_url(origin, key), clip, loops=2):
            await wait_for(lambda: _has_segment(session, f"{on_origin}/ll.m3u8"), 20,
                           what="an LL segment on the origin")
            followers = [LlFollower(session, on_edge) for _ in range(FOLLOWERS)]
            for follower in followers:
                await follower.start()
            playlists_before = origin_requests(origin, "ll_playlist")
            media_before = origin_requests(origin, "segment")
            for _ in range(STEPS):
                await asyncio.gather(*(follower.step() for follower in followers))
            playlists = origin_requests(origin, "ll_playlist") - playlists_before
            media = origin_requests(origin, "segment") - media_before
            # What the edge served is what the origin has.
            sample = followers[0]
            for uri, body in list(sample.parts.items())[-5:]:
                async with session.get(f"{on_origin}/{uri}") as response:
                    assert await response.read() == body
            async with session.get(f"{on_edge}/{sample.playlist.maps[-1]}") as response:
                init = await response.read()
    new_parts = {uri for follower in followers for uri in follower.parts}
    assert all(follower.parts.keys() == sample.parts.keys() for follower in followers)
    assert {status for follower in followers for status in follower.statuses} == {200}
    # One blocking reload per step reached the origin for all ten followers (a few more
    # when a step straddles a segment's end), and each part at most once.
    assert playlists <= STEPS + 3, playlists
    assert media <= len(new_parts), (media, len(new_parts))
    path = tmp_path / "edge.mp4"
    fetched = [p for p in sample.playlist.all_parts() if p.uri in sample.parts]
    start = next(i for i, p in enumerate(fetched) if p.independent)
    path.write_bytes(init + b"".join(sample.parts[p.uri] for p in fetched[start:]))
    probe = subprocess.run(["ffprobe", "-v", "warning", "-count_frames", "-show_entries",
                            "stream=codec_name,nb_read_frames", "-of", "csv=p=0", str(path)],
                           capture_output=True, text=True, check=True, timeout=60)
    assert probe.stderr == "" and probe.stdout.startswith("h264,")


async def _has_segment(session: aiohttp.ClientSession, url: str) -> bool:
    async with session.get(url) as response:
        return response.status == 200 and bool(parse_ll_playlist(await response.text()).segments)
