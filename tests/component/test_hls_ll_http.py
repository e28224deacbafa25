"""LL-HLS through aiohttp's test client: ll.m3u8, blocking reloads (wake-ups, timeouts,
bad queries), delta updates and preload-hinted parts, with a real segmenter fed by
the test one frame at a time."""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

import hls.http
from hls.http import HLS_SIGNALS, add_hls_routes
from hls.segmenter import Segmenter
from tests.hls_media import Media, av_clip
from tests.http_paths import serve

Requests = list[tuple[str, int]]
STEP_TIMEOUT = 10.0


class Feeder:
    """Pushes a clip into a segmenter on demand, a part at a time."""

    def __init__(self, segmenter: Segmenter, media: Media) -> None:
        self.segmenter = segmenter
        self.media = media
        self._packets: Iterator = iter(())
        self.changes = 0
        segmenter.add_listener(self._changed)
        self.publish()

    def _changed(self) -> None:
        self.changes += 1

    def publish(self) -> None:
        self.segmenter.configure(self.media.video, self.media.audio)
        self._packets = iter(self.media.packets)

    def next_change(self) -> None:
        """Push frames until viewers can see something new (a part or a segment)."""
        seen = self.changes
        while self.changes == seen:
            self.segmenter.push(next(self._packets))

    def segments(self, count: int) -> None:
        while len(self.segmenter.playlist.segments) < count:
            self.next_change()

    def next_wanted(self) -> tuple[int, int]:
        """(msn, part) of the next part to land: what hls.js asks for."""
        open_segment = self.segmenter.playlist.open_segment
        if open_segment is None:
            return self.segmenter.playlist.next_sequence, 0
        return open_segment.sequence, len(open_segment.parts)


@pytest.fixture
def requests_seen() -> Requests:
    return []


@pytest.fixture
def channels() -> dict[str, Segmenter]:
    return {}


@pytest.fixture
async def client(channels: dict[str, Segmenter], requests_seen: Requests, http_path: str
                 ) -> AsyncIterator[TestClient]:
    def record(kind: str, status: int, channel: str, client: str) -> None:
        requests_seen.append((kind, status))

    app = web.Application()
    add_hls_routes(app, channels.get, on_request=record)
    async with TestClient(serve(app, http_path)) as test_client:
        yield test_client


@pytest.fixture
def live(channels: dict[str, Segmenter]) -> Feeder:
    """A live LL channel with one finished segment and a part of the next."""
    segmenter = Segmenter(name_token="", part_duration=0.333)
    channels["cam"] = segmenter
    feeder = Feeder(segmenter, av_clip())
    feeder.segments(1)
    feeder.next_change()
    return feeder


def waiting(client: TestClient) -> int:
    return client.app[HLS_SIGNALS].waiting


async def until_waiting(client: TestClient, count: int) -> None:
    deadline = time.monotonic() + STEP_TIMEOUT
    while waiting(client) < count:
        assert time.monotonic() < deadline, f"{waiting(client)} of {count} requests blocked"
        await asyncio.sleep(0.01)


async def test_ll_playlist_is_served_like_the_ts_one(client: TestClient, live: Feeder) -> None:
    response = await client.get("/live/cam/ll.m3u8", headers={"Accept-Encoding": "identity"})
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/vnd.apple.mpegurl"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    text = await response.text()
    assert text == live.segmenter.render_ll_playlist()
    assert "#EXT-X-PART-INF:PART-TARGET=0.333" in text
    etag = response.headers["ETag"]
    again = await client.get("/live/cam/ll.m3u8", headers={"If-None-Match": etag,
                                                           "Accept-Encoding": "identity"})
    assert again.status == 304
    packed = await client.get("/live/cam/ll.m3u8", headers={"Accept-Encoding": "gzip"},
                              auto_decompress=False)
    assert packed.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(await packed.read()).decode() == text
    head = await client.head("/live/cam/ll.m3u8")
    assert head.status == 200


async def test_blocking_reload_waits_for_the_part_and_answers_when_it_lands(
        client: TestClient, live: Feeder) -> None:
    msn, part = live.next_wanted()
    url = f"/live/cam/ll.m3u8?_HLS_msn={msn}&_HLS_part={part}"
    request = asyncio.ensure_future(client.get(url))
    await until_waiting(client, 1)
    assert not request.done()
    live.next_change()
    response = await asyncio.wait_for(request, STEP_TIMEOUT)
    assert response.status == 200
    text = await response.text()
    open_segment = live.segmenter.playlist.open_segment
    assert open_segment is not None and open_segment.sequence == msn
    assert f'URI="{open_segment.parts[part].uri}"' in text
    assert waiting(client) == 0


async def test_msn_alone_waits_for_the_whole_segment(client: TestClient, live: Feeder) -> None:
    msn = live.segmenter.playlist.next_sequence
    request = asyncio.ensure_future(client.get(f"/live/cam/ll.m3u8?_HLS_msn={msn}"))
    await until_waiting(client, 1)
    while len(live.segmenter.playlist.segments) <= msn:
        assert not request.done()
        live.next_change()
        await asyncio.sleep(0)
    response = await asyncio.wait_for(request, STEP_TIMEOUT)
    assert f"seg{msn}.m4s" in await response.text()


async def test_an_answerable_request_does_not_wait(client: TestClient, live: Feeder) -> None:
    response = await client.get("/live/cam/ll.m3u8?_HLS_msn=0&_HLS_part=2")
    assert response.status == 200 and waiting(client) == 0
    assert client.app[HLS_SIGNALS].wakeups.count == 0  # nothing woke it


async def test_hundreds_of_waiters_are_woken_by_one_part(client: TestClient,
                                                         live: Feeder) -> None:
    msn, part = live.next_wanted()
    url = client.make_url(f"/live/cam/ll.m3u8?_HLS_msn={msn}&_HLS_part={part}")
    viewers = 300
    # A session without aiohttp's 100-connection default: every viewer has its own.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        requests = [asyncio.ensure_future(session.get(url, headers={"Accept-Encoding": "gzip"}))
                    for _ in range(viewers)]
        await until_waiting(client, viewers)
        live.next_change()
        responses = await asyncio.wait_for(asyncio.gather(*requests), STEP_TIMEOUT)
        assert {r.status for r in responses} == {200}
        assert len({r.headers["ETag"] for r in responses}) == 1  # one rendering for all
        for response in responses:
            response.release()
    assert waiting(client) == 0
    wakeups = client.app[HLS_SIGNALS].wakeups
    assert wakeups.count == viewers  # each woken answer's delay after the part is kept
    assert 0 < wakeups.sum < viewers * STEP_TIMEOUT


async def test_blocking_reload_gives_up_with_503_after_three_target_durations(
        client: TestClient, live: Feeder, monkeypatch: pytest.MonkeyPatch) -> None:
    assert hls.http.BLOCKING_TARGETS == 3  # RFC 8216bis 6.2.5.2
    monkeypatch.setattr(hls.http, "BLOCKING_TARGETS", 0.25)  # 0.5 s at a 2 s target
    msn, part = live.next_wanted()
    started = time.monotonic()
    response = await client.get(f"/live/cam/ll.m3u8?_HLS_msn={msn}&_HLS_part={part}")
    waited = time.monotonic() - started
    assert response.status == 503
    assert "stalled" in await response.text()
    assert 0.5 <= waited < 0.5 + STEP_TIMEOUT
    assert waiting(client) == 0


async def test_a_viewer_hanging_up_leaves_the_others_waiting(client: TestClient,
                                                             live: Feeder) -> None:
    msn, part = live.next_wanted()
    url = f"/live/cam/ll.m3u8?_HLS_msn={msn}&_HLS_part={part}"
    stays = asyncio.ensure_future(client.get(url))
    leaves = asyncio.ensure_future(client.get(url))
    await until_waiting(client, 2)
    leaves.cancel()
    deadline = time.monotonic() + STEP_TIMEOUT
    while waiting(client) != 1:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    live.next_change()
    assert (await asyncio.wait_for(stays, STEP_TIMEOUT)).status == 200


@pytest.mark.parametrize(("query", "reason"), [
    ("_HLS_part=1", "needs _HLS_msn"),
    ("_HLS_msn=abc", "decimal integer"),
    ("_HLS_msn=-1", "decimal integer"),
    ("_HLS_msn=1&_HLS_msn=2", "more than once"),
    ("_HLS_skip=NO", "YES or v2"),
    ("_HLS_msn=9", "more than 2 past"),
    ("_HLS_msn=1&_HLS_part=40", "parts past"),
])
async def test_bad_directives_get_400_with_the_reason(
        client: TestClient, live: Feeder, requests_seen: Requests, query: str,
        reason: str) -> None:
    response = await client.get(f"/live/cam/ll.m3u8?{query}")
    assert response.status == 400
    assert reason in await response.text()
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert requests_seen[-1] == ("ll_playlist", 400)
    assert waiting(client) == 0


async def test_bad_directives_are_refused_for_unknown_channels_too(client: TestClient) -> None:
    response = await client.get("/live/nobody/ll.m3u8?_HLS_part=1")
    assert response.status == 400


async def test_delta_update_on_request(client: TestClient,
                                       channels: dict[str, Segmenter]) -> None:
    segmenter = Segmenter(window=20, name_token="", part_duration=0.333)
    channels["long"] = segmenter
    feeder = Feeder(segmenter, av_clip())
    for _ in range(3):  # 3 x 7 s: the clip's last segment closes when its publisher goes
        feeder.segments(len(segmenter.playlist.segments) + 3)
        segmenter.publisher_gone()
        feeder.publish()
    feeder.next_change()
    full = await (await client.get("/live/long/ll.m3u8")).text()
    delta = await (await client.get("/live/long/ll.m3u8?_HLS_skip=YES")).text()
    assert "#EXT-X-SKIP:SKIPPED-SEGMENTS=" in delta and "EXT-X-SKIP" not in full
    assert "#EXT-X-VERSION:9" in delta and len(delta) < len(full)
    v2 = await (await client.get("/live/long/ll.m3u8?_HLS_skip=v2")).text()
    assert v2 == delta
    msn, part = feeder.next_wanted()
    blocking = asyncio.ensure_future(
        client.get(f"/live/long/ll.m3u8?_HLS_msn={msn}&_HLS_part={part}&_HLS_skip=YES"))
    await until_waiting(client, 1)
    feeder.next_change()
    assert "#EXT-X-SKIP:" in await (await asyncio.wait_for(blocking, STEP_TIMEOUT)).text()


async def test_the_hinted_part_is_held_until_complete(client: TestClient, live: Feeder) -> None:
    hint = live.segmenter.preload_hint
    assert hint is not None
    request = asyncio.ensure_future(client.get(f"/live/cam/{hint}"))
    await until_waiting(client, 1)
    live.next_change()
    response = await asyncio.wait_for(request, STEP_TIMEOUT)
    assert response.status == 200
    assert response.headers["Content-Type"] == "video/mp4"
    assert await response.read() == bytes(live.segmenter.segment(hint) or b"")
    number = int(hint[4:-4])
    after = await client.get(f"/live/cam/part{number + 5}.m4s")
    assert after.status == 404  # neither made nor hinted: not waited for


async def test_fmp4_resources_carry_types_caching_and_ranges(client: TestClient,
                                                             live: Feeder) -> None:
    entry = live.segmenter.playlist.segments[0]
    init = await client.get(f"/live/cam/{entry.map_uri}")
    assert init.status == 200 and init.headers["Content-Type"] == "video/mp4"
    assert "immutable" in init.headers["Cache-Control"]
    parent = await client.get(f"/live/cam/{entry.ll_uri}")
    body = await parent.read()
    assert body == bytes(live.segmenter.segment(entry.ll_uri or "") or b"")
    assert parent.headers["Content-Type"] == "video/mp4"
    assert int(parent.headers["Content-Length"]) == len(body)
    # The parent is its parts back to back: a range across the first boundary.
    first = len(live.segmenter.segment(entry.parts[0].uri) or b"")
    across = await client.get(f"/live/cam/{entry.ll_uri}",
                              headers={"Range": f"bytes={first - 4}-{first + 7}"})
    assert across.status == 206 and await across.read() == body[first - 4:first + 8]
    assert across.headers["Content-Range"] == f"bytes {first - 4}-{first + 7}/{len(body)}"
    assert (await client.head(f"/live/cam/{entry.ll_uri}")).headers["Content-Length"] == str(
        len(body))
    part = entry.parts[1]
    ranged = await client.get(f"/live/cam/{part.uri}", headers={"Range": "bytes=0-7"})
    assert ranged.status == 206 and (await ranged.read())[4:8] == b"moof"
    assert (await client.get("/live/cam/bad.name.m4s")).status == 404


async def test_an_ended_playlist_answers_at_once(client: TestClient, live: Feeder) -> None:
    hint = live.segmenter.preload_hint or ""
    hinted = asyncio.ensure_future(client.get(f"/live/cam/{hint}"))
    await until_waiting(client, 1)
    live.segmenter.end()  # the part being written is finished by the end: the hint holds
    assert (await asyncio.wait_for(hinted, STEP_TIMEOUT)).status == 200
    assert live.segmenter.preload_hint is None
    number = int(hint[4:-4])
    assert (await client.get(f"/live/cam/part{number + 1}.m4s")).status == 404  # never comes
    response = await client.get("/live/cam/ll.m3u8?_HLS_msn=99&_HLS_part=99&_HLS_skip=YES")
    text = await response.text()
    assert response.status == 200
    assert text.rstrip().endswith("#EXT-X-ENDLIST") and "EXT-X-SKIP" not in text


async def test_ll_off_and_not_ready(client: TestClient, channels: dict[str, Segmenter]) -> None:
    plain = Segmenter()
    plain.configure(av_clip().video, av_clip().audio)
    for packet in av_clip().packets:
        plain.push(packet)
    channels["plain"] = plain
    response = await client.get("/live/plain/ll.m3u8")
    assert response.status == 404 and "index.m3u8" in await response.text()
    starting = Segmenter(part_duration=0.333)
    starting.configure(av_clip().video, av_clip().audio)
    channels["starting"] = starting
    assert (await client.get("/live/starting/ll.m3u8")).status == 404


async def test_a_hinted_part_that_never_comes_is_404_once_the_stream_ends(
        client: TestClient, live: Feeder) -> None:
    live.segmenter.publisher_gone()  # the part being written is finished; the next is hinted
    hint = live.segmenter.preload_hint or ""
    assert live.segmenter.segment(hint) is None
    hinted = asyncio.ensure_future(client.get(f"/live/cam/{hint}"))
    await until_waiting(client, 1)
    live.segmenter.end()  # grace period over: no publisher will bring it
    assert (await asyncio.wait_for(hinted, STEP_TIMEOUT)).status == 404
