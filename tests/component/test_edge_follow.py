"""An edge following index.m3u8 (edge_follow) against a steerable origin (see test_edge.py)
with a real segmenter fed a segment at a time: the origin answers once per change whatever
the audience, the edge's copy is the new playlist before any viewer asks, and a follower
lets go when its origin fails, its channel moves or its viewers leave."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from hls.http import add_hls_routes
from hls.remote import EDGE_HEADER, WAIT_HEADER
from hls.segmenter import Segmenter
from mediaserver.cluster.edge_follow import FOLLOW_WAIT_SECONDS, UNHELD_PAUSE_SECONDS
from tests.component.test_edge import CLIENT_GONE, Cluster, Origin, Seen, cluster_of
from tests.component.test_hls_ll_http import Feeder
from tests.hls_media import av_clip
from tests.live import wait_for

PATH = "/live/cam/index.m3u8"
VIEWERS = 50
STEP_TIMEOUT = 10.0
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def followed() -> AsyncIterator[tuple[Cluster, Feeder]]:
    """An edge following a live TS channel of one segment; next_change() adds one."""
    segmenter = Segmenter(window=3)
    feeder = Feeder(segmenter, av_clip())
    feeder.segments(1)
    async with cluster_of(segmenter, follow=True) as cluster:
        yield cluster, feeder


def playlist_requests(origin: Origin) -> list[Seen]:
    return [seen for seen in origin.seen if seen.path == PATH]


def held(origin: Origin) -> list[Seen]:
    """Playlist requests the origin has not answered yet."""
    return [seen for seen in playlist_requests(origin) if seen.status == 0]


async def viewers_get(cluster: Cluster, count: int = VIEWERS) -> set[str]:
    responses = await asyncio.gather(*(cluster.viewer.get(PATH) for _ in range(count)))
    assert {response.status for response in responses} == {200}
    return {await response.text() for response in responses}


async def asked_again(cluster: Cluster, requests: int) -> None:
    """Until the follower has its answer and is held by the origin again."""
    await wait_for(lambda: len(playlist_requests(cluster.origin)) == requests
                   and len(held(cluster.origin)) == 1, STEP_TIMEOUT,
                   what=f"request {requests} to the origin, held")


async def test_an_audience_costs_the_origin_one_answer_per_change_and_sees_it_at_once(
        followed: tuple[Cluster, Feeder]) -> None:
    cluster, feeder = followed
    segmenter, origin, edge = feeder.segmenter, cluster.origin, cluster.edge
    first = await cluster.viewer.get(PATH, headers={"Accept-Encoding": "identity"})
    assert await first.text() == segmenter.render_playlist()
    await asked_again(cluster, 2)
    [waiting] = held(origin)
    assert waiting.headers[EDGE_HEADER] == "edge-under-test"
    assert waiting.headers[WAIT_HEADER] == f"{FOLLOW_WAIT_SECONDS:g}"
    assert waiting.headers["If-None-Match"] == first.headers["ETag"]
    for change in range(2):
        assert await viewers_get(cluster) == {segmenter.render_playlist()}
        assert len(playlist_requests(origin)) == 2 + change  # the audience cost nothing
        feeder.next_change()  # a new segment on the origin
        await asked_again(cluster, 3 + change)
        # Before any viewer asked, the edge holds the new playlist.
        assert edge.playlists.followers.current(("cam", PATH, "")) is not None
        assert await viewers_get(cluster, 1) == {segmenter.render_playlist()}
    assert [seen.status for seen in playlist_requests(origin)] == [200, 200, 200, 0]
    assert edge.stats.fetches[("playlist", "ok")] == 3
    assert edge.stats.hits["playlist"] == 2 * VIEWERS + 2
    assert edge.stats.followed == 1
    # The end reaches the edge's viewers at once, as any change; an ended playlist never
    # changes again, so the follower lets go.
    segmenter.end()
    await wait_for(lambda: not edge.playlists.followers and not held(origin), STEP_TIMEOUT,
                   what="the follower to let go of the ended playlist")
    assert len(playlist_requests(origin)) == 4
    assert (await (await cluster.viewer.get(PATH)).text()).endswith("#EXT-X-ENDLIST\n")


async def test_a_channel_leaving_its_origin_stops_the_follower_and_viewers_keep_the_last_copy(
        followed: tuple[Cluster, Feeder]) -> None:
    cluster, feeder = followed
    last = await (await cluster.viewer.get(PATH)).text()
    await asked_again(cluster, 2)
    # The origin hands the channel to another node: its copy ends and is dropped there.
    feeder.segmenter.end()
    cluster.origin.channels.pop("cam")
    await wait_for(lambda: not held(cluster.origin) and not cluster.edge.playlists.followers,
                   STEP_TIMEOUT, what="the follower to let go")
    assert playlist_requests(cluster.origin)[-1].status == 404
    # Viewers get the last copy, without the ENDLIST of a copy that moved elsewhere.
    response = await cluster.viewer.get(PATH)
    assert response.status == 200 and await response.text() == last
    assert cluster.edge.stats.stale_playlists == 1 and cluster.edge.stats.followed == 0


async def test_a_follower_stops_once_its_viewers_left_and_the_next_viewer_starts_one(
        followed: tuple[Cluster, Feeder]) -> None:
    cluster, feeder = followed
    followers = cluster.edge.playlists.followers
    followers.idle = 0.2
    cluster.edge.playlists.freshness = 0.0  # the next viewer's request is a fetch
    await cluster.viewer.get(PATH)
    await asked_again(cluster, 2)
    await asyncio.sleep(followers.idle)  # nobody asks meanwhile
    feeder.next_change()
    await wait_for(lambda: not followers and not held(cluster.origin), STEP_TIMEOUT,
                   what="the idle follower to stop")
    assert len(playlist_requests(cluster.origin)) == 2  # it did not ask again
    assert await viewers_get(cluster, 1) == {feeder.segmenter.render_playlist()}
    await asked_again(cluster, 4)
    assert len(followers) == 1


async def test_closing_the_edge_ends_its_held_requests(
        followed: tuple[Cluster, Feeder]) -> None:
    cluster, _ = followed
    await cluster.viewer.get(PATH)
    await asked_again(cluster, 2)
    await cluster.edge.close()
    await wait_for(lambda: not held(cluster.origin), STEP_TIMEOUT,
                   what="the origin to let go of the held request")
    assert playlist_requests(cluster.origin)[-1].status == CLIENT_GONE


async def test_an_origin_that_does_not_hold_is_asked_no_more_often_than_plain_fetches_would(
        followed: tuple[Cluster, Feeder]) -> None:
    cluster, _ = followed

    @web.middleware
    async def forget_the_wait(request: web.Request, handler: Handler) -> web.StreamResponse:
        # An origin of an earlier version: it knows nothing of the wait.
        headers = request.headers.copy()
        headers.popall(WAIT_HEADER, None)
        return await handler(request.clone(headers=headers))

    old = Origin(cluster.origin.channels)
    app = web.Application(middlewares=[old._switchboard, forget_the_wait])
    add_hls_routes(app, old.channels.get)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        cluster.where["cam"] = f"http://127.0.0.1:{server.port}"
        await cluster.viewer.get(PATH)
        started = asyncio.get_running_loop().time()
        await wait_for(lambda: len(playlist_requests(old)) >= 4, STEP_TIMEOUT,
                       what="the follower to ask a few times")
        # Each a 304 at once: paced at UNHELD_PAUSE_SECONDS, not a busy loop.
        assert asyncio.get_running_loop().time() - started >= 2 * UNHELD_PAUSE_SECONDS
        assert [seen.status for seen in playlist_requests(old)[1:3]] == [304, 304]
        assert len(cluster.edge.playlists.followers) == 1
    finally:
        await server.close()


async def test_followers_are_bounded_and_past_the_bound_playlists_are_fetched_as_asked(
        followed: tuple[Cluster, Feeder]) -> None:
    cluster, _ = followed
    other = Segmenter(window=3)
    Feeder(other, av_clip()).segments(1)
    cluster.origin.channels["cam2"] = other
    cluster.where["cam2"] = cluster.origin_url
    cluster.edge.playlists.followers.limit = 1
    cluster.edge.playlists.freshness = 0.0
    await cluster.viewer.get(PATH)
    await asked_again(cluster, 2)
    for _ in range(3):
        response = await cluster.viewer.get("/live/cam2/index.m3u8")
        assert await response.text() == other.render_playlist()
    assert len(cluster.edge.playlists.followers) == 1
    assert cluster.origin.count("cam2/index.m3u8") == 3  # each one fetched
