"""Segments (and parts, init sections) of channels held elsewhere: fetched once per node.

Their names are never reused, so an answer never goes stale: the first viewer's
request fetches it, everyone asking meanwhile shares that fetch, and later
viewers get it from a cache bounded in bytes. Failures and 404s are not kept:
the next request asks again.
"""

from __future__ import annotations

import logging

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


class MediaRelay:
    def __init__(self, locate: Locator, client: OriginClient, stats: EdgeStats,
                 cache_bytes: int = EDGE_CACHE_BYTES) -> None:
        self._locate = locate
        self._client = client
        self._stats = stats
        self.cache: ByteLru[str, Found] = ByteLru(cache_bytes)
        self._inflight: InFlight[str, RemoteAnswer] = InFlight()

    async def get(self, request: RemoteRequest) -> RemoteAnswer:
        # The path names the resource on every node; a query adds nothing to immutable media.
        key = request.path
        found = self.cache.get(key)
        if found is not None:
            self._stats.hits["media"] += 1
            return found
        pending, shared = self._inflight.join(key, lambda: self._fetch(request.channel, key))
        if shared:
            self._stats.hits["media"] += 1
        return await pending

    async def _fetch(self, channel: str, path: str) -> RemoteAnswer:
        try:
            origin = await self._locate(channel)
        except LocateError as exc:
            return Failed(exc.status, exc.reason)
        if origin is None:
            return Missing("unknown channel")
        reply = await self._client.get(origin + path, MEDIA_TIMEOUT)
        self._stats.fetches[("media", reply.outcome.value)] += 1
        if reply.outcome is Outcome.OK:
            found = Found(reply.body)
            self.cache.put(path, found, len(reply.body))
            return found
        if reply.outcome is Outcome.NOT_FOUND:
            return Missing(reply.detail or "segment expired or unknown")
        if reply.outcome is Outcome.REFUSED:
            return reply.failed()  # a hinted part that did not come in time: 503
        log.warning("edge: media fetch failed channel=%s origin=%s path=%s: %s %s",
                    channel, origin, path, reply.outcome.value, reply.detail)
        return reply.failed()

    async def close(self) -> None:
        await self._inflight.close()
