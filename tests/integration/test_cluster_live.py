"""Several nodes on one real redis-server, with real ffmpeg publishers.

Most nodes run in this test's loop (a MediaServer each, on its own ports); where
a node must be frozen or killed outright, it is a `mediaserver serve` subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from benchmarks.servers import OurServer
from mediaserver.app import MediaServer
from mediaserver.cluster.registry import LOCATE_CACHE_SECONDS, NODE_TTL_SECONDS
from tests.live import (
    api_call,
    http_url,
    metric_samples,
    publish,
    publish_refused,
    publishing,
    rtmp_url,
    running_server,
    stop_process,
    wait_for,
)
from tests.m3u8 import Playlist, parse_playlist
from tests.redis_server import RedisServer

pytestmark = pytest.mark.integration

TOKEN = "cluster-token"
# Polling adds a little to any measured delay.
POLL_SLACK = 0.5


@contextlib.asynccontextmanager
async def nodes(tmp_path: Path, redis_url: str, count: int,
                **options: Any) -> AsyncIterator[list[MediaServer]]:
    """`count` in-process nodes sharing the Redis store."""
    async with contextlib.AsyncExitStack() as stack:
        servers = [await stack.enter_async_context(
            running_server(tmp_path / f"node{i}", store=redis_url, api_token=TOKEN, **options))
            for i in range(count)]
        yield servers


@contextlib.asynccontextmanager
async def subprocess_node(redis_url: str, *args: str) -> AsyncIterator[tuple[OurServer, str]]:
    """A `mediaserver serve` process on the store, and its node id."""
    node = OurServer(cpu=None, extra_args=["--store", redis_url, *args])
    await node.start()
    try:
        joined = await wait_for(lambda: re.search(r"cluster: node (\S+) joins", node.log_text()),
                                timeout=10, what="the node to join")
        yield node, joined[1]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(node.pid, signal.SIGCONT)
        await node.stop()


@contextlib.asynccontextmanager
async def process_and_node(tmp_path: Path, redis_url: str
                           ) -> AsyncIterator[tuple[OurServer, str, MediaServer, str]]:
    """A `mediaserver serve` process (to stop or kill for real) and an in-process node on
    one store, with channel cam1: (the process, its node id, the node, cam1's key)."""
    async with subprocess_node(redis_url) as (process, process_id), \
            nodes(tmp_path, redis_url, 1) as (node,):
        key = await node.store.create_channel("cam1")  # type: ignore[union-attr]
        yield process, process_id, node, key


def rtmp_of(process: OurServer, key: str) -> str:
    return f"rtmp://127.0.0.1:{process.rtmp_port}/live/{key}"


def node_url(port: int, path: str) -> str:
    return f"http://127.0.0.1:{port}{path}"


async def api(session: aiohttp.ClientSession, server: MediaServer, method: str, path: str,
              **kwargs: Any) -> tuple[int, Any]:
    return await api_call(session, server, method, path, TOKEN, **kwargs)


async def playlist_at(session: aiohttp.ClientSession, url: str) -> Playlist | None:
    with contextlib.suppress(aiohttp.ClientError):
        async with session.get(url) as response:
            if response.status == 200:
                return parse_playlist(await response.text())
    return None


async def streams_seen(session: aiohttp.ClientSession, server: MediaServer) -> dict[str, str]:
    """channel -> publisher address, from a node's GET /streams."""
    status, body = await api(session, server, "GET", "/streams")
    assert status == 200, body
    return {stream["channel"]: stream["publisher"] for stream in body["streams"]}


async def channel_live(session: aiohttp.ClientSession, server: MediaServer, name: str) -> bool:
    status, body = await api(session, server, "GET", f"/channels/{name}")
    assert status == 200, body
    return bool(body["live"])


async def test_a_node_registers_and_drops_out_within_the_ttl_once_it_stops_heartbeating(
        tmp_path: Path, clip: Path, redis_server: RedisServer, raw: aioredis.Redis,
        session: aiohttp.ClientSession) -> None:
    async with subprocess_node(redis_server.url) as (frozen, frozen_id), \
            nodes(tmp_path, redis_server.url, 1) as (watcher,):
        record = await raw.hgetall(f"ms:node:{frozen_id}")
        assert record["address"] == f"http://127.0.0.1:{frozen.http_port}"
        assert int(record["pid"]) == frozen.pid
        assert float(record["started_at"]) <= time.time()
        await wait_for(lambda: _members(raw, {frozen_id, watcher._node}), timeout=3,
                       what="both nodes in ms:nodes")

        key = await watcher.store.create_channel("cam1")  # type: ignore[union-attr]
        async with publishing(f"rtmp://127.0.0.1:{frozen.rtmp_port}/live/{key}", clip,
                              loops=3):
            await wait_for(lambda: _is(raw, "ms:online:cam1", frozen_id), timeout=10,
                           what="the channel's origin record")
            assert await watcher.cluster_locate("cam1") == record["address"]  # type: ignore[misc]
            assert await channel_live(session, watcher, "cam1")
            await wait_for(lambda: _listed(session, watcher, "cam1"), timeout=3,
                           what="the stream in the watcher's /streams")

            os.kill(frozen.pid, signal.SIGSTOP)  # alive, but silent: no more heartbeats
            stopped = time.monotonic()
            await wait_for(lambda: _gone(raw, f"ms:node:{frozen_id}"), timeout=10,
                           interval=0.02, what="the frozen node's record to lapse")
            dropped_out = time.monotonic() - stopped
            await wait_for(lambda: _gone(raw, "ms:online:cam1"), timeout=10, interval=0.02,
                           what="its channel to go offline")
            offline = time.monotonic() - stopped
            assert not await channel_live(session, watcher, "cam1")
            assert await streams_seen(session, watcher) == {}
            await wait_for(lambda: _located(watcher, "cam1", None),
                           timeout=LOCATE_CACHE_SECONDS + POLL_SLACK, what="locate to forget")
            print(f"frozen node dropped out after {dropped_out:.2f}s, "
                  f"channel offline after {offline:.2f}s")
            assert dropped_out <= NODE_TTL_SECONDS + 0.1
            assert offline <= NODE_TTL_SECONDS + 0.1

        os.kill(frozen.pid, signal.SIGCONT)  # back: it joins again at its next heartbeat
        await wait_for(lambda: _exists(raw, f"ms:node:{frozen_id}"), timeout=5,
                       what="the node to rejoin")


async def test_a_node_registers_the_address_it_advertises(
        tmp_path: Path, redis_server: RedisServer, raw: aioredis.Redis) -> None:
    async with nodes(tmp_path, redis_server.url, 1, advertise="media1.example:9000") as (node,):
        await wait_for(lambda: _exists(raw, f"ms:node:{node._node}"), timeout=5,
                       what="its record")
        record = await raw.hgetall(f"ms:node:{node._node}")
        assert record["address"] == "http://media1.example:9000"


async def test_kick_rotate_delete_and_block_through_another_node(
        tmp_path: Path, clip: Path, redis_server: RedisServer,
        session: aiohttp.ClientSession) -> None:
    async with nodes(tmp_path, redis_server.url, 3) as (origin, other, asker):
        keys = {name: (await api(session, asker, "POST", "/channels", json={"name": name}))[1]
                ["stream_key"] for name in ("cam1", "cam2", "cam3")}

        async with publishing(rtmp_url(origin, keys["cam1"]), clip, loops=2) as encoder:
            await wait_for(lambda: origin.hub.is_live("cam1"), timeout=10, what="live")
            await wait_for(lambda: channel_live(session, asker, "cam1"), timeout=3,
                           what="live as seen from another node")
            status, body = await api(session, asker, "DELETE", "/streams/cam1")
            assert (status, body["kicked"]) == (200, True)
            assert not origin.hub.is_live("cam1")  # done by the time the API answered
            await asyncio.wait_for(encoder.wait(), timeout=8)  # the encoder was dropped
        status, body = await api(session, asker, "DELETE", "/streams/cam1")
        assert (status, body["error"]["code"]) == (404, "stream_not_live")

        async with publishing(rtmp_url(origin, keys["cam2"]), clip, loops=2):
            await wait_for(lambda: origin.hub.is_live("cam2"), timeout=10, what="cam2 live")
            await wait_for(lambda: _is_live(asker, "cam2"), timeout=3, what="seen elsewhere")
            status, _ = await api(session, asker, "POST", "/channels/cam2/key")
            assert status == 200 and not origin.hub.is_live("cam2")  # rotation kicked it
        async with publishing(rtmp_url(origin, keys["cam3"]), clip, loops=2):
            await wait_for(lambda: origin.hub.is_live("cam3"), timeout=10, what="cam3 live")
            await wait_for(lambda: _is_live(asker, "cam3"), timeout=3, what="seen elsewhere")
            status, _ = await api(session, asker, "DELETE", "/channels/cam3")
            assert status == 204 and not origin.hub.is_live("cam3")  # deletion kicked it

        status, body = await api(session, asker, "DELETE", "/streams/cam1",
                                 params={"block_seconds": "60"})
        assert (status, body["kicked"]) == (200, False)
        assert await publish_refused(rtmp_url(other, keys["cam1"]), clip)
        assert other.rtmp is not None and other.rtmp.publish_results.get("blocked") == 1
        # A node that starts after the block was set honours it too.
        async with nodes(tmp_path / "later", redis_server.url, 1) as (later,):
            assert await publish_refused(rtmp_url(later, keys["cam1"]), clip)
            assert later.rtmp is not None and later.rtmp.publish_results.get("blocked") == 1


async def test_a_publish_on_another_node_takes_the_channel_over(
        tmp_path: Path, clip: Path, redis_server: RedisServer, raw: aioredis.Redis,
        session: aiohttp.ClientSession) -> None:
    async with nodes(tmp_path, redis_server.url, 2) as (first, second):
        key = await first.store.create_channel("cam1")  # type: ignore[union-attr]
        old = await publish(rtmp_url(first, key), clip, loops=3)
        new = None
        try:
            before = await wait_for(lambda: _segments(session, first, "cam1", 2), timeout=15,
                                    what="two segments on the first node")
            new = await publish(rtmp_url(second, key), clip, loops=3)
            await asyncio.wait_for(old.wait(), timeout=8)  # closed through the bus
            await wait_for(lambda: second.hub.is_live("cam1"), timeout=5, what="second live")
            assert "cam1" not in first.hub.channels  # its copy went with the publisher
            await wait_for(lambda: _is(raw, "ms:online:cam1", second._node), timeout=3,
                           what="the second node as origin")
            await wait_for(lambda: _located(first, "cam1", _base(second)),
                           timeout=LOCATE_CACHE_SECONDS + POLL_SLACK, what="locate to follow")
            after = await wait_for(lambda: _segments(session, second, "cam1", 1), timeout=15,
                                   what="a segment on the second node")
            # One playlist, carried on: numbering continues with a DISCONTINUITY.
            assert after.segments[0].sequence > before.segments[-1].sequence
            assert after.segments[0].discontinuity
            assert after.target_duration == before.target_duration
        finally:
            await stop_process(old)
            if new is not None:
                await stop_process(new)


async def test_duplicate_publish_reject_refuses_on_another_node(
        tmp_path: Path, clip: Path, redis_server: RedisServer) -> None:
    async with nodes(tmp_path, redis_server.url, 2, duplicate_publish="reject") as (
            first, second):
        key = await first.store.create_channel("cam1")  # type: ignore[union-attr]
        async with publishing(rtmp_url(first, key), clip, loops=2) as encoder:
            await wait_for(lambda: first.hub.is_live("cam1"), timeout=10, what="live")
            assert await publish_refused(rtmp_url(second, key), clip)
            assert second.rtmp is not None
            assert second.rtmp.publish_results.get("duplicate") == 1
            assert first.hub.is_live("cam1") and encoder.returncode is None  # the first stays


async def test_every_node_lists_every_stream_and_metrics_say_which_node(
        tmp_path: Path, clip: Path, redis_server: RedisServer, raw: aioredis.Redis,
        session: aiohttp.ClientSession) -> None:
    async with nodes(tmp_path, redis_server.url, 3) as (a, b, c):
        key1 = await a.store.create_channel("cam1")  # type: ignore[union-attr]
        key2 = await a.store.create_channel("cam2")  # type: ignore[union-attr]
        async with publishing(rtmp_url(a, key1), clip, loops=2), \
                publishing(rtmp_url(b, key2), clip, loops=2):
            await wait_for(lambda: a.hub.is_live("cam1") and b.hub.is_live("cam2"),
                           timeout=10, what="both live")
            expected = {"cam1": a.hub.publishers()[0].peer, "cam2": b.hub.publishers()[0].peer}
            for node in (a, b, c):
                await wait_for(lambda node=node: _streams_are(session, node, expected),
                               timeout=3, what="every stream listed on every node")
                assert await channel_live(session, node, "cam1")
                assert await channel_live(session, node, "cam2")

            async with session.get(http_url(a, "/metrics")) as response:
                samples = metric_samples(await response.text())
            assert samples[("mediaserver_live_streams", (("node", a._node),))] == 1
            assert ("mediaserver_stream_bitrate_bits_per_second",
                    (("channel", "cam1"), ("node", a._node))) in samples
            assert samples[("mediaserver_cluster_heartbeats_total", (("node", a._node),))] > 0
            assert not any("node" not in dict(labels) for name, labels in samples), sorted(
                name for name, labels in samples if "node" not in dict(labels))
            assert samples[("process_open_fds", (("node", a._node),))] > 0
            assert any(name == "python_info" and ("node", a._node) in labels
                       for name, labels in samples)

        await a.stop()  # a clean stop leaves at once rather than lapsing
        assert await raw.exists(f"ms:node:{a._node}") == 0
        assert a._node not in await raw.smembers("ms:nodes")


async def test_failover_after_sigkill_carries_the_playlist_on(
        tmp_path: Path, clip: Path, redis_server: RedisServer, raw: aioredis.Redis,
        session: aiohttp.ClientSession) -> None:
    async with process_and_node(tmp_path, redis_server.url) as (
            doomed, doomed_id, survivor, key):
        playlist_url = node_url(doomed.http_port, "/live/cam1/index.m3u8")
        async with publishing(rtmp_of(doomed, key), clip, loops=3):
            before: Playlist = await wait_for(
                lambda: _min_segments(playlist_at(session, playlist_url), 3), timeout=20,
                what="three segments on the doomed node")
            os.kill(doomed.pid, signal.SIGKILL)
            killed = time.monotonic()
        # A dead node's channels go offline within the TTL, for the API of every node.
        await wait_for(lambda: _gone(raw, "ms:online:cam1"), timeout=10, interval=0.02,
                       what="the dead node's channel to go offline")
        offline = time.monotonic() - killed
        assert offline <= NODE_TTL_SECONDS + 0.1, offline
        assert not await channel_live(session, survivor, "cam1")
        assert await streams_seen(session, survivor) == {}
        state = await raw.hgetall("ms:resume:cam1")
        assert state["node"] == doomed_id
        carried_from = int(state["next_sequence"])
        assert carried_from > before.segments[-1].sequence

        # The encoder reconnects, to the other node, within the grace period.
        async with publishing(rtmp_url(survivor, key), clip, loops=2):
            after = await wait_for(lambda: _segments(session, survivor, "cam1", 1),
                                   timeout=20, what="a segment on the survivor")
            recovered = time.monotonic() - killed
        first = after.segments[0]
        assert first.sequence == carried_from  # continues right after the doomed node's last
        assert first.discontinuity
        before_numbers = before.discontinuity_numbers()
        assert after.discontinuity_numbers()[0] == before_numbers[-1] + 1
        assert after.target_duration == before.target_duration
        assert await raw.get("ms:online:cam1") == survivor._node
        print(f"channel offline {offline:.2f}s after the kill; playlist carried on from "
              f"sequence {carried_from} after {recovered:.2f}s")


async def test_edge_redirect_sends_viewers_to_the_node_holding_the_publisher(
        tmp_path: Path, clip: Path, redis_server: RedisServer,
        session: aiohttp.ClientSession) -> None:
    async with nodes(tmp_path, redis_server.url, 2, edge="redirect") as (origin, other):
        key = await origin.store.create_channel("cam1")  # type: ignore[union-attr]
        async with publishing(rtmp_url(origin, key), clip, loops=2):
            playlist = await wait_for(lambda: _segments(session, origin, "cam1", 1), timeout=15,
                                      what="a segment on the origin")
            await wait_for(lambda: _located(other, "cam1", _base(origin)), timeout=3,
                           what="the other node to locate it")
            for path in ("/live/cam1/index.m3u8?player=x", "/live/cam1/ll.m3u8?_HLS_skip=YES",
                         f"/live/cam1/{playlist.segments[0].uri}", "/live/cam1/thumbnail.jpg"):
                async with session.get(http_url(other, path), allow_redirects=False) as response:
                    assert response.status == 302, path
                    assert response.headers["Location"] == _base(origin) + path
            async with session.get(http_url(other, "/live/cam1/index.m3u8")) as response:
                assert response.status == 200 and str(response.url).startswith(_base(origin))
                assert parse_playlist(await response.text()).segments
            # Its dashboard cannot follow a redirect to another origin: it links there.
            async with session.get(http_url(other, "/dashboard/streams.json")) as response:
                [card] = (await response.json())["streams"]
            assert (card["node"], card["node_url"]) == (origin._node, _base(origin) + "/")
            assert card["playback_url"] is None
        assert other.edge is not None and other.edge.stats.redirects == 5


async def test_a_redis_outage_leaves_live_streams_alone(
        tmp_path: Path, clip: Path, redis_server: RedisServer, raw: aioredis.Redis,
        session: aiohttp.ClientSession) -> None:
    async with nodes(tmp_path, redis_server.url, 2) as (origin, other):
        key = await origin.store.create_channel("cam1")  # type: ignore[union-attr]
        async with publishing(rtmp_url(origin, key), clip, loops=3):
            await wait_for(lambda: _segments(session, origin, "cam1", 1), timeout=15,
                           what="a segment")
            await wait_for(lambda: _located(other, "cam1", _base(origin)), timeout=3,
                           what="the other node to locate it")
            redis_server.stop()
            cluster = origin.cluster
            assert cluster is not None
            await wait_for(lambda: cluster.registry.stats.heartbeat_failures > 0, timeout=5,
                           what="a failed heartbeat")
            seen = await _segments(session, origin, "cam1", 1)
            assert seen is not None
            produced = seen.segments[-1].sequence
            await wait_for(lambda: _newer(session, origin, "cam1", produced + 2), timeout=10,
                           what="two more segments while Redis is down")
            async with session.get(http_url(origin, "/healthz")) as response:
                assert response.status == 200
            assert await streams_seen(session, origin) == {"cam1": origin.hub.publishers()[0].peer}
            assert await streams_seen(session, other) == {}  # it only knows its own now
            assert await other.cluster_locate("cam1") == _base(origin)  # type: ignore[misc]

            redis_server.start()  # same port, empty: the nodes write themselves back
            await wait_for(lambda: _is(raw, "ms:online:cam1", origin._node), timeout=5,
                           what="the origin record back")
            await wait_for(lambda: _exists(raw, f"ms:node:{other._node}"), timeout=5,
                           what="the other node back")
            await wait_for(lambda: _listed(session, other, "cam1"), timeout=5,
                           what="the stream listed elsewhere again")
            assert origin.hub.is_live("cam1")

            # Down again: a kick that needs no other node works; one that does is a 503.
            redis_server.stop()
            status, body = await api(session, other, "DELETE", "/streams/cam1")
            assert (status, body["error"]["code"]) == (503, "store_unavailable")
            status, body = await api(session, origin, "DELETE", "/streams/cam1")
            assert (status, body["kicked"]) == (200, True)
            assert not origin.hub.is_live("cam1")


# ---- small polls ------------------------------------------------------------------------


def _base(server: MediaServer) -> str:
    host, port = server.node_address
    return f"http://{host}:{port}"


async def _is(raw: aioredis.Redis, key: str, value: str) -> bool:
    return await raw.get(key) == value


async def _exists(raw: aioredis.Redis, key: str) -> bool:
    return bool(await raw.exists(key))


async def _gone(raw: aioredis.Redis, key: str) -> bool:
    return not await raw.exists(key)


async def _members(raw: aioredis.Redis, expected: set[str]) -> bool:
    return expected <= await raw.smembers("ms:nodes")


async def _located(server: MediaServer, channel: str, expected: str | None) -> bool:
    assert server.cluster_locate is not None
    return await server.cluster_locate(channel) == expected


async def _is_live(server: MediaServer, channel: str) -> bool:
    assert server.cluster is not None
    return await server.cluster.live.is_live(channel)


async def _listed(session: aiohttp.ClientSession, server: MediaServer, channel: str) -> bool:
    return channel in await streams_seen(session, server)


async def _streams_are(session: aiohttp.ClientSession, server: MediaServer,
                       expected: dict[str, str]) -> bool:
    return await streams_seen(session, server) == expected


async def _segments(session: aiohttp.ClientSession, server: MediaServer, channel: str,
                    count: int) -> Playlist | None:
    found = await playlist_at(session, http_url(server, f"/live/{channel}/index.m3u8"))
    return found if found is not None and len(found.segments) >= count else None


async def _min_segments(fetch: Any, count: int) -> Playlist | None:
    found = await fetch
    return found if found is not None and len(found.segments) >= count else None


async def _newer(session: aiohttp.ClientSession, server: MediaServer, channel: str,
                 sequence: int) -> bool:
    found = await _segments(session, server, channel, 1)
    return found is not None and found.segments[-1].sequence >= sequence

