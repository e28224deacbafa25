"""Segments (and parts, init sections) of channels held elsewhere: fetched once per node.

Their names are never reused, so an answer never goes stale: the first viewer's
request fetches it, everyone asking meanwhile shares that fetch, and later
viewers get it from a cache bounded in bytes. Failures and 404s are not kept:
the next request asks again.

Snapshots (thumbnails) go the same way with a `max_age`: one name whose content
changes now and then, so a kept answer serves only for that long.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from hls.remote import Failed, Found, Missing, RemoteAnswer, RemoteRequest

from .edge_client import OriginClient, Outcome
from .edge_locate import LocateError, Locator
from .edge_metrics import EdgeStats
from .edge_share import ByteLru, InFlight

log = logging.getLogger("mediaserver.edge")

# The edge cache's byte budget. Viewers play the live edge: the last few segments of
# each channel. A 2 s segment at 6 Mbit/s is 1.5 MB, so 256 MiB keeps a whole 6-segment
# window of ~28 such channels, or the last three segments of ~55, on any server today.
EDGE_CACHE_BYTES = 256 * 1024 * 1024
# One segment is at most a few MB; a LAN moves that in well under a second. A segment
# later than this is of little use to a player whose buffer is a few segments long.
MEDIA_TIMEOUT = 5.0
# Thumbnails are ~50 kB: this keeps several hundred channels' pictures.
SNAPSHOT_CACHE_BYTES = 16 * 1024 * 1024
# A thumbnail is rendered again at most every 5 s on its origin (mediaserver.thumbnails)
# and dashboards poll every 5 s: an answer this old is still the newest or close to it,
# and a wall of dashboards costs the origin one fetch per channel per this long.
SNAPSHOT_MAX_AGE_SECONDS = 2.0


class MediaRelay:
    """`max_age`: None for immutable media; else how long a kept answer serves."""

    def __init__(self, locate: Locator, client: OriginClient, stats: EdgeStats,
                 cache_bytes: int = EDGE_CACHE_BYTES, *, kind: str = "media",
                 max_age: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._locate = locate
        self._client = client
        self._stats = stats
        self.kind = kind  # the stats' label
        self.max_age = max_age
        self._clock = clock
        self.cache: ByteLru[str, tuple[Found, float]] = ByteLru(cache_bytes)  # with fetched at
        self._inflight: InFlight[str, RemoteAnswer] = InFlight()

    async def get(self, request: RemoteRequest) -> RemoteAnswer:
        # The path names the resource on every node; a query adds nothing to it.
        key = request.path
        kept = self.cache.get(key)
        if kept is not None and (self.max_age is None
                                 or self._clock() - kept[1] < self.max_age):
            self._stats.hits[self.kind] += 1
            return kept[0]
        pending, shared = self._inflight.join(key, lambda: self._fetch(request.channel, key))
        if shared:
            self._stats.hits[self.kind] += 1
        return await pending

    async def _fetch(self, channel: str, path: str) -> RemoteAnswer:
        try:
            origin = await self._locate(channel)
        except LocateError as exc:
            return Failed(exc.status, exc.reason)
        if origin is None:
            return Missing("unknown channel")
        reply = await self._client.get(origin + path, MEDIA_TIMEOUT)
        self._stats.fetches[(self.kind, reply.outcome.value)] += 1
        if reply.outcome is Outcome.OK:
            found = Found(reply.body)
            self.cache.put(path, (found, self._clock()), len(reply.body))
            return found
        if reply.outcome is Outcome.NOT_FOUND:
            return Missing(reply.detail or "segment expired or unknown")
        if reply.outcome is Outcome.REFUSED:
            return reply.failed()  # a hinted part that did not come in time: 503
        log.warning("edge: %s fetch failed channel=%s origin=%s path=%s: %s %s",
                    self.kind, channel, origin, path, reply.outcome.value, reply.detail)
        return reply.failed()

    async def close(self) -> None:
        await self._inflight.close()
