"""The origin's half of an edge following index.m3u8 (hls.edge_hold), through aiohttp's test
client with a real segmenter fed a segment at a time: an edge's conditional request is held
until the playlist changes, ends, or leaves this node, within a bound; nobody else's is."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from hls import edge_hold
from hls.http import HLS_SIGNALS, add_hls_routes
from hls.remote import EDGE_HEADER, WAIT_HEADER
from hls.segmenter import Segmenter
from tests.component.test_hls_ll_http import Feeder
from tests.hls_media import av_clip
from tests.live import wait_for

PATH = "/live/cam/index.m3u8"
STEP_TIMEOUT = 10.0


@pytest.fixture
def channels() -> dict[str, Segmenter]:
    return {}


@pytest.fixture
async def client(channels: dict[str, Segmenter]) -> AsyncIterator[TestClient]:
    app = web.Application()
    add_hls_routes(app, channels.get)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


@pytest.fixture
def live(channels: dict[str, Segmenter]) -> Feeder:
    """A live TS channel with one segment; each next_change() publishes one more."""
    segmenter = channels["cam"] = Segmenter(window=3)
    feeder = Feeder(segmenter, av_clip())
    feeder.segments(1)
    return feeder


def waiting(client: TestClient) -> int:
    return client.app[HLS_SIGNALS].waiting


async def etag_of(client: TestClient) -> str:
    response = await client.get(PATH, headers={"Accept-Encoding": "identity"})
    assert response.status == 200
    return response.headers["ETag"]


def edge_headers(etag: str, wait: str = "10") -> dict[str, str]:
    return {EDGE_HEADER: "edge-1", WAIT_HEADER: wait, "If-None-Match": etag,
            "Accept-Encoding": "identity"}


async def test_an_edges_request_is_held_until_the_next_segment_then_answered_with_it(
        client: TestClient, live: Feeder) -> None:
    etag = await etag_of(client)
    held = asyncio.ensure_future(client.get(PATH, headers=edge_headers(etag)))
    await wait_for(lambda: waiting(client) == 1, STEP_TIMEOUT, what="the request held")
    assert not held.done()
    live.next_change()
    response = await asyncio.wait_for(held, STEP_TIMEOUT)
    assert response.status == 200
    assert await response.text() == live.segmenter.render_playlist()
    assert response.headers["ETag"] != etag and waiting(client) == 0
    # The end is a change too: the edge hears ENDLIST at once.
    held = asyncio.ensure_future(client.get(PATH, headers=edge_headers(
        response.headers["ETag"])))
    await wait_for(lambda: waiting(client) == 1, STEP_TIMEOUT, what="the request held")
    live.segmenter.end()
    ended = await asyncio.wait_for(held, STEP_TIMEOUT)
    assert ended.status == 200 and (await ended.text()).endswith("#EXT-X-ENDLIST\n")
    # An ended playlist never changes again: nothing to hold for (nor to delay a shutdown).
    again = await asyncio.wait_for(
        client.get(PATH, headers=edge_headers(ended.headers["ETag"])), STEP_TIMEOUT)
    assert again.status == 304 and waiting(client) == 0


async def test_only_an_edges_request_for_the_playlist_it_has_is_held(
        client: TestClient, live: Feeder) -> None:
    etag = await etag_of(client)
    # No edge header: an ordinary conditional request, answered at once.
    headers = edge_headers(etag)
    del headers[EDGE_HEADER]
    response = await asyncio.wait_for(client.get(PATH, headers=headers), STEP_TIMEOUT)
    assert response.status == 304
    # An edge whose copy is older: the new playlist at once.
    response = await asyncio.wait_for(client.get(PATH, headers=edge_headers('"old"')),
                                      STEP_TIMEOUT)
    assert response.status == 200 and response.headers["ETag"] == etag
    # No wait asked: a 304 at once.
    response = await asyncio.wait_for(client.get(PATH, headers=edge_headers(etag, "0")),
                                      STEP_TIMEOUT)
    assert response.status == 304
    assert waiting(client) == 0


@pytest.mark.parametrize("wait", ["soon", "-1", "nan", "inf", ""])
async def test_a_malformed_wait_is_a_400_that_names_the_header(
        client: TestClient, live: Feeder, wait: str) -> None:
    response = await client.get(PATH, headers=edge_headers(await etag_of(client), wait))
    assert response.status == 400
    assert WAIT_HEADER in await response.text()
    assert response.headers["Cache-Control"] == "no-store"


async def test_a_hold_is_bounded_then_a_304(client: TestClient, live: Feeder,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(edge_hold, "MAX_HOLD_SECONDS", 0.3)
    etag = await etag_of(client)
    started = time.monotonic()
    response = await asyncio.wait_for(client.get(PATH, headers=edge_headers(etag, "3600")),
                                      STEP_TIMEOUT)
    held_for = time.monotonic() - started
    assert response.status == 304 and response.headers["ETag"] == etag
    assert held_for >= 0.3
    assert waiting(client) == 0


async def test_a_held_request_ends_when_the_edge_hangs_up(
        channels: dict[str, Segmenter], live: Feeder, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(edge_hold, "GONE_CHECK_SECONDS", 0.1)
    # As the server runs it (aiohttp's default): a handler is not cancelled when its
    # client hangs up (the test client's server would cancel it, hiding the case).
    app = web.Application()
    add_hls_routes(app, channels.get)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        url = f"http://127.0.0.1:{port}{PATH}"
        signals = app[HLS_SIGNALS]
        async with aiohttp.ClientSession() as session:
            async with session.get(url, headers={"Accept-Encoding": "identity"}) as response:
                etag = response.headers["ETag"]
            held = asyncio.ensure_future(session.get(url, headers=edge_headers(etag, "30")))
            await wait_for(lambda: signals.waiting == 1, STEP_TIMEOUT, what="the request held")
            held.cancel()  # the edge goes away: its connection closes
        # Nothing changes on the channel (a stalled stream), yet the hold ends.
        await wait_for(lambda: signals.waiting == 0, STEP_TIMEOUT, what="the hold to end")
    finally:
        await runner.cleanup()


async def test_a_channel_that_leaves_this_node_answers_its_held_requests_404(
        client: TestClient, live: Feeder, channels: dict[str, Segmenter]) -> None:
    etag = await etag_of(client)
    held = asyncio.ensure_future(client.get(PATH, headers=edge_headers(etag)))
    await wait_for(lambda: waiting(client) == 1, STEP_TIMEOUT, what="the request held")
    # What the hub does when the channel moves to another node: end the local copy, drop it.
    live.segmenter.end()
    del channels["cam"]
    response = await asyncio.wait_for(held, STEP_TIMEOUT)
    assert response.status == 404  # not the ENDLIST of a copy that is no longer served
    assert "no longer held here" in await response.text()
