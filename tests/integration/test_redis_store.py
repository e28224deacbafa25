"""RedisStore against a real redis-server: layout, several nodes, outages, recovery."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from control_api.keys import hash_stream_key
from control_api.store import ChannelExists, ChannelStore, StoreUnavailable, open_store
from tests.redis_server import RedisServer

pytestmark = pytest.mark.integration

# A refused connection is reported at once; allow for the one retry and a slow machine.
UNAVAILABLE_WITHIN = 3.0


@pytest.fixture
async def store(redis_server: RedisServer) -> AsyncIterator[ChannelStore]:
    store = open_store(redis_server.url, Path("/nonexistent"))
    yield store
    await store.close()


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.aclose()


async def test_layout(store: ChannelStore, raw: aioredis.Redis) -> None:
    key = await store.create_channel("demo")
    record = await raw.hgetall("ms:channel:demo")
    assert record["name"] == "demo"
    assert record["key_hash"] == hash_stream_key(key)
    assert float(record["created_at"]) == float(record["key_rotated_at"])
    assert await raw.get(f"ms:keyhash:{hash_stream_key(key)}") == "demo"
    assert await raw.smembers("ms:channels") == {"demo"}


async def test_rotation_leaves_no_stale_index(store: ChannelStore, raw: aioredis.Redis) -> None:
    old = await store.create_channel("demo")
    new = await store.rotate_key("demo")
    assert await raw.exists(f"ms:keyhash:{hash_stream_key(old)}") == 0
    assert await raw.get(f"ms:keyhash:{hash_stream_key(new)}") == "demo"
    await store.delete_channel("demo")
    assert await raw.keys("ms:*") == []


async def test_stale_index_entry_admits_nothing(store: ChannelStore, raw: aioredis.Redis) -> None:
    await store.create_channel("demo")
    # An index entry whose channel record disagrees (e.g. a hand edit) must not verify.
    await raw.set(f"ms:keyhash:{hash_stream_key('forged')}", "demo")
    assert await store.channel_for_key("forged") is None


async def test_online_mark_has_a_ttl(store: ChannelStore, raw: aioredis.Redis) -> None:
    await store.mark_online("demo", "node-a", 30)
    assert await raw.get("ms:online:demo") == "node-a"
    assert 0 < await raw.pttl("ms:online:demo") <= 30_000


async def test_nodes_share_channels(redis_server: RedisServer, store: ChannelStore) -> None:
    other = open_store(redis_server.url, Path("/nonexistent"))
    try:
        key = await store.create_channel("demo")
        assert await other.channel_for_key(key) == "demo"
        new = await other.rotate_key("demo")
        assert await store.channel_for_key(key) is None
        assert await store.channel_for_key(new) == "demo"
        await other.mark_online("demo", "node-b", 30)
        assert await store.online_channels() == {"demo"}
    finally:
        await other.close()


async def test_two_nodes_racing_to_create_one_name(redis_server: RedisServer) -> None:
    nodes = [open_store(redis_server.url, Path("/nonexistent")) for _ in range(4)]
    try:
        results = await asyncio.gather(
            *(node.create_channel("race") for node in nodes for _ in range(5)),
            return_exceptions=True,
        )
    finally:
        for node in nodes:
            await node.close()
    assert sum(isinstance(r, str) for r in results) == 1
    assert sum(isinstance(r, ChannelExists) for r in results) == len(results) - 1


async def test_survives_script_cache_flush(store: ChannelStore, raw: aioredis.Redis) -> None:
    await store.create_channel("one")
    await raw.script_flush()
    await store.create_channel("two")
    assert await store.delete_channel("one")


async def _expect_unavailable(call: Awaitable[object]) -> None:
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match=r"Redis store at redis://127\.0\.0\.1"):
        await call
    assert time.monotonic() - started < UNAVAILABLE_WITHIN


async def test_outage_then_recovery_without_reopening(
    redis_server: RedisServer, store: ChannelStore
) -> None:
    key = await store.create_channel("demo")
    assert await store.channel_for_key(key) == "demo"

    redis_server.stop()
    await _expect_unavailable(store.ping())
    await _expect_unavailable(store.create_channel("other"))
    await _expect_unavailable(store.channel_for_key(key))
    await _expect_unavailable(store.list_channels())
    await _expect_unavailable(store.get_channel("demo"))
    await _expect_unavailable(store.rotate_key("demo"))
    await _expect_unavailable(store.delete_channel("demo"))
    await _expect_unavailable(store.mark_online("demo", "node-a", 5))
    await _expect_unavailable(store.mark_offline("demo"))
    await _expect_unavailable(store.online_channels())

    redis_server.start()  # same port; this test server keeps no data across restarts
    await store.ping()
    fresh = await store.create_channel("demo")
    assert await store.channel_for_key(fresh) == "demo"
    assert [c.name for c in await store.list_channels()] == ["demo"]


async def test_repeated_outages(redis_server: RedisServer, store: ChannelStore) -> None:
    for round_no in range(3):
        await store.create_channel(f"round-{round_no}")
        redis_server.stop()
        await _expect_unavailable(store.ping())
        redis_server.start()
        await store.ping()
