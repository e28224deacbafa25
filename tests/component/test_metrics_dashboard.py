"""The dashboard's page and its unauthenticated JSON, through aiohttp's test client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from hls.segmenter import Segmenter
from mediaserver.dashboard import STATIC_DIR, Dashboard
from mediaserver.hub import HubSettings, StreamHub
from mediaserver.metrics import HlsTraffic
from tests.component.test_metrics import feed
from tests.hls_media import av_clip
from tests.live import wait_for


@pytest.fixture
async def dashboard() -> AsyncIterator[tuple[TestClient, StreamHub]]:
    hub = StreamHub(HubSettings(grace_period=30))
    traffic = HlsTraffic()
    app = web.Application()
    Dashboard(hub, traffic.viewers, "/api/v1").add_routes(app)
    async with TestClient(TestServer(app)) as client:
        yield client, hub


async def test_page_is_served_with_a_strict_policy(dashboard) -> None:
    client, _ = dashboard
    response = await client.get("/")
    assert response.status == 200 and response.content_type == "text/html"
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    html = await response.text()
    assert "/static/vendor/hls.min.js" in html and "/static/dashboard.js" in html
    for name in ("dashboard.js", "dashboard.css"):
        assert (await client.get(f"/static/{name}")).status == 200
    assert (await client.get("/static/../dashboard.py")).status in (403, 404)


async def test_streams_json_shows_health_but_no_secrets(dashboard) -> None:
    client, hub = dashboard
    assert (await (await client.get("/dashboard/streams.json")).json())["streams"] == []
    publisher = hub.start_publish("cam1", "203.0.113.9:40000")
    feed(publisher, av_clip())
    await wait_for(lambda: hub.channels["cam1"].segmenter.playlist_ready, timeout=10,
                   what="a segment")

    response = await client.get("/dashboard/streams.json")
    assert response.headers["Cache-Control"] == "no-store"
    body = await response.json()
    assert body["api_prefix"] == "/api/v1"
    assert body["player_available"] == (STATIC_DIR / "vendor" / "hls.min.js").is_file()
    [card] = body["streams"]
    assert card["name"] == "cam1" and card["state"] == "live"
    assert (card["width"], card["height"], card["video_codec"]) == (1280, 720, "h264")
    assert card["keyframe_interval"] == 2.0 and card["fps"] > 0 and card["bitrate_bps"] > 0
    assert card["audio_codec"] == "aac" and card["sample_rate"] == 48000
    assert card["playback_url"] == "/live/cam1/index.m3u8"
    assert card["ll_playback_url"] == "/live/cam1/ll.m3u8"  # LL-HLS is on by default
    assert card["thumbnail_url"] == "/live/cam1/thumbnail.jpg"
    assert card["playlist_ready"] is True and card["viewers"] == 0
    assert card["warnings"] == []
    text = await response.text()
    assert "203.0.113.9" not in text and "key" not in text.replace("keyframe", "")

    hub.channels["cam1"].segmenter = Segmenter()  # a channel made with LL-HLS off
    [card] = (await (await client.get("/dashboard/streams.json")).json())["streams"]
    assert card["ll_playback_url"] is None

    hub.kick("cam1", "test")
    [card] = (await (await client.get("/dashboard/streams.json")).json())["streams"]
    assert card["state"] == "reconnecting" and "disconnected" in card["warnings"][0]
    hub.channels["cam1"].ended_at = 0.0  # the playlist ended: no card any more
    assert (await (await client.get("/dashboard/streams.json")).json())["streams"] == []
