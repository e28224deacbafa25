"""HTTP listener bounds, readiness, and start/stop hygiene of the whole server."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import re
import resource
import socket
import sys
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from mediaserver import app as app_module
from mediaserver.app import MediaServer
from mediaserver.config import load_config
from mediaserver.http_limits import PROBE_RESERVE_CONNECTIONS
from rtmp.handshake import HANDSHAKE_SIZE, build_client_c0c1
from tests.live import http_url, running_server, wait_for
from tests.redis_server import REDIS_SERVER, RedisServer, free_port

pytestmark = pytest.mark.integration

HALF_SENT = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


async def half_sent(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(HALF_SENT)
    await writer.drain()
    return reader, writer


async def closed(reader: asyncio.StreamReader) -> bool:
    """Reads until the server closes (EOF or reset); the caller bounds the wait."""
    try:
        while await reader.read(65536):
            pass
    except ConnectionError:
        pass
    return True


async def raw_get(port: int, path: str, timeout: float = 5.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        async with asyncio.timeout(timeout):
            return await reader.read(65536)
    finally:
        writer.close()


async def get_status(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url) as response:
        return response.status


# Every bound holds whether the hot path (mediaserver.hot_http) is in front of aiohttp or not.
FAST_PATH = pytest.mark.parametrize("fast_path", ["on", "off"])


@FAST_PATH
async def test_half_sent_requests_are_closed_within_the_header_timeout(
        tmp_path: Path, fast_path: str) -> None:
    async with running_server(tmp_path, http_header_timeout=1.0,
                              http_fast_path=fast_path) as server:
        port = server.http_address[1]
        peers = [await half_sent(port) for _ in range(200)]
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with asyncio.timeout(6.0):
            await asyncio.gather(*(closed(reader) for reader, _ in peers))
        # Closed by the header timeout (1 s after each connected), not before it.
        assert 0.5 < loop.time() - started < 6.0
        for _, writer in peers:
            writer.close()
        assert server.http_gate is not None
        assert server.http_gate.stats.header_timeouts >= 200
        # A client that does send its headers is served as before.
        async with aiohttp.ClientSession() as session:
            assert await get_status(session, http_url(server, "/healthz")) == 200


@FAST_PATH
async def test_past_the_cap_http_is_refused_while_probes_and_rtmp_answer(
        tmp_path: Path, fast_path: str) -> None:
    async with running_server(tmp_path, max_http_connections=5, http_header_timeout=30.0,
                              http_fast_path=fast_path) as server:
        port = server.http_address[1]
        # The cap, and then the probe reserve too, held by requests that never finish.
        holders = [await half_sent(port) for _ in range(5 + PROBE_RESERVE_CONNECTIONS)]
        try:
            reply = await raw_get(port, "/live/demo/index.m3u8")
            assert reply.startswith(b"HTTP/1.1 503 ")
            assert server.http_gate is not None
            assert server.http_gate.stats.refused >= 1
            # The probe reserve lets health checks through a full listener; the oldest
            # unfinished request in it makes way for them.
            assert (await raw_get(port, "/healthz")).startswith(b"HTTP/1.1 200 ")
            assert (await raw_get(port, "/readyz")).startswith(b"HTTP/1.1 200 ")
            # RTMP accept is untouched: a handshake completes.
            reader, writer = await asyncio.open_connection("127.0.0.1", server.rtmp_address[1])
            writer.write(build_client_c0c1())
            async with asyncio.timeout(5):
                await reader.readexactly(1 + 2 * HANDSHAKE_SIZE)
            writer.close()
        finally:
            for _, writer in holders:
                writer.close()
        # Once the holders are gone the cap has room again.
        async with aiohttp.ClientSession() as session:
            async def served() -> bool:
                return await get_status(session, http_url(server, "/metrics")) == 200
            await wait_for(served, timeout=5, what="HTTP to accept again")


async def test_readyz_follows_the_sqlite_store(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server, aiohttp.ClientSession() as session:
        assert await get_status(session, http_url(server, "/readyz")) == 200
        assert server.store is not None
        await server.store.close()  # a store that cannot answer any more
        assert await get_status(session, http_url(server, "/readyz")) == 503
        assert await get_status(session, http_url(server, "/healthz")) == 200


@pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")
async def test_readyz_is_503_while_redis_is_down_and_200_when_back(tmp_path: Path) -> None:
    with RedisServer() as redis:
        async with running_server(tmp_path, store=redis.url) as server, \
                aiohttp.ClientSession() as session:
            url = http_url(server, "/readyz")
            assert await get_status(session, url) == 200
            redis.stop()

            async def unready() -> bool:
                return await get_status(session, url) == 503
            await wait_for(unready, timeout=10, what="/readyz to say 503")
            assert await get_status(session, http_url(server, "/healthz")) == 200
            redis.start()

            async def ready() -> bool:
                return await get_status(session, url) == 200
            await wait_for(ready, timeout=15, what="/readyz to recover")


async def test_a_failed_start_closes_what_it_opened(tmp_path: Path) -> None:
    http_port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        rtmp_port = taken.getsockname()[1]
        config = load_config({"rtmp": f"127.0.0.1:{rtmp_port}",
                              "http": f"127.0.0.1:{http_port}",
                              "data_dir": str(tmp_path)}, env={})
        tasks_before = asyncio.all_tasks()
        server = MediaServer(config)
        with pytest.raises(OSError, match=f"rtmp on 127.0.0.1:{rtmp_port}"):
            await server.start()
        await asyncio.sleep(0)  # let cancelled tasks finish
        left = {t for t in asyncio.all_tasks() - tasks_before if not t.done()}
        assert not left, left
        with socket.socket() as again:
            again.bind(("127.0.0.1", http_port))  # the HTTP port is free again
        await server.stop()  # still safe after a failed start


@dataclass
class _Publisher:
    channel: str


class _Hub:
    def __init__(self) -> None:
        self.live: list[_Publisher] = []

    def publishers(self) -> list[_Publisher]:
        return list(self.live)


class _Store:
    def __init__(self) -> None:
        self.marked: list[str] = []

    async def mark_online(self, channel: str, node: str, ttl: float) -> None:
        self.marked.append(channel)


@contextlib.asynccontextmanager
async def refreshing(server: MediaServer) -> AsyncIterator[None]:
    task = asyncio.get_running_loop().create_task(server._refresh_online())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_online_refresh_holds_no_publisher_after_its_channel_ended(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app_module, "ONLINE_REFRESH_SECONDS", 0.05)
    server = MediaServer(load_config({"data_dir": str(tmp_path)}, env={}))
    hub, store = _Hub(), _Store()
    server.hub, server.store = hub, store  # type: ignore[assignment]
    hub.live.append(_Publisher("cam"))
    gone = weakref.ref(hub.live[0])
    async with refreshing(server):
        await wait_for(lambda: store.marked or None, timeout=5, what="a refresh")
        hub.live.clear()  # the channel ended

        def collected() -> bool:
            gc.collect()
            return gone() is None
        await wait_for(collected, timeout=2, what="the publisher to be freed")


@FAST_PATH
async def test_keep_alive_connections_idle_or_half_sent_are_closed(
        tmp_path: Path, fast_path: str) -> None:
    async with running_server(tmp_path, http_keepalive_timeout=1.0, http_header_timeout=30.0,
                              http_fast_path=fast_path) as server:
        port = server.http_address[1]
        peers = []
        for second_request in (b"", HALF_SENT):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + second_request)
            peers.append((reader, writer))
        async with asyncio.timeout(5.0):  # the keep-alive timeout, not the header timeout
            for reader, writer in peers:
                assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 200")
                await closed(reader)
                writer.close()


async def test_under_a_low_fd_limit_caps_fit_and_health_and_rtmp_still_answer(
        tmp_path: Path) -> None:
    """The real command with RLIMIT_NOFILE 256: flooding HTTP never exhausts descriptors."""
    limit = 256

    def low_fd_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    log_path = tmp_path / "server.log"
    env = {**os.environ, "MEDIASERVER_RTMP": "127.0.0.1:0", "MEDIASERVER_HTTP": "127.0.0.1:0",
           "MEDIASERVER_HTTP_HEADER_TIMEOUT": "30"}
    with log_path.open("w") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mediaserver", "serve", "--data-dir", str(tmp_path / "data"),
            stdout=asyncio.subprocess.PIPE, stderr=log, env=env, preexec_fn=low_fd_limit)
    peers: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        assert proc.stdout is not None
        banner = ""
        async with asyncio.timeout(20):
            while "Control API" not in banner:
                line = await proc.stdout.readline()
                assert line, log_path.read_text()
                banner += line.decode()
        http_port = int(re.findall(r"http://[^:]+:(\d+)/", banner)[0])
        rtmp_port = int(re.findall(r"rtmp://[^:]+:(\d+)/", banner)[0])
        chosen = re.search(r"rtmp cap (\d+), http cap (\d+)", log_path.read_text())
        assert chosen, log_path.read_text()
        rtmp_cap, http_cap = int(chosen.group(1)), int(chosen.group(2))
        assert rtmp_cap + http_cap + PROBE_RESERVE_CONNECTIONS < limit
        for _ in range(limit + 50):  # more than the process could hold
            peers.append(await half_sent(http_port))
        assert (await raw_get(http_port, "/live/demo/index.m3u8")).startswith(b"HTTP/1.1 503")
        assert (await raw_get(http_port, "/healthz")).startswith(b"HTTP/1.1 200 ")
        reader, writer = await asyncio.open_connection("127.0.0.1", rtmp_port)
        writer.write(build_client_c0c1())
        async with asyncio.timeout(5):
            await reader.readexactly(1 + 2 * HANDSHAKE_SIZE)
        writer.close()
        assert "Too many open files" not in log_path.read_text()
    finally:
        for _, writer in peers:
            writer.close()
        if proc.returncode is None:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 10)
