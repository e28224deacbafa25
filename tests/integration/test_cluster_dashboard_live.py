"""A node's dashboard in a cluster: real redis-server, two nodes, real ffmpeg on one of them.

The other node's dashboard lists the stream with the node that holds it, serves its
picture (fetched from the origin through the edge) and plays it through the edge.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest

from mediaserver.app import MediaServer
from tests.integration.test_cluster_live import nodes
from tests.live import http_url, metric_samples, publishing, rtmp_url, wait_for
from tests.m3u8 import parse_playlist
from tests.redis_server import RedisServer

pytestmark = pytest.mark.integration


async def card_on(session: aiohttp.ClientSession, node: MediaServer, channel: str
                  ) -> dict[str, Any] | None:
    async with session.get(http_url(node, "/dashboard/streams.json")) as response:
        assert response.status == 200
        cards = (await response.json())["streams"]
    return next((card for card in cards if card["name"] == channel), None)


async def picture_on(session: aiohttp.ClientSession, node: MediaServer, url: str
                     ) -> bytes | None:
    async with session.get(http_url(node, url)) as response:
        if response.status != 200:
            return None
        assert response.headers["Content-Type"] == "image/jpeg"
        return await response.read()


async def test_a_nodes_dashboard_lists_pictures_and_plays_a_stream_held_by_another(
        tmp_path: Path, clip: Path, redis_server: RedisServer,
        session: aiohttp.ClientSession) -> None:
    async with nodes(tmp_path, redis_server.url, 2) as (a, b):
        key = await a.store.create_channel("cam1")  # type: ignore[union-attr]
        async with publishing(rtmp_url(a, key), clip, loops=2):
            card = await wait_for(lambda: card_on(session, b, "cam1"), timeout=15,
                                  what="cam1 on B's dashboard")
            assert (card["node"], card["here"], card["state"]) == (a.node_id, False, "live")
            own = await card_on(session, a, "cam1")
            assert own is not None and (own["node"], own["here"]) == (a.node_id, True)
            await wait_for(lambda: _measured(session, b), timeout=10,
                           what="the stream's picture size in B's listing")

            jpeg = await wait_for(lambda: picture_on(session, b, card["thumbnail_url"]),
                                  timeout=15, what="A's picture through B")
            with av.open(io.BytesIO(jpeg)) as container:
                frame = next(container.decode(video=0))
                assert (frame.width, frame.height) == (1280, 720)

            await wait_for(lambda: _playlist_on(session, b, card["playback_url"]), timeout=15,
                           what="the card's playlist, played through B")
        async with session.get(http_url(b, "/metrics")) as response:
            samples = metric_samples(await response.text())
        fetched = {dict(labels)["result"]: value for (name, labels), value in samples.items()
                   if name == "mediaserver_edge_origin_fetches_total"
                   and dict(labels)["kind"] == "snapshot"}
        assert fetched.get("ok", 0) >= 1


async def _measured(session: aiohttp.ClientSession, node: MediaServer) -> bool:
    card = await card_on(session, node, "cam1")
    return card is not None and (card["width"], card["height"]) == (1280, 720)


async def _playlist_on(session: aiohttp.ClientSession, node: MediaServer, url: str) -> bool:
    async with session.get(http_url(node, url)) as response:
        return response.status == 200 and bool(parse_playlist(await response.text()).segments)
