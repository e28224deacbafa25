"""The hot path (mediaserver.hot_http + hls.hot) on the wire: what it answers itself, what it
leaves to aiohttp, and the HTTP rules it must keep on its own (pipelining, keep-alive,
Connection: close, a peer that does not read, shutdown). What the answers contain is held
by test_hls_http.py and test_hls_ll_http.py, which run on both paths."""

from __future__ import annotations

import asyncio
import email.utils
import gc
import gzip
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from hls.http import add_hls_routes
from hls.segmenter import Segmenter
from tests.hls_media import av_clip, playlist_entries
from tests.http_paths import HotTestServer, serve

STEP = 5.0  # seconds any single exchange may take


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    body: bytes


async def read_reply(reader: asyncio.StreamReader, head_only: bool = False) -> Reply:
    async with asyncio.timeout(STEP):
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        body = b"" if head_only or status == 304 else await reader.readexactly(length)
    return Reply(status, headers, body)


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> float:
    """Seconds until the server closed the connection (fails after `within`)."""
    started = time.monotonic()
    async with asyncio.timeout(within):
        try:
            while await reader.read(65536):
                pass
        except ConnectionError:
            pass
    return time.monotonic() - started


def get(path: str, *headers: str, method: str = "GET", version: str = "1.1") -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "Host: test", *headers, "", ""]
    return "\r\n".join(lines).encode("latin-1")


@pytest.fixture(scope="module")
def channel() -> Segmenter:
    """A live LL-HLS channel with segments."""
    media = av_clip()
    segmenter = Segmenter(window=3, part_duration=0.333)
    segmenter.configure(media.video, media.audio)
    for packet in media.packets:
        segmenter.push(packet)
    return segmenter


def app_for(channel: Segmenter) -> tuple[web.Application, list[tuple[str, int]]]:
    seen: list[tuple[str, int]] = []
    app = web.Application()
    add_hls_routes(app, {"live": channel}.get,
                   on_request=lambda kind, status, name, client: seen.append((kind, status)))
    return app, seen


@dataclass
class Served:
    server: HotTestServer
    seen: list[tuple[str, int]]

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.server.port)

    @property
    def answered(self) -> int:
        return self.server.front.stats.answered

    @property
    def handed_over(self) -> int:
        return self.server.front.stats.handed_over


@pytest.fixture
async def hot(channel: Segmenter) -> AsyncIterator[Served]:
    app, seen = app_for(channel)
    server = HotTestServer(app)
    await server.start_server()
    try:
        yield Served(server, seen)
    finally:
        await server.close()


def segment_name(channel: Segmenter) -> str:
    return playlist_entries(channel.render_playlist())[0][1]


def part_name(channel: Segmenter) -> str:
    lines = channel.render_ll_playlist().splitlines()
    part = next(line for line in lines if line.startswith("#EXT-X-PART:"))
    return part.split('URI="')[1].split('"')[0]


async def test_hot_requests_are_answered_without_aiohttp(hot: Served,
                                                         channel: Segmenter) -> None:
    segment, part = segment_name(channel), part_name(channel)
    reader, writer = await hot.connect()
    try:
        writer.write(get("/live/live/index.m3u8"))
        reply = await read_reply(reader)
        assert reply.status == 200 and reply.body == channel.render_playlist().encode()
        etag = reply.headers["etag"]
        writer.write(get("/live/live/index.m3u8", f"If-None-Match: {etag}"))
        assert (await read_reply(reader)).status == 304
        writer.write(get("/live/live/index.m3u8", "Accept-Encoding: gzip"))
        reply = await read_reply(reader)
        assert gzip.decompress(reply.body) == channel.render_playlist().encode()
        writer.write(get("/live/live/ll.m3u8"))
        assert (await read_reply(reader)).body == channel.render_ll_playlist().encode()
        writer.write(get(f"/live/live/{segment}"))
        assert (await read_reply(reader)).body == bytes(channel.segment(segment) or b"")
        writer.write(get(f"/live/live/{segment}", method="HEAD"))
        reply = await read_reply(reader, head_only=True)
        assert int(reply.headers["content-length"]) == len(channel.segment(segment) or b"")
        writer.write(get(f"/live/live/{part}"))
        reply = await read_reply(reader)
        assert reply.status == 200 and reply.headers["content-type"] == "video/mp4"
        assert reply.body == bytes(channel.segment(part) or b"")
        writer.write(get("/live/live/seg999.ts"))
        assert (await read_reply(reader)).status == 404
    finally:
        writer.close()
    assert hot.answered == 8
    assert hot.handed_over == 0
    assert hot.seen == [("playlist", 200), ("playlist", 304), ("playlist", 200),
                        ("ll_playlist", 200), ("segment", 200), ("segment", 200),
                        ("segment", 200), ("segment", 404)]


NOT_HOT = [
    pytest.param(get("/live/live/index.m3u8", method="OPTIONS"), 204, id="options"),
    pytest.param(get("/live/live/index.m3u8", method="POST"), 405, id="post"),
    pytest.param(get("/live/live/{segment}", "Range: bytes=0-187"), 206, id="range"),
    pytest.param(get("/live/live/ll.m3u8?_HLS_msn=999999"), 400, id="ll-directives"),
    pytest.param(get("/live/other/index.m3u8"), 404, id="unknown-channel"),
    pytest.param(get("/live/live/index.m3u8", version="1.0"), 200, id="http-1.0"),
    pytest.param(get("/live/live/index.m3u8", "X-Mediaserver-Edge: n2"), 200, id="edge-request"),
    pytest.param(get("/live/live/index%2Em3u8"), 200, id="percent-encoded"),
    pytest.param(get("/live/live/index.m3u8", "Expect: 100-continue"), 100, id="expect"),
    pytest.param(b"GET /live/live/index.m3u8 HTTP/1.1\r\nHost: x\r\nno colon\r\n\r\n", 400,
                 id="malformed-header"),
    pytest.param(get("/live/live/index.m3u8", "Content-Length: 4") + b"abcd", 200, id="body"),
    pytest.param(get("/healthz"), 404, id="another-route"),
]


@pytest.mark.parametrize(("request_bytes", "status"), NOT_HOT)
async def test_what_is_not_hot_is_answered_by_aiohttp_as_before(
        hot: Served, channel: Segmenter, request_bytes: bytes, status: int) -> None:
    request_bytes = request_bytes.replace(b"{segment}", segment_name(channel).encode())
    app, _ = app_for(channel)
    async with serve(app, "aiohttp") as plain:
        reader, writer = await asyncio.open_connection("127.0.0.1", plain.port)
        writer.write(request_bytes)
        expected = await read_reply(reader)
        writer.close()
    reader, writer = await hot.connect()
    writer.write(request_bytes)
    reply = await read_reply(reader)
    writer.close()
    assert (reply.status, reply.body) == (expected.status, expected.body)
    assert reply.status == status
    if status != 100:  # an interim answer names no server
        assert reply.headers["server"].startswith("Python")  # aiohttp answered it
    assert hot.answered == 0 and hot.handed_over == 1


async def test_pipelined_requests_are_answered_in_order_across_the_hand_over(
        hot: Served, channel: Segmenter) -> None:
    segment = segment_name(channel)
    reader, writer = await hot.connect()
    writer.write(get("/live/live/index.m3u8") + get(f"/live/live/{segment}", method="HEAD")
                 + get("/live/live/seg999.ts") + get("/live/live/index.m3u8", method="OPTIONS")
                 + get("/live/live/ll.m3u8"))
    replies = [await read_reply(reader), await read_reply(reader, head_only=True),
               await read_reply(reader), await read_reply(reader), await read_reply(reader)]
    writer.close()
    assert [r.status for r in replies] == [200, 200, 404, 204, 200]
    assert replies[0].body == channel.render_playlist().encode()
    assert replies[4].body == channel.render_ll_playlist().encode()
    # The first three were hot; from the OPTIONS on, aiohttp has the connection.
    assert hot.answered == 3 and hot.handed_over == 1
    assert "server" not in replies[2].headers and "server" in replies[4].headers


async def test_a_request_head_split_across_reads_is_answered(hot: Served,
                                                             channel: Segmenter) -> None:
    request_bytes = get("/live/live/index.m3u8", "User-Agent: slow") * 2
    reader, writer = await hot.connect()
    for at in range(0, len(request_bytes), 7):
        writer.write(request_bytes[at:at + 7])
        await writer.drain()
        await asyncio.sleep(0)
    assert (await read_reply(reader)).status == 200
    assert (await read_reply(reader)).status == 200
    writer.close()
    assert hot.answered == 2 and hot.handed_over == 0


async def test_answers_carry_a_date_and_the_same_headers_as_aiohttps(
        hot: Served, channel: Segmenter) -> None:
    segment = segment_name(channel)
    app, _ = app_for(channel)
    requests = [get("/live/live/index.m3u8", "Accept-Encoding: gzip"),
                get("/live/live/index.m3u8", 'If-None-Match: "x", *'),
                get(f"/live/live/{segment}"), get("/live/live/nothing.m4s"),
                get("/live/live/ll.m3u8", "Connection: close")]
    async with serve(app, "aiohttp") as plain:
        expected = []
        for request_bytes in requests:
            reader, writer = await asyncio.open_connection("127.0.0.1", plain.port)
            writer.write(request_bytes)
            expected.append(await read_reply(reader))
            writer.close()
    for request_bytes, want in zip(requests, expected, strict=True):
        reader, writer = await hot.connect()
        writer.write(request_bytes)
        reply = await read_reply(reader)
        writer.close()
        assert (reply.status, reply.body) == (want.status, want.body)
        date = email.utils.parsedate_to_datetime(reply.headers.pop("date"))
        assert abs(date.timestamp() - time.time()) < 5
        want.headers.pop("date")
        assert want.headers.pop("server").startswith("Python")  # aiohttp names itself
        assert reply.headers == want.headers
    assert hot.answered == len(requests) and hot.handed_over == 0


async def test_connection_close_is_honoured(hot: Served) -> None:
    reader, writer = await hot.connect()
    writer.write(get("/live/live/index.m3u8", "Connection: close")
                 + get("/live/live/index.m3u8"))  # pipelined after close: never answered
    reply = await read_reply(reader)
    assert reply.status == 200 and reply.headers["connection"] == "close"
    await closed_by_server(reader, STEP)
    writer.close()
    assert hot.answered == 1


@pytest.mark.parametrize("path", ["aiohttp", "hot"])
async def test_idle_keep_alive_connections_are_closed_after_the_timeout(
        channel: Segmenter, path: str) -> None:
    app, _ = app_for(channel)
    timeout = 0.6
    async with serve(app, path, keepalive_timeout=timeout) as server:
        peers = []
        for second_request in (b"", b"GET /live/live/index.m3u8 HTTP/1.1\r\nHo"):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(get("/live/live/index.m3u8") + second_request)
            assert (await read_reply(reader)).status == 200
            peers.append((reader, writer))
        # One that keeps asking stays open past the timeout.
        busy_reader, busy_writer = await asyncio.open_connection("127.0.0.1", server.port)
        for _ in range(6):
            busy_writer.write(get("/live/live/index.m3u8"))
            assert (await read_reply(busy_reader)).status == 200
            await asyncio.sleep(timeout / 3)
        for reader, writer in peers:
            waited = await closed_by_server(reader, STEP)
            writer.close()
            assert waited < timeout + 1.0
        busy_writer.write(get("/live/live/index.m3u8"))
        assert (await read_reply(busy_reader)).status == 200
        busy_writer.close()


async def test_a_peer_that_does_not_read_cannot_make_the_server_buffer_its_requests(
        hot: Served, channel: Segmenter) -> None:
    segment = segment_name(channel)
    size = len(channel.segment(segment) or b"")
    count = 60  # ~100 MB of answers asked for at once
    reader, writer = await hot.connect()
    writer.transport.set_write_buffer_limits(high=1 << 22)
    writer.write(get(f"/live/live/{segment}") * count)
    await asyncio.sleep(0.5)  # let the server do all it would do without us reading

    (connection,) = hot.server.front._open
    transport = connection._transport
    assert transport is not None
    held = transport.get_write_buffer_size()
    # At most about one answer beyond the socket buffers, not sixty.
    assert held < 2 * size + (1 << 20), held
    assert hot.answered < count
    for _ in range(count):
        reply = await read_reply(reader)
        assert reply.status == 200 and len(reply.body) == size
    writer.close()
    assert hot.answered == count and hot.handed_over == 0


async def test_shutdown_closes_hot_connections(channel: Segmenter) -> None:
    app, _ = app_for(channel)
    server = HotTestServer(app)
    await server.start_server()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(get("/live/live/index.m3u8"))
    assert (await read_reply(reader)).status == 200
    started = time.monotonic()
    await server.close()
    assert await closed_by_server(reader, STEP) < STEP
    assert time.monotonic() - started < STEP
    writer.close()


async def test_a_failing_lookup_hands_the_request_to_aiohttp(channel: Segmenter) -> None:
    calls = []

    def lookup(name: str) -> Segmenter | None:
        calls.append(name)
        if len(calls) == 1:
            raise RuntimeError("lookup broke")  # the hot path's call: a bug of ours
        return channel

    app = web.Application()
    add_hls_routes(app, lookup)
    server: TestServer = serve(app, "hot")
    async with server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(get("/live/live/index.m3u8"))
        reply = await read_reply(reader)  # answered by aiohttp instead
        writer.close()
    assert reply.status == 200 and reply.body == channel.render_playlist().encode()
    assert calls == ["live", "live"]


@pytest.mark.parametrize("hand_over", [False, True])
async def test_a_closed_connection_leaves_nothing_for_the_cyclic_collector(
        hot: Served, hand_over: bool) -> None:
    """Every viewer connection ends; one freed only by the collector would pile up."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        for _ in range(3):
            reader, writer = await hot.connect()
            writer.write(get("/live/live/index.m3u8"))
            assert (await read_reply(reader)).status == 200
            if hand_over:
                writer.write(get("/live/live/index.m3u8", method="OPTIONS"))
                assert (await read_reply(reader)).status == 204
            writer.close()
            await closed_by_server(reader, STEP)
        await asyncio.sleep(0.1)  # the server sees the close
        assert not hot.server.front._open
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        ours = [type(obj).__qualname__ for obj in gc.garbage
                if type(obj).__module__.startswith(("mediaserver", "hls", "httptools"))]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.unfreeze()
        gc.enable()
    assert ours == []
