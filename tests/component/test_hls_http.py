"""HLS handlers through aiohttp's test client, backed by a real segmenter; every test runs
through aiohttp alone and through the hot path in front of it (tests/http_paths.py)."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

import hls.versions
from hls.http import SEGMENT_MAX_AGE, add_hls_routes
from hls.segmenter import Segmenter
from tests.hls_media import av_clip, playlist_entries
from tests.http_paths import serve

Requests = list[tuple[str, int, str]]


@pytest.fixture(scope="module")
def hls_live() -> Segmenter:
    """A channel with segments, still live (no ENDLIST)."""
    media = av_clip()
    segmenter = Segmenter(window=3)
    segmenter.configure(media.video, media.audio)
    for packet in media.packets:
        segmenter.push(packet)
    return segmenter


@pytest.fixture
def hls_requests() -> Requests:
    return []


@pytest.fixture
async def hls_client(hls_live: Segmenter, hls_requests: Requests, http_path: str
                     ) -> AsyncIterator[TestClient]:
    media = av_clip()
    starting = Segmenter()
    starting.configure(media.video, media.audio)  # publishing, no segment yet
    channels = {"live": hls_live, "starting": starting}

    def record(kind: str, status: int, channel: str, client: str) -> None:
        hls_requests.append((kind, status, channel, client))

    app = web.Application()
    add_hls_routes(app, channels.get, on_request=record)
    async with TestClient(serve(app, http_path)) as client:
        yield client


def first_segment(segmenter: Segmenter) -> str:
    return playlist_entries(segmenter.render_playlist())[0][1]


async def test_playlist(hls_client: TestClient, hls_live: Segmenter) -> None:
    response = await hls_client.get("/live/live/index.m3u8")
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/vnd.apple.mpegurl"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    text = await response.text()
    assert text == hls_live.render_playlist()
    assert text.startswith("#EXTM3U\n")


async def test_segment(hls_client: TestClient, hls_live: Segmenter) -> None:
    name = first_segment(hls_live)
    response = await hls_client.get(f"/live/live/{name}")
    assert response.status == 200
    assert response.headers["Content-Type"] == "video/mp2t"
    assert response.headers["Cache-Control"] == f"public, max-age={SEGMENT_MAX_AGE}, immutable"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Content-Length" in response.headers["Access-Control-Expose-Headers"]
    assert response.headers["Accept-Ranges"] == "bytes"
    body = await response.read()
    assert body == hls_live.segment(name)
    assert int(response.headers["Content-Length"]) == len(body)


async def test_head(hls_client: TestClient, hls_live: Segmenter) -> None:
    name = first_segment(hls_live)
    response = await hls_client.head(f"/live/live/{name}")
    assert response.status == 200
    assert response.headers["Content-Type"] == "video/mp2t"
    assert int(response.headers["Content-Length"]) == len(hls_live.segment(name) or b"")
    assert await response.read() == b""
    response = await hls_client.head("/live/live/index.m3u8")
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/vnd.apple.mpegurl"
    assert await response.read() == b""
    response = await hls_client.head("/live/nobody/index.m3u8")
    assert response.status == 404


@pytest.mark.parametrize("path", ["/live/live/index.m3u8", "/live/live/seg0.ts"])
async def test_preflight(hls_client: TestClient, path: str) -> None:
    response = await hls_client.options(
        path,
        headers={
            "Origin": "https://player.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "range, x-player-session",
        },
    )
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert set(response.headers["Access-Control-Allow-Methods"].split(", ")) == {
        "GET",
        "HEAD",
        "OPTIONS",
    }
    assert response.headers["Access-Control-Allow-Headers"] == "range, x-player-session"
    assert int(response.headers["Access-Control-Max-Age"]) > 0


async def test_preflight_without_requested_headers(hls_client: TestClient) -> None:
    response = await hls_client.options("/live/live/index.m3u8")
    assert response.status == 204
    assert "Range" in response.headers["Access-Control-Allow-Headers"]


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/live/nobody/index.m3u8", "unknown channel"),
        ("/live/nobody/seg0.ts", "unknown channel"),
        ("/live/Live/index.m3u8", "unknown channel"),  # names are lower case
        ("/live/-live/index.m3u8", "unknown channel"),
        (f"/live/{'a' * 65}/index.m3u8", "unknown channel"),
        ("/live/starting/index.m3u8", "no segments yet"),
        ("/live/live/seg999.ts", "segment expired or unknown"),
        ("/live/live/seg..0.ts", "segment expired or unknown"),
    ],
)
async def test_not_found(hls_client: TestClient, path: str, reason: str) -> None:
    response = await hls_client.get(path)
    assert response.status == 404
    assert reason in await response.text()
    assert response.headers["Access-Control-Allow-Origin"] == "*"  # players see the real status
    assert response.headers["Cache-Control"] == "no-store"


async def test_expired_segment(http_path: str) -> None:
    # Two publishes through a window of 3: the first segments leave the playlist, stay
    # fetchable for a while (RFC 8216 6.2.2), then are gone for good.
    media = av_clip()
    now = [1_700_000_000.0]
    segmenter = Segmenter(window=3, clock=lambda: now[0])
    for _ in range(2):
        segmenter.configure(media.video, media.audio)
        for packet in media.packets:
            segmenter.push(packet)
        segmenter.publisher_gone()
    app = web.Application()
    add_hls_routes(app, {"x": segmenter}.get)
    async with TestClient(serve(app, http_path)) as client:
        gone = segmenter.segment_name(0)
        assert gone not in segmenter.render_playlist()
        assert (await client.get(f"/live/x/{gone}")).status == 200
        now[0] += 60
        assert (await client.get(f"/live/x/{gone}")).status == 404
        listed = first_segment(segmenter)
        assert (await client.get(f"/live/x/{listed}")).status == 200


async def test_range_requests(hls_client: TestClient, hls_live: Segmenter) -> None:
    name = first_segment(hls_live)
    data = hls_live.segment(name) or b""
    url = f"/live/live/{name}"

    response = await hls_client.get(url, headers={"Range": "bytes=0-187"})
    assert response.status == 206
    assert response.headers["Content-Range"] == f"bytes 0-187/{len(data)}"
    assert await response.read() == data[:188]

    response = await hls_client.get(url, headers={"Range": "bytes=-188"})
    assert response.status == 206
    assert await response.read() == data[-188:]

    response = await hls_client.get(url, headers={"Range": f"bytes={len(data) - 10}-"})
    assert await response.read() == data[-10:]

    response = await hls_client.get(url, headers={"Range": f"bytes={len(data)}-"})
    assert response.status == 416
    assert response.headers["Content-Range"] == f"bytes */{len(data)}"

    for ignored in ("bytes=0-1,5-6", "items=0-1", "bytes=9-3", "bytes=x-"):
        response = await hls_client.get(url, headers={"Range": ignored})
        assert response.status == 200
        assert await response.read() == data


async def test_on_request_hook_sees_every_answer(
    hls_client: TestClient, hls_live: Segmenter, hls_requests: Requests
) -> None:
    await hls_client.get("/live/live/index.m3u8")
    await hls_client.get(f"/live/live/{first_segment(hls_live)}")
    await hls_client.get("/live/live/seg999.ts")
    await hls_client.options("/live/live/index.m3u8")
    assert [(kind, status) for kind, status, _, _ in hls_requests] == [
        ("playlist", 200),
        ("segment", 200),
        ("segment", 404),
        ("preflight", 204),
    ]
    assert all(channel == "live" for _, _, channel, _ in hls_requests)
    assert all(client.startswith("127.0.0.1 Python") for _, _, _, client in hls_requests)


async def test_a_failing_hook_does_not_break_serving(hls_live: Segmenter, http_path: str
                                                     ) -> None:
    def boom(kind: str, status: int, channel: str, client: str) -> None:
        raise RuntimeError("metrics broke")

    app = web.Application()
    add_hls_routes(app, {"live": hls_live}.get, on_request=boom)
    async with TestClient(serve(app, http_path)) as client:
        assert (await client.get("/live/live/index.m3u8")).status == 200


async def test_ended_playlist_is_still_served(http_path: str) -> None:
    media = av_clip()
    segmenter = Segmenter()
    segmenter.configure(media.video, media.audio)
    for packet in media.packets:
        segmenter.push(packet)
    segmenter.end()
    app = web.Application()
    add_hls_routes(app, {"done": segmenter}.get, prefix="/hls")
    async with TestClient(serve(app, http_path)) as client:
        response = await client.get("/hls/done/index.m3u8")
        assert response.status == 200
        assert (await response.text()).endswith("#EXT-X-ENDLIST\n")
        assert (await client.get("/live/done/index.m3u8")).status == 404


async def test_other_methods_are_not_allowed(hls_client: TestClient) -> None:
    response = await hls_client.post("/live/live/index.m3u8")
    assert response.status == 405


# ---- conditional requests and gzip (RFC 8216 6.2.1's SHOULDs) ------------------------------


class Growing:
    """A live channel that can be given its next segment mid-test."""

    def __init__(self) -> None:
        self.media = av_clip()
        self.segmenter = Segmenter(window=3)
        self.segmenter.configure(self.media.video, self.media.audio)
        self.pushed = 0
        self.push_until(3500)  # two segments listed, the third open

    def push_until(self, dts: int) -> None:
        packets = self.media.packets
        while self.pushed < len(packets) and packets[self.pushed].dts < dts:
            self.segmenter.push(packets[self.pushed])
            self.pushed += 1


@pytest.fixture
async def raw_client(http_path: str) -> AsyncIterator[tuple[TestClient, Growing]]:
    """A client that shows bodies as sent (no automatic gzip decoding)."""
    channel = Growing()
    app = web.Application()
    add_hls_routes(app, {"live": channel.segmenter}.get)
    async with TestClient(serve(app, http_path), auto_decompress=False) as client:
        yield client, channel


PLAYLIST = "/live/live/index.m3u8"
IDENTITY = {"Accept-Encoding": "identity"}


async def test_playlist_etag_and_304(raw_client: tuple[TestClient, Growing]) -> None:
    client, channel = raw_client
    first = await client.get(PLAYLIST, headers=IDENTITY)
    assert first.status == 200
    etag = first.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"') and len(etag) > 8
    assert "ETag" in first.headers["Access-Control-Expose-Headers"]
    assert await first.text() == channel.segmenter.render_playlist()

    for if_none_match in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        again = await client.get(PLAYLIST, headers=IDENTITY | {"If-None-Match": if_none_match})
        assert again.status == 304, if_none_match
        assert await again.read() == b""
        assert again.headers["ETag"] == etag
        assert again.headers["Cache-Control"] == "no-cache"
        assert again.headers["Access-Control-Allow-Origin"] == "*"
        assert again.headers["Vary"] == "Accept-Encoding"

    other = await client.get(PLAYLIST, headers=IDENTITY | {"If-None-Match": '"stale"'})
    assert other.status == 200 and await other.read()

    channel.push_until(5500)  # the next segment: a new playlist, a new ETag
    changed = await client.get(PLAYLIST, headers=IDENTITY | {"If-None-Match": etag})
    assert changed.status == 200
    assert changed.headers["ETag"] != etag
    assert await changed.text() == channel.segmenter.render_playlist()


async def test_head_carries_the_etag(raw_client: tuple[TestClient, Growing]) -> None:
    client, _ = raw_client
    etag = (await client.get(PLAYLIST, headers=IDENTITY)).headers["ETag"]
    head = await client.head(PLAYLIST, headers=IDENTITY)
    assert head.status == 200 and head.headers["ETag"] == etag
    head = await client.head(PLAYLIST, headers=IDENTITY | {"If-None-Match": etag})
    assert head.status == 304


@pytest.mark.parametrize(
    ("accept", "gzipped"),
    [
        ("gzip", True),
        ("gzip, deflate, br", True),
        ("br;q=1.0, gzip;q=0.5", True),
        ("x-gzip", True),
        ("*", True),
        ("GZIP", True),
        ("gzip;q=0", False),
        ("*;q=0", False),
        ("br", False),
        ("identity", False),
        ("gzip;q=nonsense", False),
        ("", False),
    ],
)
async def test_playlist_gzip_when_accepted(
    raw_client: tuple[TestClient, Growing], accept: str, gzipped: bool
) -> None:
    client, channel = raw_client
    response = await client.get(PLAYLIST, headers={"Accept-Encoding": accept})
    assert response.status == 200
    assert response.headers["Vary"] == "Accept-Encoding"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    raw = await response.read()
    expected = channel.segmenter.render_playlist().encode()
    if gzipped:
        assert response.headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(raw) == expected
        assert int(response.headers["Content-Length"]) == len(raw) < len(expected)
    else:
        assert "Content-Encoding" not in response.headers
        assert raw == expected


async def test_gzipped_playlist_has_its_own_etag(raw_client: tuple[TestClient, Growing]) -> None:
    client, _ = raw_client
    plain = (await client.get(PLAYLIST, headers=IDENTITY)).headers["ETag"]
    packed = (await client.get(PLAYLIST, headers={"Accept-Encoding": "gzip"})).headers["ETag"]
    assert plain != packed
    again = await client.get(PLAYLIST, headers={"Accept-Encoding": "gzip", "If-None-Match": packed})
    assert again.status == 304 and again.headers["ETag"] == packed
    assert await again.read() == b""


async def test_playlist_is_encoded_once_per_change(
    raw_client: tuple[TestClient, Growing], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, channel = raw_client
    compressions = []
    real_compress = gzip.compress

    def counting(data: bytes, *args: object, **kwargs: object) -> bytes:
        compressions.append(len(data))
        return real_compress(data, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(hls.versions.gzip, "compress", counting)
    for accept in ("gzip", "identity") * 10:
        assert (await client.get(PLAYLIST, headers={"Accept-Encoding": accept})).status == 200
    assert len(compressions) == 1
    channel.push_until(5500)
    for _ in range(5):
        await client.get(PLAYLIST, headers={"Accept-Encoding": "gzip"})
    assert len(compressions) == 2
