"""The edge against an origin we can steer: a real HLS app (real segmenter) behind a switchboard.

The switchboard counts what reaches the origin and can hold, slow or fail it: the
only way to force the coalescing, timeout and error cases deterministically.
The edge serves through the same hls.http routes a node uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDict
from yarl import URL

from hls.http import add_hls_routes
from hls.remote import EDGE_HEADER, Kind, RemoteRequest
from hls.segmenter import Segmenter
from mediaserver.cluster import edge_client, edge_locate, edge_media, edge_playlists
from mediaserver.cluster.edge import ProxyEdge, RedirectEdge
from tests.hls_media import av_clip, playlist_entries
from tests.live import wait_for

VIEWERS = 50
# Seen.status of a request whose client hung up before its answer (nginx's name for it).
CLIENT_GONE = 499


def live_segmenter() -> Segmenter:
    media = av_clip()
    segmenter = Segmenter(window=3)
    segmenter.configure(media.video, media.audio)
    for packet in media.packets:
        segmenter.push(packet)
    return segmenter


@pytest.fixture(scope="module")
def cam() -> Segmenter:
    return live_segmenter()


@dataclass
class Seen:
    path: str
    query: str
    headers: CIMultiDict[str]
    status: int = 0


@dataclass
class Origin:
    """What reaches the origin, and what it is told to do with it."""

    channels: dict[str, Segmenter]
    seen: list[Seen] = field(default_factory=list)
    fail: int | None = None
    delay: float = 0.0
    gate: asyncio.Event | None = None

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._switchboard])
        add_hls_routes(app, self.channels.get)
        return app

    @web.middleware
    async def _switchboard(self, request: web.Request,
                           handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                           ) -> web.StreamResponse:
        seen = Seen(request.path, request.query_string, CIMultiDict(request.headers))
        self.seen.append(seen)
        if self.gate is not None:
            await self.gate.wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        try:
            response = web.Response(status=self.fail) if self.fail else await handler(request)
        except asyncio.CancelledError:
            seen.status = CLIENT_GONE  # the test server cancels a handler whose client left
            raise
        seen.status = response.status
        return response

    def count(self, suffix: str) -> int:
        return sum(1 for s in self.seen if s.path.endswith(suffix))


@dataclass
class Cluster:
    origin: Origin
    origin_url: str
    where: dict[str, str]  # what locate answers, per channel
    edge: ProxyEdge
    viewer: TestClient


async def start_origin(channels: dict[str, Segmenter]) -> tuple[Origin, TestServer]:
    origin = Origin(channels)
    server = TestServer(origin.app(), host="127.0.0.1")
    await server.start_server()
    return origin, server


@contextlib.asynccontextmanager
async def cluster_of(cam: Segmenter, follow: bool = False) -> AsyncIterator[Cluster]:
    """A steerable origin holding channel "cam", and an edge node in front of it.

    `follow`: whether the edge follows index.m3u8 (the default of a real edge); off, every
    playlist is fetched as viewers ask, which is what most tests here count.
    """
    origin, server = await start_origin({"cam": cam})
    url = f"http://127.0.0.1:{server.port}"
    where = {"cam": url}

    async def locate(channel: str) -> str | None:
        return where.get(channel)

    edge = ProxyEdge(locate, "edge-under-test", grace_period=30.0)
    if not follow:
        edge.playlists.followers.limit = 0
    app = web.Application()
    add_hls_routes(app, {}.get, remote=edge)  # this node holds nothing itself
    async with TestClient(TestServer(app, host="127.0.0.1")) as viewer:
        yield Cluster(origin, url, where, edge, viewer)
    await edge.close()
    await server.close()


@pytest.fixture
async def cluster(cam: Segmenter) -> AsyncIterator[Cluster]:
    async with cluster_of(cam) as made:
        yield made


def first_segment(segmenter: Segmenter) -> str:
    return playlist_entries(segmenter.render_playlist())[0][1]


async def direct(url: str, headers: dict[str, str]) -> tuple[int, CIMultiDict[str], bytes]:
    async with aiohttp.ClientSession(auto_decompress=False) as session, \
            session.get(url, headers=headers) as response:
        return response.status, CIMultiDict(response.headers), await response.read()


SAME_HEADERS = ("Content-Type", "Cache-Control", "Access-Control-Allow-Origin",
                "Access-Control-Expose-Headers", "ETag", "Vary", "Content-Encoding",
                "Accept-Ranges")


async def test_playlist_and_segment_through_the_edge_look_like_the_origin(
        cluster: Cluster, cam: Segmenter) -> None:
    viewer, origin_url = cluster.viewer, cluster.origin_url
    segment = first_segment(cam)
    for path, request_headers in [
        ("/live/cam/index.m3u8", {"Accept-Encoding": "identity"}),
        ("/live/cam/index.m3u8", {"Accept-Encoding": "gzip"}),
        (f"/live/cam/{segment}", {}),
        (f"/live/cam/{segment}", {"Range": "bytes=188-375"}),
    ]:
        status, headers, body = await direct(origin_url + path, request_headers)
        response = await viewer.get(path, headers=request_headers, auto_decompress=False)
        assert response.status == status, path
        assert await response.read() == body, path
        for name in SAME_HEADERS:
            assert response.headers.get(name) == headers.get(name), (path, name)
    gzipped = await viewer.get("/live/cam/index.m3u8", headers={"Accept-Encoding": "gzip"},
                               auto_decompress=False)
    assert gzip.decompress(await gzipped.read()) == cam.render_playlist().encode()
    # The viewer's own conditional request is answered by the edge.
    etag = (await viewer.get("/live/cam/index.m3u8")).headers["ETag"]
    again = await viewer.get("/live/cam/index.m3u8", headers={"If-None-Match": etag})
    assert again.status == 304 and again.headers["ETag"] == etag


async def test_requests_to_the_origin_name_the_edge_and_an_edge_request_is_never_passed_on(
        cluster: Cluster) -> None:
    assert (await cluster.viewer.get("/live/cam/index.m3u8")).status == 200
    assert cluster.origin.seen[0].headers[EDGE_HEADER] == "edge-under-test"
    # A request from another edge asks this node for what it holds: nothing, so 404,
    # even though locate knows an origin (a stale record must not make a loop).
    before = len(cluster.origin.seen)
    for path in ("/live/cam/index.m3u8", "/live/cam/seg-0.ts"):
        response = await cluster.viewer.get(path, headers={EDGE_HEADER: "other-node"})
        assert response.status == 404
    assert len(cluster.origin.seen) == before


async def test_concurrent_viewers_of_one_segment_cause_one_origin_fetch(
        cluster: Cluster, cam: Segmenter) -> None:
    origin, edge = cluster.origin, cluster.edge
    origin.gate = asyncio.Event()  # hold the origin until every viewer is waiting
    path = f"/live/cam/{first_segment(cam)}"
    viewers = [asyncio.create_task(cluster.viewer.get(path)) for _ in range(VIEWERS)]
    await wait_for(lambda: edge.stats.hits["media"] == VIEWERS - 1, 10,
                   what="every other viewer to join the fetch in flight")
    origin.gate.set()
    bodies = [await (await task).read() for task in viewers]
    assert bodies == [bytes(cam.segment(path.rsplit("/", 1)[1]) or b"")] * VIEWERS
    assert origin.count(".ts") == 1
    # Later viewers get it from the cache.
    assert (await cluster.viewer.get(path)).status == 200
    assert origin.count(".ts") == 1 and edge.stats.fetches[("media", "ok")] == 1
    assert edge.media.cache.bytes == len(bodies[0])


async def test_concurrent_playlist_polls_cause_one_fetch_then_a_conditional_one(
        cluster: Cluster, cam: Segmenter) -> None:
    origin, edge = cluster.origin, cluster.edge
    origin.gate = asyncio.Event()
    viewers = [asyncio.create_task(cluster.viewer.get("/live/cam/index.m3u8"))
               for _ in range(VIEWERS)]
    await wait_for(lambda: edge.stats.hits["playlist"] == VIEWERS - 1, 10,
                   what="every other viewer to join the playlist fetch")
    origin.gate.set()
    texts = {await (await task).text() for task in viewers}
    assert texts == {cam.render_playlist()} and origin.count(".m3u8") == 1
    # Fresh: the next poll costs the origin nothing.
    assert (await cluster.viewer.get("/live/cam/index.m3u8")).status == 200
    assert origin.count(".m3u8") == 1
    # Once stale, the refetch is conditional and the unchanged playlist costs a 304.
    edge.playlists.freshness = 0.0
    response = await cluster.viewer.get("/live/cam/index.m3u8")
    assert response.status == 200 and await response.text() == cam.render_playlist()
    refetch = origin.seen[-1]
    assert refetch.headers["If-None-Match"] and refetch.status == 304
    assert edge.stats.fetches[("playlist", "not_modified")] == 1


async def test_blocking_reload_directives_are_forwarded_and_one_fetch_serves_the_same_query(
        cluster: Cluster) -> None:
    origin, edge = cluster.origin, cluster.edge
    origin.gate = asyncio.Event()
    # Same directives, different cache-busters: one playlist, one origin request.
    viewers = [asyncio.create_task(cluster.viewer.get(
        f"/live/cam/index.m3u8?_HLS_msn=7&_HLS_part=1&t={i}")) for i in range(10)]
    other = asyncio.create_task(cluster.viewer.get("/live/cam/index.m3u8?_HLS_msn=8"))
    await wait_for(lambda: edge.stats.hits["playlist"] == 9 and len(origin.seen) == 2, 10,
                   what="two fetches in flight, nine viewers sharing one")
    origin.gate.set()
    assert {(await task).status for task in [*viewers, other]} == {200}
    assert sorted(s.query for s in origin.seen) == ["_HLS_msn=7&_HLS_part=1", "_HLS_msn=8"]


@pytest.mark.parametrize("kind", ["playlist", "segment"])
async def test_origin_failures_become_502_or_504_counted_and_logged(
        cluster: Cluster, cam: Segmenter, kind: str, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(edge_playlists, "PLAYLIST_TIMEOUT", 0.2)
    monkeypatch.setattr(edge_media, "MEDIA_TIMEOUT", 0.2)
    origin, edge = cluster.origin, cluster.edge
    edge.playlists.freshness = 0.0  # every poll asks again
    path = "/live/cam/index.m3u8" if kind == "playlist" else f"/live/cam/{first_segment(cam)}"
    fetch_kind = "playlist" if kind == "playlist" else "media"
    caplog.set_level(logging.WARNING, "mediaserver.edge")

    origin.fail = 500
    response = await cluster.viewer.get(path)
    assert response.status == 502 and response.headers["Cache-Control"] == "no-store"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "127.0.0.1" not in await response.text()  # node addresses stay in the log

    origin.fail, origin.delay = None, 1.0
    response = await cluster.viewer.get(path)
    assert response.status == 504 and "timed out" in await response.text()

    origin.delay = 0.0
    monkeypatch.setattr(edge_client, "MAX_ORIGIN_BODY", 100)
    assert (await cluster.viewer.get(path)).status == 502
    monkeypatch.undo()

    cluster.where["cam"] = "http://127.0.0.1:1"  # nobody listens there
    assert (await cluster.viewer.get(path)).status == 502

    assert {result: edge.stats.fetches[(fetch_kind, result)]
            for result in ("bad_status", "timeout", "too_large", "unreachable")} == {
        "bad_status": 1, "timeout": 1, "too_large": 1, "unreachable": 1}
    failures = [r for r in caplog.records if "fetch failed" in r.getMessage()]
    assert len(failures) == 4 and all("channel=cam" in r.getMessage() for r in failures)
    assert len(edge.media.cache) == 0  # failures are never kept


async def test_registry_failures_become_502_or_504(cluster: Cluster,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(edge_locate, "LOCATE_TIMEOUT", 0.1)
    release = asyncio.Event()

    async def broken(channel: str) -> str | None:
        raise ConnectionError("redis down")

    async def hanging(channel: str) -> str | None:
        await release.wait()
        return None

    for locate, status in ((broken, 502), (hanging, 504)):
        edge = ProxyEdge(locate, "edge", grace_period=30.0)
        for kind, path in ((Kind.PLAYLIST, "/live/cam/index.m3u8"),
                           (Kind.MEDIA, "/live/cam/seg-1.ts")):
            answer = await edge.fetch(RemoteRequest(kind, "cam", path, ""))
            assert getattr(answer, "status", None) == status, (locate, kind)
        assert edge.stats.locate_failures == 2
        await edge.close()
    release.set()


async def test_unknown_channels_get_our_404(cluster: Cluster) -> None:
    for path in ("/live/nobody/index.m3u8", "/live/nobody/seg-1.ts"):
        response = await cluster.viewer.get(path)
        assert response.status == 404 and await response.text() == "unknown channel\n"
        assert response.headers["Cache-Control"] == "no-store"
    assert cluster.origin.seen == []
    # The origin's own 404 reason reaches the viewer (a segment gone from the window).
    response = await cluster.viewer.get("/live/cam/gone-1.ts")
    assert response.status == 404 and "expired" in await response.text()


async def test_origin_lost_the_last_playlist_rides_through_the_grace_period_then_a_new_origin(
        cluster: Cluster, cam: Segmenter) -> None:
    origin, edge = cluster.origin, cluster.edge
    edge.playlists.freshness = 0.0
    edge.playlists.grace_period = 1.0
    last = await (await cluster.viewer.get("/live/cam/index.m3u8")).text()

    origin.fail = 503  # the origin is going down
    response = await cluster.viewer.get("/live/cam/index.m3u8")
    assert response.status == 200 and await response.text() == last
    assert "#EXT-X-ENDLIST" not in last
    cluster.where.pop("cam")  # then the registry forgets it
    assert await (await cluster.viewer.get("/live/cam/index.m3u8")).text() == last
    assert edge.stats.stale_playlists == 2

    async def gone() -> bool:
        return (await cluster.viewer.get("/live/cam/index.m3u8")).status == 404

    await wait_for(gone, 5, what="the last copy to pass the grace period")

    # The channel comes back on another node: the edge follows the registry there.
    moved = live_segmenter()
    other, server = await start_origin({"cam": moved})
    try:
        cluster.where["cam"] = f"http://127.0.0.1:{server.port}"
        response = await cluster.viewer.get("/live/cam/index.m3u8")
        assert await response.text() == moved.render_playlist() != last
        assert other.count(".m3u8") == 1
    finally:
        await server.close()


async def test_a_new_origin_replaces_a_copy_still_within_grace(cluster: Cluster) -> None:
    edge = cluster.edge
    edge.playlists.freshness = 0.0
    first = await (await cluster.viewer.get("/live/cam/index.m3u8")).text()
    moved = live_segmenter()
    other, server = await start_origin({"cam": moved})
    try:
        cluster.where["cam"] = f"http://127.0.0.1:{server.port}"
        second = await (await cluster.viewer.get("/live/cam/index.m3u8")).text()
        assert second == moved.render_playlist() != first
        # No conditional request to a new origin with the old origin's ETag.
        assert "If-None-Match" not in other.seen[0].headers
    finally:
        await server.close()


async def test_a_broken_remote_source_is_a_502_not_a_500(cam: Segmenter) -> None:
    class Broken:
        async def fetch(self, request: RemoteRequest) -> object:
            raise RuntimeError("bug")

    app = web.Application()
    add_hls_routes(app, {}.get, remote=Broken())  # type: ignore[arg-type]
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/live/cam/index.m3u8")).status == 502
        assert (await client.get("/live/cam/seg-1.ts")).status == 502


async def test_redirect_mode_answers_302_to_the_same_url_on_the_origin() -> None:
    where = {"cam": "http://10.0.0.7:8080"}

    async def locate(channel: str) -> str | None:
        return where.get(channel)

    edge = RedirectEdge(locate)
    app = web.Application()
    add_hls_routes(app, {}.get, remote=edge)
    async with TestClient(TestServer(app)) as client:
        # The query goes as sent, escapes and all.
        query = "_HLS_msn=3&t=a%26b%20c"
        response = await client.get(URL(f"/live/cam/index.m3u8?{query}", encoded=True),
                                    allow_redirects=False)
        assert response.status == 302
        assert response.headers["Location"] == (
            f"http://10.0.0.7:8080/live/cam/index.m3u8?{query}")
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        response = await client.get("/live/cam/seg-5.ts", allow_redirects=False)
        assert response.headers["Location"] == "http://10.0.0.7:8080/live/cam/seg-5.ts"
        assert (await client.get("/live/other/index.m3u8")).status == 404
    assert edge.stats.redirects == 2
