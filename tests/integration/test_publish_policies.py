"""Who gets to publish: takeover or reject of a second publisher, key query strings,
the external auth webhook, and ENDLIST on shutdown."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.live import (
    http_url,
    publish,
    publishing,
    rtmp_url,
    running_server,
    stop_process,
    wait_for,
)

pytestmark = pytest.mark.integration



async def test_second_publisher_takes_over_and_key_query_is_ignored(tmp_path: Path,
                                                                    clip: Path) -> None:
    async with running_server(tmp_path) as server:
        key = await server.store.create_channel("cam1")  # type: ignore[union-attr]
        first = await publish(rtmp_url(server, key + "?token=abc&obs=1"), clip, loops=1)
        second = None
        try:
            await wait_for(lambda: server.hub.is_live("cam1"), timeout=10, what="first live")
            first_peer = server.hub.publishers()[0].peer
            second = await publish(rtmp_url(server, key), clip)
            # The old connection is closed by the server: its ffmpeg exits.
            await asyncio.wait_for(first.wait(), timeout=8)
            await wait_for(lambda: server.hub.is_live("cam1")
                           and server.hub.publishers()[0].peer != first_peer,
                           timeout=5, what="the new publisher")
            assert server.hub.publishes_taken_over == 1
        finally:
            await stop_process(first)
            if second is not None:
                await stop_process(second)


async def test_duplicate_publish_reject_keeps_the_first(tmp_path: Path, clip: Path) -> None:
    async with running_server(tmp_path, duplicate_publish="reject") as server:
        key = await server.store.create_channel("cam1")  # type: ignore[union-attr]
        async with publishing(rtmp_url(server, key), clip, loops=1) as first:
            await wait_for(lambda: server.hub.is_live("cam1"), timeout=10, what="first live")
            peer = server.hub.publishers()[0].peer
            second = await publish(rtmp_url(server, key), clip)
            try:
                code = await asyncio.wait_for(second.wait(), timeout=8)
            finally:
                await stop_process(second)
            assert code != 0
            assert first.returncode is None
            assert server.hub.publishers()[0].peer == peer
            assert server.rtmp is not None
            assert server.rtmp.publish_results.get("duplicate") == 1


async def test_auth_webhook_decides_who_publishes(tmp_path: Path, clip: Path) -> None:
    seen: list[dict[str, Any]] = []

    async def decide(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append(body)
        if body["stream_key"] == "partner-key":
            return web.json_response({"channel": "partner"})
        return web.json_response({"error": "nope"}, status=403)

    backend = web.Application()
    backend.router.add_post("/auth", decide)
    runner = web.AppRunner(backend)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        async with running_server(tmp_path,
                                  auth_webhook=f"http://127.0.0.1:{port}/auth") as server:
            async with publishing(rtmp_url(server, "someone-else"), clip) as denied:
                assert await asyncio.wait_for(denied.wait(), timeout=8) != 0
            async with publishing(rtmp_url(server, "partner-key?x=1"), clip):
                await wait_for(lambda: server.hub.is_live("partner"), timeout=10,
                               what="webhook-approved publish")
    finally:
        await runner.cleanup()
    assert {"app": "live", "stream_key": "someone-else", "client_ip": "127.0.0.1"} in seen
    assert any(s["stream_key"] == "partner-key" for s in seen)


async def test_shutdown_ends_every_playlist(tmp_path: Path, clip: Path) -> None:
    async with running_server(tmp_path) as server, aiohttp.ClientSession() as session:
        key = await server.store.create_channel("cam1")  # type: ignore[union-attr]
        url = http_url(server, "/live/cam1/index.m3u8")

        async def has_segment() -> bool:
            async with session.get(url) as response:
                return response.status == 200

        async with publishing(rtmp_url(server, key), clip, loops=1) as proc:
            await wait_for(has_segment, timeout=10, what="a segment")
            segmenter = server.hub.segmenter("cam1")
            assert segmenter is not None
            await server.stop()
            # The publisher's connection was closed by the server: its ffmpeg exits.
            await asyncio.wait_for(proc.wait(), timeout=8)
    assert segmenter.ended
    assert segmenter.render_playlist().rstrip().endswith("#EXT-X-ENDLIST")
