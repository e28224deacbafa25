"""LL-HLS through the edge, against a steerable origin (see test_edge.py): blocking reloads
are forwarded once per (channel, msn, part, skip) and shared, parts and init sections are
fetched once per node, the origin's 400/503 reach the viewer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from hls.segmenter import Segmenter
from mediaserver.cluster.edge_playlists import _target_duration, directives
from tests.component.test_edge import Cluster, cluster_of
from tests.component.test_hls_ll_http import Feeder
from tests.hls_media import av_clip

VIEWERS = 100
STEP_TIMEOUT = 10.0


@pytest.fixture
async def ll_cluster() -> AsyncIterator[tuple[Cluster, Feeder]]:
    segmenter = Segmenter(name_token="", part_duration=0.333)
    feeder = Feeder(segmenter, av_clip())
    feeder.segments(1)
    feeder.next_change()
    async with cluster_of(segmenter) as cluster:
        yield cluster, feeder


async def until_origin_sees(cluster: Cluster, suffix: str, count: int) -> None:
    deadline = asyncio.get_running_loop().time() + STEP_TIMEOUT
    while cluster.origin.count(suffix) < count:
        assert asyncio.get_running_loop().time() < deadline, cluster.origin.seen
        await asyncio.sleep(0.01)


async def test_a_blocking_reload_reaches_the_origin_once_for_all_viewers(
        ll_cluster: tuple[Cluster, Feeder]) -> None:
    cluster, feeder = ll_cluster
    msn, part = feeder.next_wanted()
    queries = [f"_HLS_msn={msn}&_HLS_part={part}", f"_HLS_part={part}&_HLS_msn={msn}",
               f"_HLS_msn={msn}&_HLS_part={part}&cachebuster=7"]
    url = cluster.viewer.make_url("/live/cam/ll.m3u8")
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        pending = [asyncio.ensure_future(session.get(f"{url}?{queries[i % len(queries)]}"))
                   for i in range(VIEWERS)]
        await until_origin_sees(cluster, "ll.m3u8", 1)
        await asyncio.sleep(0.2)  # the others have joined; none may have gone to the origin
        assert cluster.origin.count("ll.m3u8") == 1
        assert not any(request.done() for request in pending)  # the origin holds it
        feeder.next_change()
        responses = await asyncio.wait_for(asyncio.gather(*pending), STEP_TIMEOUT)
        bodies = {await response.read() for response in responses}
    assert {response.status for response in responses} == {200}
    assert bodies == {feeder.segmenter.render_ll_playlist().encode()}
    assert cluster.origin.count("ll.m3u8") == 1
    [seen] = [s for s in cluster.origin.seen if s.path.endswith("ll.m3u8")]
    assert seen.query == f"_HLS_msn={msn}&_HLS_part={part}"  # only the directives, in order


async def test_the_hinted_part_is_fetched_once_and_held_at_the_origin(
        ll_cluster: tuple[Cluster, Feeder]) -> None:
    cluster, feeder = ll_cluster
    hint = feeder.segmenter.preload_hint
    path = f"/live/cam/{hint}"
    pending = [asyncio.ensure_future(cluster.viewer.get(path)) for _ in range(20)]
    await until_origin_sees(cluster, hint or "", 1)
    feeder.next_change()
    responses = await asyncio.wait_for(asyncio.gather(*pending), STEP_TIMEOUT)
    expected = bytes(feeder.segmenter.segment(hint or "") or b"")
    assert [await r.read() for r in responses] == [expected] * 20
    assert {r.headers["Content-Type"] for r in responses} == {"video/mp4"}
    again = await cluster.viewer.get(path)
    assert await again.read() == expected
    init = feeder.segmenter.playlist.segments[0].map_uri
    for _ in range(3):
        assert (await cluster.viewer.get(f"/live/cam/{init}")).status == 200
    assert cluster.origin.count(hint or "") == 1 and cluster.origin.count(init or "") == 1


async def test_the_origins_refusals_reach_the_viewer(ll_cluster: tuple[Cluster, Feeder]) -> None:
    cluster, feeder = ll_cluster
    too_far = feeder.segmenter.playlist.next_sequence + 5
    response = await cluster.viewer.get(f"/live/cam/ll.m3u8?_HLS_msn={too_far}")
    assert response.status == 400 and "past the last segment" in await response.text()
    before = len(cluster.origin.seen)
    response = await cluster.viewer.get("/live/cam/ll.m3u8?_HLS_part=2")
    assert response.status == 400 and len(cluster.origin.seen) == before  # refused here
    cluster.origin.fail = 503  # as the origin answers a blocking reload it cannot serve
    msn, part = feeder.next_wanted()
    response = await cluster.viewer.get(f"/live/cam/ll.m3u8?_HLS_msn={msn}&_HLS_part={part}")
    assert response.status == 503


def test_directives_are_one_key_whatever_their_order() -> None:
    assert directives("_HLS_part=2&_HLS_msn=5&x=1") == directives("_HLS_msn=5&_HLS_part=2")
    assert directives("_HLS_skip=YES&_HLS_msn=5") == "_HLS_msn=5&_HLS_skip=YES"


def test_blocking_timeout_follows_the_target_duration() -> None:
    assert _target_duration(b"#EXTM3U\n#EXT-X-TARGETDURATION:6\n#EXTINF:6.0,\n") == 6
    assert _target_duration(b"#EXTM3U\n") == 0
