"""The control API against the live system: real ffmpeg publishers, a real redis-server."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest
from aiohttp import web

from control_api.webhooks import SIGNATURE_HEADER, verify_signature
from tests.live import (
    api_call,
    http_url,
    publish,
    publish_refused,
    publishing,
    rtmp_url,
    running_server,
    stop_process,
    wait_for,
)
from tests.redis_server import RedisServer

pytestmark = pytest.mark.integration

TOKEN = "integration-token"


def sent_bitrate(clip: Path) -> float:
    """What the encoder sends: every audio/video payload byte over the clip's duration."""
    with av.open(str(clip)) as container:
        size = sum(packet.size for packet in container.demux() if packet.size)
        duration = container.duration / 1_000_000
    return size * 8 / duration


async def api(session: aiohttp.ClientSession, server: Any, method: str, path: str,
              **kwargs: Any) -> tuple[int, Any]:
    return await api_call(session, server, method, path, TOKEN, **kwargs)


async def test_streams_report_what_ingest_measured_and_kick_blocks(tmp_path: Path,
                                                                    clip: Path) -> None:
    async with running_server(tmp_path, api_token=TOKEN) as server, \
            aiohttp.ClientSession() as session:
        status, created = await api(session, server, "POST", "/channels", json={"name": "cam1"})
        assert status == 201
        key = created["stream_key"]
        async with publishing(rtmp_url(server, key), clip, loops=1) as proc:
            await wait_for(lambda: server.hub.is_live("cam1"), timeout=10, what="live")
            expected = sent_bitrate(clip)

            async def steady_stream() -> dict[str, Any] | None:
                # The rate window needs a few seconds of steady data before it settles.
                status, body = await api(session, server, "GET", "/streams")
                assert status == 200 and len(body["streams"]) == 1
                stream = body["streams"][0]
                settled = abs(stream["bitrate_bps"] - expected) / expected < 0.20
                return stream if settled and stream["keyframe_interval"] else None

            stream = await wait_for(steady_stream, timeout=15, interval=0.5,
                                    what="a measured bitrate within 20 % of what is sent")
            assert stream["channel"] == "cam1"
            assert stream["publisher"].startswith("127.0.0.1:")
            assert (stream["video_codec"], stream["width"], stream["height"]) == ("h264", 1280,
                                                                                  720)
            assert abs(stream["fps"] - 30) < 3
            assert abs(stream["keyframe_interval"] - 2.0) < 0.1
            assert (stream["audio_codec"], stream["sample_rate"], stream["audio_channels"]) == (
                "aac", 48000, 2)
            assert stream["warnings"] == []
            status, channel = await api(session, server, "GET", "/channels/cam1")
            assert status == 200 and channel["live"] is True and "stream_key" not in channel

            status, kicked = await api(session, server, "DELETE", "/streams/cam1",
                                       params={"block_seconds": "5"})
            assert status == 200 and kicked["kicked"] is True
            blocked_at = time.monotonic()
            code = await asyncio.wait_for(proc.wait(), timeout=5)
            assert code is not None
        assert not server.hub.is_live("cam1")
        # The encoder's reconnect is refused while the block lasts...
        assert await publish_refused(rtmp_url(server, key), clip)
        assert server.rtmp is not None and server.rtmp.publish_results.get("blocked") == 1
        # ...and accepted once it ends.
        await wait_for(lambda: time.monotonic() - blocked_at > 5.2, timeout=8, what="block end")
        async with publishing(rtmp_url(server, key), clip) as proc:
            await wait_for(lambda: server.hub.is_live("cam1"), timeout=8, what="republish")


async def test_rotate_and_delete_kick_the_live_publisher(tmp_path: Path, clip: Path) -> None:
    async with running_server(tmp_path, api_token=TOKEN) as server, \
            aiohttp.ClientSession() as session:
        _, created = await api(session, server, "POST", "/channels", json={"name": "cam2"})
        old_key = created["stream_key"]
        async with publishing(rtmp_url(server, old_key), clip) as proc:
            await wait_for(lambda: server.hub.is_live("cam2"), timeout=10, what="live")
            status, rotated = await api(session, server, "POST", "/channels/cam2/key")
            assert status == 200 and rotated["stream_key"] != old_key
            await asyncio.wait_for(proc.wait(), timeout=5)
        assert not server.hub.is_live("cam2")
        assert await publish_refused(rtmp_url(server, old_key), clip)  # old key dead at once
        status, valid = await api(session, server, "POST", "/keys/validate",
                                  json={"stream_key": rotated["stream_key"]})
        assert status == 200 and valid == {"valid": True, "channel": "cam2"}
        async with publishing(rtmp_url(server, rotated["stream_key"]), clip) as proc:
            await wait_for(lambda: server.hub.is_live("cam2"), timeout=10, what="live again")
            status, _ = await api(session, server, "DELETE", "/channels/cam2")
            assert status == 204
            await asyncio.wait_for(proc.wait(), timeout=5)
        assert not server.hub.is_live("cam2")


async def test_redis_outage_fails_closed_and_recovers(tmp_path: Path, clip: Path) -> None:
    redis = RedisServer()
    redis.start()
    try:
        async with running_server(tmp_path, api_token=TOKEN, store=redis.url) as server, \
                aiohttp.ClientSession() as session:
            _, first = await api(session, server, "POST", "/channels", json={"name": "one"})
            _, second = await api(session, server, "POST", "/channels", json={"name": "two"})
            async with publishing(rtmp_url(server, first["stream_key"]), clip, loops=2):
                await wait_for(lambda: server.hub.is_live("one"), timeout=10, what="live")
                segmenter = server.hub.segmenter("one")
                assert segmenter is not None
                redis.stop()
                # API: 503 with the JSON error shape.
                status, body = await api(session, server, "GET", "/channels")
                assert status == 503 and body["error"]["code"] == "store_unavailable"
                # New publishes are refused with a clear reason (fail closed).
                assert await publish_refused(rtmp_url(server, second["stream_key"]), clip)
                assert server.rtmp is not None
                assert server.rtmp.publish_results.get("unavailable") == 1
                # The live stream carries on: new segments keep coming and are served.
                produced = segmenter.segments_produced
                await wait_for(lambda: segmenter.segments_produced >= produced + 2, timeout=10,
                               what="segments during the outage")
                async with session.get(http_url(server, "/live/one/index.m3u8")) as response:
                    assert response.status == 200
                assert server.hub.is_live("one")
                # Redis comes back: service resumes without restarting the server.
                redis.start()
                await wait_for(lambda: _status_ok(session, server), timeout=10, what="API back")
                # The test's redis-server keeps nothing on disk, so the restarted one is
                # empty: create a channel through the recovered API and publish to it.
                status, third = await api(session, server, "POST", "/channels",
                                          json={"name": "three"})
                assert status == 201
                proc2 = await publish(rtmp_url(server, third["stream_key"]), clip)
                try:
                    await wait_for(lambda: server.hub.is_live("three"), timeout=10,
                                   what="publish after recovery")
                finally:
                    await stop_process(proc2)
    finally:
        redis.close()


async def _status_ok(session: aiohttp.ClientSession, server: Any) -> tuple[int, Any] | None:
    status, body = await api(session, server, "GET", "/channels")
    return (status, body) if status == 200 else None


async def test_webhooks_receive_signed_started_and_ended(tmp_path: Path, clip: Path) -> None:
    received: list[tuple[dict[str, Any], bool]] = []
    secret = "hook-secret"

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        received.append((json.loads(body),
                         verify_signature(secret, body, request.headers.get(SIGNATURE_HEADER))))
        return web.Response(status=204)

    receiver = web.Application()
    receiver.router.add_post("/hook", receive)
    runner = web.AppRunner(receiver)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with running_server(tmp_path, api_token=TOKEN,
                                  webhook=f"http://127.0.0.1:{port}/hook",
                                  webhook_secret=secret) as server:
            key = await server.store.create_channel("hooked")  # type: ignore[union-attr]
            async with publishing(rtmp_url(server, key), clip):
                await wait_for(lambda: server.hub.is_live("hooked"), timeout=10, what="live")
            await wait_for(lambda: len(received) >= 2, timeout=10, what="two webhook events")
    finally:
        await runner.cleanup()
    events = [event for event, _ in received]
    assert [e["event"] for e in events] == ["stream.started", "stream.ended"]
    assert all(e["channel"] == "hooked" for e in events)
    assert all(ok for _, ok in received), "signatures must verify"
    assert events[1]["reason"]
