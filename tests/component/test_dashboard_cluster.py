"""The dashboard of a node in a cluster: every node's streams, each with the node holding it,
and the pictures of channels held elsewhere fetched through the edge (Kind.SNAPSHOT)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from control_api.live import StreamStats
from hls.remote import EDGE_HEADER, Failed, Found, Kind, Missing, Redirect, RemoteRequest
from mediaserver.cluster.edge import ProxyEdge
from mediaserver.cluster.registry import RemoteStream
from mediaserver.dashboard import ClusterCards, Dashboard
from mediaserver.hub import HubSettings, StreamHub
from mediaserver.metrics import HlsTraffic
from mediaserver.thumbnails import Thumbnailer
from tests.component.test_metrics import feed
from tests.hls_media import av_clip
from tests.live import wait_for


def stats(channel: str) -> StreamStats:
    return StreamStats(channel, "198.51.100.7:5000", 1.7e9, "h264", 1920, 1080, 30.0, 4e6, 2.0,
                       "aac", 48000, 2, ("keyframe interval 4.0 s",))


class Elsewhere:
    """What the registry would say the other nodes hold."""

    def __init__(self) -> None:
        self.streams: list[RemoteStream] = []

    async def __call__(self) -> list[RemoteStream]:
        return list(self.streams)


async def cards_of(client: TestClient) -> dict[str, dict[str, object]]:
    response = await client.get("/dashboard/streams.json")
    assert response.status == 200
    return {card["name"]: card for card in (await response.json())["streams"]}


@contextlib.asynccontextmanager
async def dashboard(hub: StreamHub, cluster: ClusterCards) -> AsyncIterator[TestClient]:
    app = web.Application()
    Dashboard(hub, HlsTraffic().viewers, "/api/v1", cluster=cluster).add_routes(app)
    async with TestClient(TestServer(app)) as client:
        yield client


@pytest.fixture
async def node() -> AsyncIterator[tuple[TestClient, StreamHub, Elsewhere]]:
    """Node A's dashboard, its hub, and what the registry says the others hold."""
    hub = StreamHub(HubSettings(grace_period=30))
    elsewhere = Elsewhere()
    async with dashboard(hub, ClusterCards("node-a", elsewhere, proxied=True)) as client:
        yield client, hub, elsewhere


async def test_every_nodes_streams_are_listed_with_the_node_that_holds_each(node) -> None:
    client, hub, elsewhere = node
    publisher = hub.start_publish("cam1", "203.0.113.9:40000")
    feed(publisher, av_clip())
    await wait_for(lambda: hub.channels["cam1"].segmenter.playlist_ready, timeout=10,
                   what="a segment")
    elsewhere.streams = [RemoteStream("node-b", "http://10.0.0.2:8080", stats("cam2"))]
    cards = await cards_of(client)
    assert list(cards) == ["cam1", "cam2"]
    assert (cards["cam1"]["node"], cards["cam1"]["here"]) == ("node-a", True)
    assert cards["cam1"]["playlist_ready"] is True
    remote = cards["cam2"]
    assert (remote["node"], remote["here"], remote["state"]) == ("node-b", False, "live")
    assert (remote["width"], remote["height"], remote["bitrate_bps"]) == (1920, 1080, 4e6)
    assert remote["warnings"] == ["keyframe interval 4.0 s"]
    # Through this node's edge: played and pictured like its own.
    assert remote["playback_url"] == "/live/cam2/index.m3u8"
    assert remote["ll_playback_url"] == "/live/cam2/ll.m3u8"
    assert remote["thumbnail_url"] == "/live/cam2/thumbnail.jpg"
    assert remote["node_url"] is None and remote["playlist_ready"] is None
    text = await (await client.get("/dashboard/streams.json")).text()
    assert "198.51.100.7" not in text and "10.0.0.2" not in text  # no addresses


async def test_with_edge_redirect_a_card_links_to_the_node_that_holds_it() -> None:
    elsewhere = Elsewhere()
    elsewhere.streams = [RemoteStream("node-b", "http://media-b.example:8080", stats("cam2"))]
    async with dashboard(StreamHub(), ClusterCards("node-a", elsewhere, proxied=False)) as client:
        [remote] = (await cards_of(client)).values()
    # The page may not follow a redirect to another origin: it links there instead.
    assert remote["node_url"] == "http://media-b.example:8080/"
    assert remote["playback_url"] is None and remote["thumbnail_url"] is None
    assert remote["ll_playback_url"] is None


async def test_a_stream_live_elsewhere_replaces_a_copy_here_that_waits_for_its_publisher(
        node) -> None:
    client, hub, elsewhere = node
    feed(hub.start_publish("cam1", "203.0.113.9:40000"), av_clip())
    hub.start_publish("cam2", "203.0.113.9:40001")
    hub.kick("cam2", "connection dropped")  # cam2 waits here for its publisher...
    elsewhere.streams = [RemoteStream("node-b", "http://10.0.0.2:8080", stats("cam1")),
                         RemoteStream("node-b", "http://10.0.0.2:8080", stats("cam2"))]
    cards = await cards_of(client)
    assert (cards["cam1"]["node"], cards["cam1"]["state"]) == ("node-a", "live")  # ours wins
    assert (cards["cam2"]["node"], cards["cam2"]["state"]) == ("node-b", "live")  # ...it is there


# ---- pictures of channels held elsewhere -------------------------------------------------


class Source:
    """A RemoteSource answering what the test says, and noting what it was asked."""

    def __init__(self) -> None:
        self.answer: object = Found(b"\xff\xd8remote picture\xff\xd9")
        self.asked: list[RemoteRequest] = []

    async def fetch(self, request: RemoteRequest) -> object:
        self.asked.append(request)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.fixture
async def pictures() -> AsyncIterator[tuple[TestClient, Source]]:
    source = Source()
    thumbnails = Thumbnailer(exists=lambda name: False)  # this node holds nothing
    app = web.Application()
    thumbnails.add_routes(app, remote=source)  # type: ignore[arg-type]
    async with TestClient(TestServer(app)) as client:
        yield client, source
    thumbnails.close()


async def test_a_remote_channels_picture_is_asked_of_the_edge_and_served_as_ours(
        pictures: tuple[TestClient, Source]) -> None:
    client, source = pictures
    response = await client.get("/live/cam2/thumbnail.jpg?t=123")
    assert response.status == 200 and response.headers["Content-Type"] == "image/jpeg"
    assert await response.read() == b"\xff\xd8remote picture\xff\xd9"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert source.asked == [RemoteRequest(Kind.SNAPSHOT, "cam2", "/live/cam2/thumbnail.jpg", "")]

    for answer, status in ((Missing("unknown channel"), 404),
                           (Failed(504, "origin timed out"), 504),
                           (Redirect("http://10.0.0.2:8080/live/cam2/thumbnail.jpg"), 302),
                           (RuntimeError("bug"), 502)):
        source.answer = answer
        response = await client.get("/live/cam2/thumbnail.jpg", allow_redirects=False)
        assert response.status == status, answer
        assert response.headers["Cache-Control"] == "no-store"
    # Another node's edge asks only for what this node holds: never passed on.
    asked = len(source.asked)
    response = await client.get("/live/cam2/thumbnail.jpg", headers={EDGE_HEADER: "node-c"})
    assert response.status == 404 and len(source.asked) == asked
    assert (await client.get("/live/BAD!/thumbnail.jpg")).status == 404
    assert len(source.asked) == asked


async def test_the_edge_shares_a_picture_for_a_few_seconds_then_fetches_the_new_one() -> None:
    served = itertools.count()

    async def thumbnail(request: web.Request) -> web.Response:
        await asyncio.sleep(0.05)  # the origin renders: everyone asking meanwhile waits
        return web.Response(body=f"picture {next(served)}".encode(),
                            content_type="image/jpeg")

    origin = web.Application()
    origin.router.add_get("/live/{channel}/thumbnail.jpg", thumbnail)
    async with TestClient(TestServer(origin, host="127.0.0.1")) as origin_client:
        url = str(origin_client.make_url("")).rstrip("/")

        async def locate(channel: str) -> str | None:
            return url if channel == "cam2" else None

        edge = ProxyEdge(locate, "edge-under-test", grace_period=30.0)
        request = RemoteRequest(Kind.SNAPSHOT, "cam2", "/live/cam2/thumbnail.jpg", "")
        try:
            answers = await asyncio.gather(*(edge.fetch(request) for _ in range(10)))
            assert {a.body for a in answers if isinstance(a, Found)} == {b"picture 0"}
            assert (await edge.fetch(request)).body == b"picture 0"  # type: ignore[union-attr]
            assert edge.stats.fetches[("snapshot", "ok")] == 1
            assert edge.stats.hits["snapshot"] == 10
            edge.snapshots.max_age = 0.0  # past its age: the origin's newer picture
            assert (await edge.fetch(request)).body == b"picture 1"  # type: ignore[union-attr]
            # Segments stay cached apart: a picture never lands in the media cache.
            assert len(edge.media.cache) == 0
        finally:
            await edge.close()
