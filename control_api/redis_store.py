"""The shared store for several nodes: channels and live status in Redis.

Layout (all keys under `ms:`):
  ms:channel:{name}   hash  name, key_hash, created_at, key_rotated_at
  ms:keyhash:{hash}   str   channel name, the index `channel_for_key` reads
  ms:channels         set   every channel name, so listing needs no SCAN
  ms:online:{name}    str   node id, with a TTL so a crashed node's streams lapse
Writes that touch several keys run as Lua scripts, which Redis executes atomically:
two nodes racing to create one name cannot both win, and a rotated key is dead the
moment the script returns.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import TypeVar
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from control_api.keys import (
    hash_stream_key,
    hashes_match,
    new_stream_key,
    usable_key,
    validate_channel_name,
)
from control_api.store import Channel, ChannelExists, ChannelNotFound, StoreUnavailable

T = TypeVar("T")

PREFIX = "ms:"
CHANNELS_SET = PREFIX + "channels"
CHANNEL_PREFIX = PREFIX + "channel:"
KEYHASH_PREFIX = PREFIX + "keyhash:"
ONLINE_PREFIX = PREFIX + "online:"

# Redis answers in well under a millisecond on a LAN; a second without an answer means
# it is gone, and an API call should fail fast with 503 rather than hang a backend.
SOCKET_TIMEOUT_SECONDS = 1.0
CONNECT_TIMEOUT_SECONDS = 1.0
# One immediate retry: after Redis restarts every pooled connection is dead, and the
# retry reconnects so the first call after an outage succeeds instead of failing.
RETRIES = 1
# Idle pooled connections are pinged before reuse after this long, catching dead ones.
HEALTH_CHECK_INTERVAL_SECONDS = 10
# Upper bound on concurrent Redis connections from one process.
MAX_CONNECTIONS = 64
# A call that finds all of them busy (a burst of publishes after a node failed) waits
# this long for one to come free instead of failing at once.
POOL_WAIT_SECONDS = 1.0
# Keys per SCAN round trip when listing online channels.
SCAN_COUNT = 500

_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
redis.call('HSET', KEYS[1], 'name', ARGV[1], 'key_hash', ARGV[2],
           'created_at', ARGV[3], 'key_rotated_at', ARGV[3])
redis.call('SET', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
return 1
"""

# The old index key is derived inside the script from the stored hash; that is fine on
# a single Redis (not Cluster), which is what this store targets.
_ROTATE = """
local old = redis.call('HGET', KEYS[1], 'key_hash')
if not old then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
redis.call('DEL', ARGV[4] .. old)
redis.call('SET', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[1], 'key_hash', ARGV[2], 'key_rotated_at', ARGV[3])
return 1
"""

_DELETE = """
local old = redis.call('HGET', KEYS[1], 'key_hash')
if not old then return 0 end
redis.call('DEL', KEYS[1], KEYS[3], ARGV[2] .. old)
redis.call('SREM', KEYS[2], ARGV[1])
return 1
"""


def describe(url: str) -> str:
    """Where the store points, without credentials, for error messages and repr."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    host = parts.hostname or "localhost"
    port = parts.port or 6379
    return f"{parts.scheme}://{host}:{port}{parts.path}"


def connect(url: str) -> aioredis.Redis:
    """A pooled client with the limits above (no I/O until first used); shared by
    the store and the cluster layer so both fail fast the same way."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        decode_responses=True,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        retry=Retry(NoBackoff(), RETRIES),
        health_check_interval=HEALTH_CHECK_INTERVAL_SECONDS,
        max_connections=MAX_CONNECTIONS,
        timeout=POOL_WAIT_SECONDS,
    )
    return aioredis.Redis.from_pool(pool)


class RedisStore:
    """ChannelStore on Redis; every Redis failure surfaces as StoreUnavailable."""

    def __init__(self, url: str) -> None:
        self._where = describe(url)
        self._client: aioredis.Redis = connect(url)
        self._create = self._client.register_script(_CREATE)
        self._rotate = self._client.register_script(_ROTATE)
        self._delete = self._client.register_script(_DELETE)

    def __repr__(self) -> str:
        return f"RedisStore({self._where!r})"

    async def _guard(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except (RedisError, OSError) as exc:  # OSError covers TimeoutError
            raise StoreUnavailable(f"Redis store at {self._where} unavailable: {exc}") from exc

    async def create_channel(self, name: str) -> str:
        validate_channel_name(name)
        key = new_stream_key()
        key_hash = hash_stream_key(key)
        keys = [CHANNEL_PREFIX + name, KEYHASH_PREFIX + key_hash, CHANNELS_SET]
        args = [name, key_hash, repr(time.time())]
        result = await self._guard(self._create(keys=keys, args=args))
        if result == 0:
            raise ChannelExists(f"channel {name!r} already exists")
        if result != 1:
            raise StoreUnavailable("stream key hash collision; try again")
        return key

    async def get_channel(self, name: str) -> Channel | None:
        fields = await self._guard(
            self._client.hmget(CHANNEL_PREFIX + name, ["created_at", "key_rotated_at"])
        )
        return _channel(name, [_text(field) for field in fields])

    async def list_channels(self) -> list[Channel]:
        async def fetch() -> list[Channel]:
            names = sorted(
                str(_text(member)) for member in await self._client.smembers(CHANNELS_SET)
            )
            if not names:
                return []
            async with self._client.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.hmget(CHANNEL_PREFIX + name, ["created_at", "key_rotated_at"])
                rows = await pipe.execute()
            found = (
                _channel(name, [_text(field) for field in fields])
                for name, fields in zip(names, rows, strict=True)
            )
            return [channel for channel in found if channel is not None]

        return await self._guard(fetch())

    async def rotate_key(self, name: str) -> str:
        key = new_stream_key()
        key_hash = hash_stream_key(key)
        keys = [CHANNEL_PREFIX + name, KEYHASH_PREFIX + key_hash]
        args = [name, key_hash, repr(time.time()), KEYHASH_PREFIX]
        result = await self._guard(self._rotate(keys=keys, args=args))
        if result == 0:
            raise ChannelNotFound(f"channel {name!r} does not exist")
        if result != 1:
            raise StoreUnavailable("stream key hash collision; try again")
        return key

    async def delete_channel(self, name: str) -> bool:
        keys = [CHANNEL_PREFIX + name, CHANNELS_SET, ONLINE_PREFIX + name]
        result = await self._guard(self._delete(keys=keys, args=[name, KEYHASH_PREFIX]))
        return bool(result == 1)

    async def channel_for_key(self, stream_key: str) -> str | None:
        key = usable_key(stream_key)
        if key is None:
            return None
        key_hash = hash_stream_key(key)

        async def lookup() -> str | None:
            name = _text(await self._client.get(KEYHASH_PREFIX + key_hash))
            if name is None:
                return None
            # Confirm against the channel record, so a stale index entry never admits a key.
            stored = _text(await self._client.hget(CHANNEL_PREFIX + name, "key_hash"))
            if stored is None or not hashes_match(key_hash, stored):
                return None
            return name

        return await self._guard(lookup())

    async def mark_online(self, name: str, node: str, ttl_seconds: float) -> None:
        if not ttl_seconds > 0:
            raise ValueError("ttl_seconds must be positive")
        ttl_ms = max(1, round(ttl_seconds * 1000))
        await self._guard(self._client.set(ONLINE_PREFIX + name, node, px=ttl_ms))

    async def mark_offline(self, name: str) -> None:
        await self._guard(self._client.delete(ONLINE_PREFIX + name))

    async def online_channels(self) -> set[str]:
        async def scan() -> set[str]:
            found: set[str] = set()
            async for key in self._client.scan_iter(match=ONLINE_PREFIX + "*", count=SCAN_COUNT):
                found.add(str(_text(key))[len(ONLINE_PREFIX) :])
            return found

        return await self._guard(scan())

    async def ping(self) -> None:
        await self._guard(self._client.ping())

    async def close(self) -> None:
        await self._client.aclose()


def _text(value: bytes | str | None) -> str | None:
    """A reply as text; the client decodes already, this only satisfies the types."""
    return value.decode() if isinstance(value, bytes) else value


def _channel(name: str, fields: list[str | None]) -> Channel | None:
    created_at, rotated_at = fields
    if created_at is None or rotated_at is None:
        return None
    return Channel(name=name, created_at=float(created_at), key_rotated_at=float(rotated_at))
