"""The failover record (ms:resume:{channel}) lives only as long as the playlist may go on.

Real redis-server, real ffmpeg, real nodes (a `mediaserver serve` process where the
stop must be a real SIGTERM). A playlist that ended with ENDLIST (a clean stop, an
unpublish, the grace period over) must never be carried on by a publish on another
node; one whose publisher dropped, within the grace period, must (the SIGKILL case is
test_cluster_live.test_failover_after_sigkill_carries_the_playlist_on).
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis

from mediaserver.app import MediaServer
from tests.integration.test_cluster_live import (
    node_url,
    nodes,
    playlist_at,
    process_and_node,
    rtmp_of,
)
from tests.live import http_url, publish, publishing, rtmp_url, stop_process, wait_for
from tests.m3u8 import Playlist
from tests.redis_server import RedisServer

pytestmark = pytest.mark.integration

RESUME_KEY = "ms:resume:cam1"
# How long a forget may take to reach Redis once the playlist ended: one write round.
FORGET_SECONDS = 2.0


async def recorded_by(raw: aioredis.Redis, node: str) -> bool:
    return (await raw.hgetall(RESUME_KEY)).get("node") == node


async def no_record(raw: aioredis.Redis) -> bool:
    return not await raw.exists(RESUME_KEY)


async def segments_at(session: aiohttp.ClientSession, url: str, count: int) -> Playlist | None:
    found = await playlist_at(session, url)
    return found if found is not None and len(found.segments) >= count else None


async def ended_at(session: aiohttp.ClientSession, url: str) -> Playlist | None:
    found = await playlist_at(session, url)
    return found if found is not None and found.ended else None


async def starts_anew(session: aiohttp.ClientSession, node: MediaServer, key: str,
                      clip: Path) -> None:
    """A publish on `node` gets a playlist of its own: sequence 0, no discontinuity."""
    url = http_url(node, "/live/cam1/index.m3u8")
    async with publishing(rtmp_url(node, key), clip, loops=2):
        fresh = await wait_for(lambda: segments_at(session, url, 1), timeout=20,
                               what="a segment on the other node")
    assert fresh.media_sequence == 0 and fresh.segments[0].sequence == 0
    assert not fresh.segments[0].discontinuity and fresh.discontinuity_sequence == 0
    assert node.cluster is not None and node.cluster.gate.resumed == 0


async def test_a_clean_stop_forgets_the_playlist_state_and_a_publish_elsewhere_starts_anew(
        tmp_path: Path, clip: Path, redis_server: RedisServer, raw: aioredis.Redis,
        session: aiohttp.ClientSession) -> None:
    async with process_and_node(tmp_path, redis_server.url) as (
            stopping, stopping_id, other, key):
        url = node_url(stopping.http_port, "/live/cam1/index.m3u8")
        async with publishing(rtmp_of(stopping, key), clip, loops=3):
            await wait_for(lambda: segments_at(session, url, 2), timeout=20,
                           what="two segments on the node about to stop")
            await wait_for(lambda: recorded_by(raw, stopping_id), timeout=5,
                           what="its playlist state in Redis")
            assert await stopping.stop() == 0  # SIGTERM: ENDLIST on every playlist, exit 0
        assert "server shutting down" in stopping.final_log_text
        assert await no_record(raw), await raw.hgetall(RESUME_KEY)
        # Within what would have been the grace period, the encoder publishes elsewhere.
        await starts_anew(session, other, key, clip)


async def test_a_dropped_publisher_keeps_the_state_for_the_grace_period_and_no_longer(
        tmp_path: Path, clip: Path, redis_server: RedisServer, raw: aioredis.Redis,
        session: aiohttp.ClientSession) -> None:
    grace = 3.0
    async with nodes(tmp_path, redis_server.url, 2, grace_period=grace) as (origin, other):
        key = await origin.store.create_channel("cam1")  # type: ignore[union-attr]
        url = http_url(origin, "/live/cam1/index.m3u8")
        encoder = await publish(rtmp_url(origin, key), clip, loops=3)
        try:
            await wait_for(lambda: segments_at(session, url, 2), timeout=20,
                           what="two segments on the origin")
            await wait_for(lambda: recorded_by(raw, origin._node), timeout=5,
                           what="the playlist state in Redis")
        finally:
            await stop_process(encoder)  # SIGKILL: the connection drops, no unpublish
        await wait_for(lambda: origin.hub.channels["cam1"].left_at is not None, timeout=5,
                       what="the origin to notice the publisher is gone")
        # Within the grace period the state stays: the encoder may come back anywhere.
        assert await recorded_by(raw, origin._node)
        assert not origin.hub.channels["cam1"].ended_at
        ended = await wait_for(lambda: ended_at(session, url), timeout=grace + 5,
                               what="ENDLIST once the grace period is over")
        assert ended.segments
        await wait_for(lambda: no_record(raw), timeout=FORGET_SECONDS,
                       what="the state to be forgotten with the ENDLIST")
        await starts_anew(session, other, key, clip)


async def test_an_unpublish_forgets_the_state_at_once(
        tmp_path: Path, clip: Path, redis_server: RedisServer, raw: aioredis.Redis,
        session: aiohttp.ClientSession) -> None:
    async with nodes(tmp_path, redis_server.url, 2) as (origin, other):
        key = await origin.store.create_channel("cam1")  # type: ignore[union-attr]
        url = http_url(origin, "/live/cam1/index.m3u8")
        # ffmpeg stops after 5 s and says so (FCUnpublish, deleteStream).
        async with publishing(rtmp_url(origin, key), clip, extra=["-t", "5"]) as encoder:
            await wait_for(lambda: recorded_by(raw, origin._node), timeout=20,
                           what="the playlist state in Redis")
            await wait_for(lambda: ended_at(session, url), timeout=15, what="ENDLIST")
            assert await encoder.wait() == 0
        await wait_for(lambda: no_record(raw), timeout=FORGET_SECONDS,
                       what="the state to be forgotten with the ENDLIST")
        await starts_anew(session, other, key, clip)
