"""The registry: which nodes are alive, and which node holds each channel's publisher.

Each node renews, in one Lua call per heartbeat, its own record, its streams'
stats and the origin record (`ms:online:{channel}` -> node id) of every channel
it publishes, all with a TTL of NODE_TTL_SECONDS: a node that stops (crash,
SIGKILL, cut off from Redis) drops out, and its channels go offline, within it.

Who holds a channel is decided by claims: a node that starts a publish claims the
channel outright (the newest publish wins, as a takeover does on one node); a
heartbeat only renews a record that is still its own. A heartbeat that finds
another node's id on a channel it thought it held reports it (`on_lost`): that
node took the channel over while the message telling us so was lost.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from control_api.live import StreamStats

from .keys import NODE_PREFIX, NODES_SET, ONLINE_PREFIX, STREAMS_PREFIX
from .records import RecordError, stats_from_json, stats_to_json

log = logging.getLogger("mediaserver.cluster.registry")

# A node (and its channels) counts as gone this long after its last heartbeat.
# Five heartbeats: one slow Redis round trip or a GC pause never drops a live node,
# and viewers of a crashed node's channels wait at most this long to hear it.
NODE_TTL_SECONDS = 5.0
HEARTBEAT_SECONDS = 1.0
# locate() answers from memory for this long. Every playlist request for a channel
# held elsewhere asks it, so without the cache Redis would see one lookup per
# viewer per segment; with it, at most one per channel per node per second. A
# failover already takes up to NODE_TTL_SECONDS to notice, so one more second of
# a stale answer costs little.
LOCATE_CACHE_SECONDS = 1.0
# Channels remembered by the locate cache; viewers may ask for any name, and this
# bounds what they can make a node remember.
LOCATE_CACHE_MAX = 10_000
# How long a release waits to be written when its caller must know it is (a node
# answering a handoff), and the pause before writing again after a failure.
WRITE_WAIT_SECONDS = 0.5
WRITE_RETRY_SECONDS = 1.0

# KEYS: node record, node set, node's streams. ARGV: id, ttl ms, address, pid,
# started_at, online prefix, then (channel, stats JSON) pairs of the channels this
# node believes it holds. Returns (channel, holder) pairs held by other nodes.
_HEARTBEAT = """
redis.call('HSET', KEYS[1], 'address', ARGV[3], 'pid', ARGV[4], 'started_at', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[3])
local lost = {}
for i = 7, #ARGV, 2 do
  local key = ARGV[6] .. ARGV[i]
  local holder = redis.call('GET', key)
  if (not holder) or holder == ARGV[1] then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
    redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  else
    lost[#lost + 1] = ARGV[i]
    lost[#lost + 1] = holder
  end
end
redis.call('PEXPIRE', KEYS[3], ARGV[2])
return lost
"""

# KEYS: online record, node set. ARGV: node prefix, streams prefix, channel. The holder
# and its address, if it is alive. Without an origin record (the store deletes it with
# the channel, before the kick that must still find the publisher), a node whose last
# heartbeat listed the stream holds it.
_LOOKUP = """
local holder = redis.call('GET', KEYS[1])
if not holder then
  for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    if redis.call('HEXISTS', ARGV[2] .. id, ARGV[3]) == 1 then
      holder = id
      break
    end
  end
  if not holder then return false end
end
local address = redis.call('HGET', ARGV[1] .. holder, 'address')
if not address then return false end
return {holder, address}
"""

# KEYS: online record, node's streams. ARGV: id, ttl ms, channel, stats JSON (or "").
# The stream is listed at once, not at the next heartbeat: lookups fall back on it.
_CLAIM = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return 1
"""

# KEYS: online record, node's streams. ARGV: id, channel. Lets go only of our own.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('HDEL', KEYS[2], ARGV[2])
return 1
"""

# KEYS: node set. ARGV: node prefix, streams prefix, online prefix, own id. (node id,
# its address, stats) of every other live node's streams that it still holds; lapsed
# nodes are pruned.
_REMOTE_STREAMS = """
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. id) == 0 then
    redis.call('SREM', KEYS[1], id)
  elseif id ~= ARGV[4] then
    local address = redis.call('HGET', ARGV[1] .. id, 'address') or ''
    local entries = redis.call('HGETALL', ARGV[2] .. id)
    for i = 1, #entries, 2 do
      if redis.call('GET', ARGV[3] .. entries[i]) == id then
        out[#out + 1] = id
        out[#out + 1] = address
        out[#out + 1] = entries[i + 1]
      end
    end
  end
end
return out
"""


@dataclass(frozen=True, slots=True)
class RemoteStream:
    """A live stream another node holds, as of that node's last heartbeat."""

    node: str  # its id
    address: str  # its base URL, as it advertises it to other nodes
    stats: StreamStats


class _Miss:
    __slots__ = ()


MISS: Final = _Miss()


class LocateCache:
    """Channel -> origin URL (or None) for a short while; the oldest go past `max_entries`.

    An expired answer is kept as a fallback for when Redis cannot be asked.
    """

    def __init__(self, ttl: float = LOCATE_CACHE_SECONDS, max_entries: int = LOCATE_CACHE_MAX,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[str | None, float]] = OrderedDict()

    def get(self, channel: str) -> str | _Miss | None:
        entry = self._entries.get(channel)
        if entry is None or entry[1] <= self._clock():
            return MISS
        return entry[0]

    def stale(self, channel: str) -> str | None:
        """The last answer, however old (None if there was none)."""
        entry = self._entries.get(channel)
        return entry[0] if entry is not None else None

    def put(self, channel: str, url: str | None) -> None:
        self._entries[channel] = (url, self._clock() + self.ttl)
        self._entries.move_to_end(channel)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def forget(self, channel: str) -> None:
        self._entries.pop(channel, None)

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(slots=True)
class RegistryStats:
    heartbeats: int = 0
    heartbeat_failures: int = 0
    locate_lookups: int = 0  # answered from Redis
    locate_cache_hits: int = 0
    bad_records: int = 0  # other nodes' records that could not be read
    channels_lost: int = 0  # taken over elsewhere, noticed by a heartbeat


class Registry:
    """This node's record and claims in Redis, and lookups of the other nodes'."""

    def __init__(
        self,
        redis: aioredis.Redis,
        node: str,
        address: Callable[[], str],
        local_streams: Callable[[], list[StreamStats]],
        stream_stats: Callable[[str], StreamStats | None],
        on_lost: Callable[[str, str], None],
        ttl: float = NODE_TTL_SECONDS,
    ) -> None:
        self._redis = redis
        self.node = node
        self._address = address
        self._local_streams = local_streams
        self._stream_stats = stream_stats
        self._on_lost = on_lost
        self._ttl_ms = max(1, round(ttl * 1000))
        self.started_at = time.time()
        self.stats = RegistryStats()
        self.cache = LocateCache()
        self._heartbeat = redis.register_script(_HEARTBEAT)
        self._lookup = redis.register_script(_LOOKUP)
        self._claim = redis.register_script(_CLAIM)
        self._release = redis.register_script(_RELEASE)
        self._remote_streams = redis.register_script(_REMOTE_STREAMS)
        self._wanted: set[str] = set()  # live here: this node should hold them
        self._claimed: set[str] = set()  # claimed in Redis; renewed by heartbeats
        self._dirty: set[str] = set()  # to claim or release (per _wanted) in Redis
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._inflight: dict[str, asyncio.Task[str | None]] = {}

    # ---- heartbeat -----------------------------------------------------------------

    async def run(self) -> None:
        """Heartbeat forever; a Redis outage is logged once and ridden out."""
        failing = False
        while True:
            try:
                await self.heartbeat()
                if failing:
                    log.info("cluster: heartbeat to Redis works again")
                    failing = False
            except (RedisError, OSError) as exc:
                self.stats.heartbeat_failures += 1
                if not failing:
                    log.warning("cluster: heartbeat failed (retrying every %.0fs; this node "
                                "drops out of the cluster after %.0fs): %s",
                                HEARTBEAT_SECONDS, self._ttl_ms / 1000, exc)
                    failing = True
            await asyncio.sleep(HEARTBEAT_SECONDS)

    async def heartbeat(self) -> None:
        """One round: node record, streams and origin records, in one Redis call."""
        args: list[str] = [self.node, str(self._ttl_ms), self._address(), str(os.getpid()),
                           repr(self.started_at), ONLINE_PREFIX]
        for stats in self._local_streams():
            if stats.channel in self._claimed:
                args += [stats.channel, stats_to_json(stats)]
        keys = [NODE_PREFIX + self.node, NODES_SET, STREAMS_PREFIX + self.node]
        lost = await self._heartbeat(keys=keys, args=args)
        self.stats.heartbeats += 1
        for channel, holder in zip(lost[::2], lost[1::2], strict=True):
            if channel in self._claimed:
                self.stats.channels_lost += 1
                self._wanted.discard(channel)
                self._claimed.discard(channel)
                self._on_lost(channel, holder)

    async def deregister(self) -> None:
        """Leave at once (a clean stop), rather than lapsing after the TTL."""
        channels = sorted(self._claimed)
        self._wanted.clear()
        self._claimed.clear()
        async with self._redis.pipeline(transaction=False) as pipe:
            for channel in channels:
                await self._release(keys=[ONLINE_PREFIX + channel, STREAMS_PREFIX + self.node],
                                    args=[self.node, channel], client=pipe)
            pipe.delete(NODE_PREFIX + self.node, STREAMS_PREFIX + self.node)
            pipe.srem(NODES_SET, self.node)
            await pipe.execute()

    # ---- claims ------------------------------------------------------------------------
    # Claims and releases only mark a channel; one writer task brings Redis in line
    # with what is wanted now, every marked channel in one round trip. A burst of
    # publishes (a failed node's encoders all reconnecting here) costs a few round
    # trips, and a release can never overtake the claim it follows.

    def claim(self, channel: str) -> None:
        """A publish started here: this node is the channel's origin from now on."""
        self._wanted.add(channel)
        self.cache.forget(channel)
        self._mark(channel)

    def release_soon(self, channel: str) -> None:
        """The publish here ended: let go of the origin record, if it is still ours."""
        self._wanted.discard(channel)
        self._claimed.discard(channel)
        self._mark(channel)

    async def release(self, channel: str, timeout: float = WRITE_WAIT_SECONDS) -> None:
        """release_soon(), then wait (bounded) until Redis has it."""
        self.release_soon(channel)
        await self.drain(timeout)

    def _mark(self, channel: str) -> None:
        self._dirty.add(channel)
        self._idle.clear()
        self._wake.set()

    async def drain(self, timeout: float) -> bool:
        """Wait until every claim and release is written; False if not within `timeout`."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def run_writes(self) -> None:
        """The writer of claims and releases; retries after a failure."""
        failing = False
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._dirty:
                batch, self._dirty = self._dirty, set()
                try:
                    await self._write(batch)
                except (RedisError, OSError) as exc:
                    self._dirty |= batch
                    if not failing:
                        log.warning("cluster: cannot claim or release channels (retrying): %s",
                                    exc)
                        failing = True
                    await asyncio.sleep(WRITE_RETRY_SECONDS)
                    continue
                if failing:
                    log.info("cluster: claims and releases reach Redis again")
                    failing = False
            self._idle.set()

    async def _write(self, batch: set[str]) -> None:
        claimed = [channel for channel in batch if channel in self._wanted]
        async with self._redis.pipeline(transaction=False) as pipe:
            for channel in batch:
                keys = [ONLINE_PREFIX + channel, STREAMS_PREFIX + self.node]
                if channel in self._wanted:
                    stats = self._stream_stats(channel)
                    await self._claim(keys=keys, args=[
                        self.node, self._ttl_ms, channel, stats_to_json(stats) if stats else ""],
                        client=pipe)
                else:
                    await self._release(keys=keys, args=[self.node, channel], client=pipe)
            await pipe.execute()
        # Released meanwhile: marked again, and released at the writer's next round.
        self._claimed.update(channel for channel in claimed if channel in self._wanted)

    # ---- lookups -----------------------------------------------------------------------

    async def holder(self, channel: str) -> tuple[str, str] | None:
        """(node id, base URL) of the live node holding the channel, if any."""
        found = await self._lookup(keys=[ONLINE_PREFIX + channel, NODES_SET],
                                   args=[NODE_PREFIX, STREAMS_PREFIX, channel])
        if not found:
            return None
        return str(found[0]), str(found[1])

    async def alive(self, node: str) -> bool:
        """Whether the node's record is still there (it heartbeated within the TTL)."""
        return bool(await self._redis.exists(NODE_PREFIX + node))

    async def locate(self, channel: str) -> str | None:
        """The origin's base URL when another live node holds the channel, else None."""
        cached = self.cache.get(channel)
        if not isinstance(cached, _Miss):
            self.stats.locate_cache_hits += 1
            return cached
        # Viewers arriving together share one lookup, run as its own task so that a
        # viewer who goes away (its request cancelled) cancels nobody else's answer.
        lookup = self._inflight.get(channel)
        if lookup is None:
            lookup = asyncio.get_running_loop().create_task(self._locate(channel))
            self._inflight[channel] = lookup
            lookup.add_done_callback(lambda _: self._inflight.pop(channel, None))
        return await asyncio.shield(lookup)

    async def _locate(self, channel: str) -> str | None:
        self.stats.locate_lookups += 1
        try:
            found = await self.holder(channel)
        except (RedisError, OSError) as exc:
            log.warning("cluster: cannot locate channel=%s (Redis unavailable; using the "
                        "last answer): %s", channel, exc)
            return self.cache.stale(channel)
        url = found[1] if found is not None and found[0] != self.node else None
        self.cache.put(channel, url)
        return url

    async def remote_streams(self) -> list[RemoteStream]:
        """The streams every other live node holds (as of its last heartbeat)."""
        args = [NODE_PREFIX, STREAMS_PREFIX, ONLINE_PREFIX, self.node]
        found = await self._remote_streams(keys=[NODES_SET], args=args)
        out = []
        for node, address, text in zip(found[::3], found[1::3], found[2::3], strict=True):
            try:
                out.append(RemoteStream(str(node), str(address), stats_from_json(str(text))))
            except RecordError as exc:
                self.stats.bad_records += 1
                log.warning("cluster: a stream record of node %s is unreadable: %s", node, exc)
        return out

