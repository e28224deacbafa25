"""Publish blocks that every node honours, including nodes that start later.

`DELETE /streams/{ch}?block_seconds=N` sets `ms:block:{channel}` with a TTL of N
seconds; every node's publish gate reads it before letting a publish in. The
bus also carries the block to the nodes running now, whose hubs then refuse on
their own (still in force if Redis restarts without persistence).
"""

from __future__ import annotations

import redis.asyncio as aioredis

from .keys import BLOCK_PREFIX


class Blocks:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def set(self, channel: str, seconds: float, reason: str) -> None:
        await self._redis.set(BLOCK_PREFIX + channel, reason, px=max(1, round(seconds * 1000)))

    async def remaining(self, channel: str) -> float:
        """Seconds the channel stays blocked (0 if it is not)."""
        ttl_ms = await self._redis.pttl(BLOCK_PREFIX + channel)
        return ttl_ms / 1000 if ttl_ms > 0 else 0.0
