"""Failover state: where each channel's playlist stood, for the next node to carry on.

The origin records, after each segment, the channel's `PlaylistResume` (next media
sequence, discontinuity sequence, TARGETDURATION, timeline) with the wall time,
in `ms:resume:{channel}` with a TTL of the grace period plus a margin. A node
that starts a publish for a channel it does not hold reads it and seeds the new
segmenter (hls.resume), so viewers see one playlist go on with a DISCONTINUITY,
as after a reconnect to the same node.

Only a playlist that may still go on keeps its record: one whose publisher
dropped, within the grace period, or one whose node died. A playlist that ended
with ENDLIST (an unpublish, the grace period over, a clean stop) has its record
deleted, so a publish elsewhere starts a new playlist instead of continuing one
that players were told had ended.

Writes are coalesced: one writer task sends the latest state of every channel
that changed since its last round, in one round trip, so a burst of segments or
a Redis outage costs at most one pending record per channel.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from hls.resume import PlaylistResume

from .keys import RESUME_PREFIX
from .records import RecordError, ResumeRecord, resume_fields, resume_from_fields

log = logging.getLogger("mediaserver.cluster.failover")

# The record follows the last segment, which the publisher may outlive by up to a
# segment (a forced cut comes after 5 x the 2 s target); the grace period starts
# only when the publisher leaves. This margin covers that and a slow write.
RESUME_MARGIN_SECONDS = 15.0
# Pause before writing again after Redis refused a round.
WRITE_RETRY_SECONDS = 1.0

# KEYS: resume record. ARGV: own id. Deletes the record only if this node wrote it.
_FORGET = """
if redis.call('HGET', KEYS[1], 'node') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(slots=True)
class FailoverStats:
    records_written: int = 0
    write_failures: int = 0
    bad_records: int = 0


class ResumeRecords:
    """This node's writes of playlist state, and reads of whoever wrote last."""

    def __init__(self, redis: aioredis.Redis, node: str, ttl_seconds: float,
                 clock: Callable[[], float] = time.time) -> None:
        if not ttl_seconds > 0:
            raise ValueError("ttl_seconds must be positive")
        self._redis = redis
        self.node = node
        self._ttl_ms = max(1, round(ttl_seconds * 1000))
        self._clock = clock
        self._forget = redis.register_script(_FORGET)
        self._pending: dict[str, ResumeRecord | None] = {}  # None: forget
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.stats = FailoverStats()

    def record(self, channel: str, resume: PlaylistResume) -> None:
        """The channel published a segment: this is where its playlist stands now."""
        self._queue(channel, ResumeRecord(self.node, resume, self._clock()))

    def forget(self, channel: str) -> None:
        """The playlist ended on purpose: nothing is to be carried on (if still ours)."""
        self._queue(channel, None)

    def _queue(self, channel: str, record: ResumeRecord | None) -> None:
        self._pending[channel] = record
        self._idle.clear()
        self._wake.set()

    async def flush(self, timeout: float) -> bool:
        """Wait until every queued record is written; False if not within `timeout`."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def read(self, channel: str) -> ResumeRecord | None:
        """The last recorded state of the channel, by whichever node; None if none.

        Raises RedisError/OSError when Redis cannot be reached.
        """
        values = await self._redis.hgetall(RESUME_PREFIX + channel)
        if not values:
            return None
        try:
            return resume_from_fields(values)
        except RecordError as exc:
            self.stats.bad_records += 1
            log.warning("cluster: playlist state of channel=%s unusable: %s", channel, exc)
            return None

    async def run(self) -> None:
        """The writer: forever, send what is pending; retry after a failure."""
        failing = False
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending, {}
                try:
                    await self._write(batch)
                except (RedisError, OSError) as exc:
                    self.stats.write_failures += 1
                    for channel, record in batch.items():
                        self._pending.setdefault(channel, record)  # newer ones win
                    if not failing:
                        log.warning("cluster: cannot record playlist state (retrying): %s",
                                    exc)
                        failing = True
                    await asyncio.sleep(WRITE_RETRY_SECONDS)
                    continue
                if failing:
                    log.info("cluster: recording playlist state works again")
                    failing = False
            self._idle.set()

    async def _write(self, batch: dict[str, ResumeRecord | None]) -> None:
        # One transaction: a reader never sees a record half replaced.
        async with self._redis.pipeline(transaction=True) as pipe:
            for channel, record in batch.items():
                key = RESUME_PREFIX + channel
                if record is None:
                    await self._forget(keys=[key], args=[self.node], client=pipe)
                else:
                    pipe.delete(key)
                    pipe.hset(key, mapping=resume_fields(record))  # type: ignore[arg-type]
                    pipe.pexpire(key, self._ttl_ms)
            await pipe.execute()
        self.stats.records_written += sum(record is not None for record in batch.values())
