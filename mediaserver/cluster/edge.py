"""The edge: how a node answers playback URLs of channels whose publisher is on another node.

hls/http.py asks a RemoteSource when its own hub has no such channel; this is
that source. `--edge proxy` (the default) fetches from the origin and shares
what it fetched among this node's viewers (edge_playlists, edge_media);
`--edge redirect` answers 302 to the same URL on the origin. Which node is the
origin comes from the cluster registry's `locate(channel)`.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import Metric

from hls.remote import Failed, Kind, Missing, Redirect, RemoteAnswer, RemoteRequest

from ..config import Config
from .edge_client import OriginClient
from .edge_locate import Locate, LocateError, Locator
from .edge_media import (
    EDGE_CACHE_BYTES,
    SNAPSHOT_CACHE_BYTES,
    SNAPSHOT_MAX_AGE_SECONDS,
    MediaRelay,
)
from .edge_metrics import EdgeStats, edge_families
from .edge_playlists import PlaylistRelay

__all__ = ["Locate", "ProxyEdge", "RedirectEdge", "make_edge"]


class ProxyEdge:
    """Serves remote channels through this node: segments once per node, playlists coalesced."""

    def __init__(self, locate: Locate, node: str, grace_period: float,
                 cache_bytes: int = EDGE_CACHE_BYTES) -> None:
        self.stats = EdgeStats()
        self._client = OriginClient(node)
        locator = Locator(locate, self.stats)
        self.playlists = PlaylistRelay(locator, self._client, self.stats, grace_period)
        self.media = MediaRelay(locator, self._client, self.stats, cache_bytes)
        self.snapshots = MediaRelay(locator, self._client, self.stats, SNAPSHOT_CACHE_BYTES,
                                    kind="snapshot", max_age=SNAPSHOT_MAX_AGE_SECONDS)

    async def fetch(self, request: RemoteRequest) -> RemoteAnswer:
        if request.kind is Kind.PLAYLIST:
            return await self.playlists.get(request)
        if request.kind is Kind.SNAPSHOT:
            return await self.snapshots.get(request)
        return await self.media.get(request)

    def metrics(self) -> Iterator[Metric]:
        return edge_families(self.stats, self.media.cache)

    async def close(self) -> None:
        await self.playlists.close()
        await self.media.close()
        await self.snapshots.close()
        await self._client.close()


class RedirectEdge:
    """Answers 302 to the origin's same URL, query kept: the viewer fetches from it directly.

    No cache and no failover here: the player follows the origin, and comes back
    through this node only when its next playlist request fails.
    """

    def __init__(self, locate: Locate) -> None:
        self.stats = EdgeStats()
        self._locate = Locator(locate, self.stats)

    async def fetch(self, request: RemoteRequest) -> RemoteAnswer:
        try:
            origin = await self._locate(request.channel)
        except LocateError as exc:
            return Failed(exc.status, exc.reason)
        if origin is None:
            return Missing("unknown channel")
        self.stats.redirects += 1
        query = f"?{request.query}" if request.query else ""
        return Redirect(f"{origin}{request.path}{query}")

    def metrics(self) -> Iterator[Metric]:
        return edge_families(self.stats, None)

    async def close(self) -> None:
        return None


def make_edge(config: Config, locate: Locate, node: str) -> ProxyEdge | RedirectEdge:
    """The edge `--edge` asks for; `node` names this node in requests to origins."""
    if config.edge == "redirect":
        return RedirectEdge(locate)
    return ProxyEdge(locate, node, config.grace_period)
