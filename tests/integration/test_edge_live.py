"""Two real nodes on loopback: real ffmpeg publishes to the origin, viewers play from the edge.

The cluster registry is stood in for by a `locate` that answers what a registry
would: the origin's URL while it holds the channel. Everything else is the real
server: HLS routes, hub, segmenter, the edge's HTTP client.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import av
import pytest

from benchmarks.servers import OurServer
from mediaserver.app import MediaServer
from mediaserver.cluster.edge import ProxyEdge
from mediaserver.cluster.edge_locate import Locate
from tests.live import http_url, publishing, rtmp_url, running_server, wait_for
from tests.m3u8 import Playlist, parse_playlist

pytestmark = pytest.mark.integration

VIEWERS = 50
CHANNEL = "cam1"


def base_url(server: MediaServer) -> str:
    return f"http://127.0.0.1:{server.http_address[1]}"


def registry_of(origin: MediaServer) -> Locate:
    """What the registry says: the origin's URL while its hub holds the channel."""

    async def locate(channel: str) -> str | None:
        return base_url(origin) if channel in origin.hub.channels else None

    return locate


@contextlib.asynccontextmanager
async def edge_node(data_dir: Path, locate: Locate, **options: object
                    ) -> AsyncIterator[MediaServer]:
    def attach(server: MediaServer) -> None:
        server.cluster_locate = locate

    async with running_server(data_dir, before_start=attach, **options) as server:
        yield server


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, bytes, str | None]:
    async with session.get(url, headers={"Accept-Encoding": "identity"}) as response:
        return response.status, await response.read(), response.headers.get("ETag")


async def playlist_with(session: aiohttp.ClientSession, url: str, segments: int
                        ) -> Playlist | None:
    status, body, _ = await get(session, url)
    if status != 200:
        return None
    playlist = parse_playlist(body.decode())
    return playlist if len(playlist.segments) >= segments else None


def origin_requests(origin: MediaServer, kind: str) -> int:
    return sum(n for (k, _), n in origin.metrics.traffic.requests.items() if k == kind)


def proxy(server: MediaServer) -> ProxyEdge:
    assert isinstance(server.edge, ProxyEdge)
    return server.edge


@contextlib.asynccontextmanager
async def origin_and_edge(tmp_path: Path) -> AsyncIterator[
        tuple[MediaServer, MediaServer, aiohttp.ClientSession, str]]:
    """An origin, an edge in front of it, a client, and the key of CHANNEL on the origin."""
    async with running_server(tmp_path / "origin") as origin, \
            edge_node(tmp_path / "edge", registry_of(origin)) as edge, \
            aiohttp.ClientSession() as session:
        key = await origin.store.create_channel(CHANNEL)  # type: ignore[union-attr]
        yield origin, edge, session, key


async def test_the_edge_serves_the_origins_playlist_and_segments_fetching_each_once(
        tmp_path: Path, clip: Path) -> None:
    async with origin_and_edge(tmp_path) as (origin, edge, session, key):
        path = f"/live/{CHANNEL}/index.m3u8"
        # Before the first edge request: one freshness window long enough that the
        # burst below is sure to fall in it on a loaded machine, and no follower (the
        # next test), so that only the burst's own fetch reaches the origin.
        proxy(edge).playlists.freshness = 30.0
        proxy(edge).playlists.followers.limit = 0
        async with publishing(rtmp_url(origin, key), clip, loops=2):
            await wait_for(lambda: playlist_with(session, http_url(origin, path), 3), 20,
                           what="three segments on the origin")

            before = origin_requests(origin, "playlist")
            burst = await asyncio.gather(*(get(session, http_url(edge, path))
                                           for _ in range(VIEWERS)))
            assert origin_requests(origin, "playlist") - before == 1
            assert {status for status, _, _ in burst} == {200}
            assert len({body for _, body, _ in burst}) == 1
            proxy(edge).playlists.freshness = 0.0

            async def same_playlist() -> tuple[bytes, str | None] | None:
                _, through_edge, edge_etag = await get(session, http_url(edge, path))
                _, direct, origin_etag = await get(session, http_url(origin, path))
                return (direct, origin_etag) if (through_edge, edge_etag) == (
                    direct, origin_etag) else None

            body, _ = await wait_for(same_playlist, 10, what="the edge to match the origin")
            playlist = parse_playlist(body.decode())

            # Fifty viewers of a segment the edge has not fetched yet: one origin fetch.
            last = playlist.segments[-1].uri
            before = origin_requests(origin, "segment")
            burst = await asyncio.gather(*(get(session, http_url(edge, f"/live/{CHANNEL}/{last}"))
                                           for _ in range(VIEWERS)))
            assert origin_requests(origin, "segment") - before == 1
            assert {status for status, _, _ in burst} == {200}

            for segment in playlist.segments:
                segment_path = f"/live/{CHANNEL}/{segment.uri}"
                _, through_edge, _ = await get(session, http_url(edge, segment_path))
                _, direct, _ = await get(session, http_url(origin, segment_path))
                assert through_edge == direct and len(direct) > 10_000
            with av.open(io.BytesIO(through_edge)) as container:
                video = container.streams.video[0]
                assert video.codec_context.name == "h264"
                assert (video.codec_context.width, video.codec_context.height) == (1280, 720)
                assert len(list(container.decode(video=0))) in range(59, 62)  # 2 s at 30 fps

        async with session.get(http_url(edge, "/metrics")) as response:
            metrics = await response.text()
        fetched = len(playlist.segments)
        assert (f'mediaserver_edge_origin_fetches_total{{kind="media",result="ok"}} '
                f'{float(fetched)}') in metrics
        assert 'mediaserver_edge_cache_hits_total{kind="media"}' in metrics
        # Unknown everywhere: our 404.
        status, body, _ = await get(session, http_url(edge, "/live/nobody/index.m3u8"))
        assert (status, body) == (404, b"unknown channel\n")


async def poll(session: aiohttp.ClientSession, url: str, until: asyncio.Event,
               bodies: set[bytes]) -> None:
    """A viewer reloading the playlist every 100 ms (ten times what hls.js does)."""
    while not until.is_set():
        status, body, _ = await get(session, url)
        assert status == 200
        bodies.add(body)
        await asyncio.sleep(0.1)


async def test_an_edge_follows_the_playlist_one_origin_answer_per_segment_and_hears_the_end(
        tmp_path: Path, clip: Path) -> None:
    async with origin_and_edge(tmp_path) as (origin, edge, session, key):
        path = f"/live/{CHANNEL}/index.m3u8"
        stats = proxy(edge).stats
        async with publishing(rtmp_url(origin, key), clip, loops=2):
            start = await wait_for(lambda: playlist_with(session, http_url(edge, path), 2), 20,
                                   what="two segments through the edge")
            await wait_for(lambda: stats.followed == 1, 5, what="the edge to follow it")
            fetched = Counter(stats.fetches)
            done, bodies = asyncio.Event(), set()
            viewers = [asyncio.ensure_future(poll(session, http_url(edge, path), done, bodies))
                       for _ in range(20)]
            end = await wait_for(lambda: playlist_with(
                session, http_url(origin, path), len(start.segments) + 3), 20,
                what="three more segments")
            done.set()
            await asyncio.gather(*viewers)
            # 20 viewers polling ten times a second: the origin answered once per
            # segment (the last one's answer may still be on its way).
            changes = end.segments[-1].sequence - start.segments[-1].sequence
            asked = stats.fetches - fetched
            assert set(asked) == {("playlist", "ok")}
            assert changes <= asked[("playlist", "ok")] <= changes + 1
            seen = {parse_playlist(body.decode()).segments[-1].sequence for body in bodies}
            assert set(range(start.segments[-1].sequence,
                             end.segments[-1].sequence)) <= seen  # every step reached them

        # A clean stop of the origin ends its playlists with ENDLIST: the edge's viewers
        # hear it too, and keep it once the origin is gone.
        await origin.stop()
        status, body, _ = await get(session, http_url(edge, path))
        assert status == 200 and parse_playlist(body.decode()).ended
        assert stats.followed == 0


async def test_redirect_mode_sends_viewers_to_the_origins_same_url(tmp_path: Path, clip: Path
                                                                   ) -> None:
    async with running_server(tmp_path / "origin") as origin, \
            edge_node(tmp_path / "edge", registry_of(origin), edge="redirect") as edge, \
            aiohttp.ClientSession() as session:
        key = await origin.store.create_channel(CHANNEL)  # type: ignore[union-attr]
        path = f"/live/{CHANNEL}/index.m3u8?_HLS_msn=1&player=x"
        async with publishing(rtmp_url(origin, key), clip):
            await wait_for(lambda: playlist_with(session, http_url(origin, path), 1), 20,
                           what="a segment on the origin")
            async with session.get(http_url(edge, path), allow_redirects=False) as response:
                assert response.status == 302
                assert response.headers["Location"] == base_url(origin) + path
            async with session.get(http_url(edge, path)) as response:  # a player follows it
                assert response.status == 200 and str(response.url) == base_url(origin) + path
                assert parse_playlist(await response.text()).segments
        assert edge.edge is not None and edge.edge.stats.redirects == 2


@contextlib.asynccontextmanager
async def crashable_origin(clip: Path) -> AsyncIterator[tuple[OurServer, str, str]]:
    """An origin in its own process (so it can really crash), publishing from real ffmpeg.

    Yields the server, its base URL and its channel name.
    """
    server = OurServer(cpu=None)
    await server.start()
    try:
        target = (await server.prepare(1))[0]
        url = f"rtmp://127.0.0.1:{server.rtmp_port}/live/{target.stream_name}"
        async with publishing(url, clip, loops=5):
            yield server, f"http://127.0.0.1:{server.http_port}", "bench0"
    finally:
        await server.stop()


async def polls_until_gone(session: aiohttp.ClientSession, url: str, deadline: float
                           ) -> list[tuple[float, int, bytes]]:
    """Poll like a player that reloads often, until a 404 or the deadline."""
    seen: list[tuple[float, int, bytes]] = []
    while time.monotonic() < deadline:
        status, body, _ = await get(session, url)
        seen.append((time.monotonic(), status, body))
        if status == 404:
            break
        await asyncio.sleep(0.1)
    return seen


async def test_origin_crash_edge_keeps_its_last_playlist_through_grace_then_404(
        tmp_path: Path, clip: Path) -> None:
    grace = 4.0
    registered = True
    async with crashable_origin(clip) as (origin, origin_url, channel):

        async def locate(name: str) -> str | None:
            return origin_url if registered and name == channel else None

        async with edge_node(tmp_path / "edge", locate, grace_period=grace) as edge, \
                aiohttp.ClientSession() as session:
            url = http_url(edge, f"/live/{channel}/index.m3u8")
            before = await wait_for(lambda: playlist_with(session, url, 2), 20,
                                    what="two segments through the edge")
            os.kill(origin.pid, signal.SIGKILL)  # no ENDLIST, no goodbye
            killed = time.monotonic()
            seen = await polls_until_gone(session, url, killed + grace / 2)
            registered = False  # the registry's record of the dead node runs out
            seen += await polls_until_gone(session, url, killed + grace + 3)

            served = [(at, body) for at, status, body in seen if status == 200]
            assert seen[-1][1] == 404, "the last copy outlived the grace period"
            assert {status for _, status, _ in seen} == {200, 404}
            assert len({body for _, body in served}) == 1  # the one last copy, as it was
            last = parse_playlist(served[0][1].decode())
            assert not last.ended and last.media_sequence >= before.media_sequence
            # Served until about grace after its fetch (at most a freshness window
            # plus a poll before the kill), then gone.
            gone_at = seen[-1][0] - killed
            assert grace - 1.5 <= gone_at <= grace + 1.0, gone_at
            stats = proxy(edge).stats
            assert stats.stale_playlists > 0 and stats.fetches[("playlist", "unreachable")] > 0


async def test_origin_crash_then_the_channel_on_a_new_origin_the_edge_follows(
        tmp_path: Path, clip: Path) -> None:
    where: dict[str, str] = {}

    async def locate(name: str) -> str | None:
        return where.get(name)

    async with crashable_origin(clip) as (origin, origin_url, channel), \
            running_server(tmp_path / "new-origin") as new_origin, \
            edge_node(tmp_path / "edge", locate) as edge, \
            aiohttp.ClientSession() as session:
        where[channel] = origin_url
        url = http_url(edge, f"/live/{channel}/index.m3u8")
        old = await wait_for(lambda: playlist_with(session, url, 1), 20,
                             what="a segment through the edge")
        os.kill(origin.pid, signal.SIGKILL)
        status, stale, _ = await get(session, url)
        assert status == 200 and not parse_playlist(stale.decode()).ended

        key = await new_origin.store.create_channel(channel)  # type: ignore[union-attr]
        async with publishing(rtmp_url(new_origin, key), clip):
            direct_url = http_url(new_origin, f"/live/{channel}/index.m3u8")
            await wait_for(lambda: playlist_with(session, direct_url, 1), 20,
                           what="a segment on the new origin")
            where[channel] = base_url(new_origin)

            async def from_new_origin() -> Playlist | None:
                playlist = await playlist_with(session, url, 1)
                _, direct, _ = await get(session, direct_url)
                return playlist if playlist and parse_playlist(direct.decode()).segments[
                    0].uri == playlist.segments[0].uri else None

            moved = await wait_for(from_new_origin, 10, what="the new origin's playlist")
        assert {s.uri for s in moved.segments}.isdisjoint(s.uri for s in old.segments)
