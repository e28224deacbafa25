"""Three `mediaserver serve` processes on one real redis-server, real ffmpeg: control
sent to one node acts on the node that holds the publisher, and a block holds on all."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from benchmarks.servers import OurServer
from tests.live import metric_samples, publish_refused, publishing, server_processes, wait_for
from tests.redis_server import RedisServer

pytestmark = pytest.mark.integration


async def api(session: aiohttp.ClientSession, node: OurServer, method: str, path: str,
              **kwargs: Any) -> tuple[int, Any]:
    async with session.request(method, f"http://127.0.0.1:{node.http_port}/api/v1{path}",
                               headers={"Authorization": f"Bearer {node.token}"},
                               **kwargs) as response:
        return response.status, await response.json(content_type=None)


async def metrics(session: aiohttp.ClientSession, node: OurServer) -> dict[str, float]:
    """A node's samples by name and labels other than `node`, as `name{k=v,...}`."""
    async with session.get(f"http://127.0.0.1:{node.http_port}/metrics") as response:
        samples = metric_samples(await response.text())
    return {name + "{" + ",".join(f"{k}={v}" for k, v in labels if k != "node") + "}": value
            for (name, labels), value in samples.items()}


def rtmp_url(node: OurServer, key: str) -> str:
    return f"rtmp://127.0.0.1:{node.rtmp_port}/live/{key}"


async def test_a_kick_through_c_drops_as_publisher_and_the_block_holds_on_b(
        redis_server: RedisServer, clip: Path) -> None:
    async with server_processes(3, "--store", redis_server.url) as (a, b, c), \
            aiohttp.ClientSession() as session:
        status, created = await api(session, a, "POST", "/channels", json={"name": "cam1"})
        assert status == 201
        key = created["stream_key"]
        async with publishing(rtmp_url(a, key), clip, loops=5) as encoder:

            async def listed_on_c() -> bool:
                _, body = await api(session, c, "GET", "/streams")
                return [s["channel"] for s in body["streams"]] == ["cam1"]

            await wait_for(listed_on_c, timeout=15, what="cam1 live, as C sees it")
            status, body = await api(session, c, "DELETE", "/streams/cam1",
                                     params={"block_seconds": "60"})
            assert (status, body["kicked"]) == (200, True)
            await asyncio.wait_for(encoder.wait(), timeout=8)  # A dropped its publisher
        assert (await metrics(session, a))["mediaserver_live_streams{}"] == 0

        # The block holds on B (and on A): the same key is refused there now.
        assert await publish_refused(rtmp_url(b, key), clip)
        assert await publish_refused(rtmp_url(a, key), clip)
        assert (await metrics(session, b))[
            "mediaserver_rtmp_publish_attempts_total{result=blocked}"] == 1
        assert (await metrics(session, a))[
            "mediaserver_rtmp_publish_attempts_total{result=blocked}"] == 1
        _, channel = await api(session, b, "GET", "/channels/cam1")
        assert channel["live"] is False
