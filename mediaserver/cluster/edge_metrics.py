"""What an edge counts, and its /metrics series (read at scrape time like the rest)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..metrics import NAMESPACE
from .edge_share import ByteLru

# Series present from the start, so that a dashboard has a line before the first fetch.
KINDS = ("playlist", "media", "snapshot")


@dataclass(slots=True)
class EdgeStats:
    # (kind, outcome): every request this node sent to an origin, by how it went.
    fetches: Counter[tuple[str, str]] = field(default_factory=Counter)
    # kind: viewer requests answered without an origin fetch of their own.
    hits: Counter[str] = field(default_factory=Counter)
    stale_playlists: int = 0
    followed: int = 0  # playlists followed right now (edge_follow)
    redirects: int = 0
    locate_failures: int = 0


def edge_families(stats: EdgeStats, cache: ByteLru[str, object] | None) -> Iterator[Metric]:
    fetches = CounterMetricFamily(
        f"{NAMESPACE}_edge_origin_fetches",
        "Requests this node sent to another node (the origin) for a channel it does not "
        "hold, by kind and outcome.", labels=["kind", "result"])
    for (kind, result), count in sorted(stats.fetches.items()):
        fetches.add_metric([kind, result], count)
    yield fetches
    hits = CounterMetricFamily(
        f"{NAMESPACE}_edge_cache_hits",
        "Requests for a channel held elsewhere answered without an origin fetch of their "
        "own: from the segment cache, a fresh playlist copy or a fetch already in flight.",
        labels=["kind"])
    for kind in KINDS:
        hits.add_metric([kind], stats.hits[kind])
    yield hits
    yield CounterMetricFamily(
        f"{NAMESPACE}_edge_stale_playlists",
        "Playlists served from this node's last copy because no origin could give a new one "
        "(within the grace period).", value=stats.stale_playlists)
    yield GaugeMetricFamily(
        f"{NAMESPACE}_edge_followed_playlists",
        "Playlists of channels held elsewhere that this node follows now: one request held "
        "by the origin each, answered when the playlist changes.", value=stats.followed)
    yield CounterMetricFamily(
        f"{NAMESPACE}_edge_redirects",
        "Requests answered 302 to the origin (--edge redirect).", value=stats.redirects)
    yield CounterMetricFamily(
        f"{NAMESPACE}_edge_locate_failures",
        "Origin look-ups in the cluster registry that failed or timed out.",
        value=stats.locate_failures)
    if cache is not None:
        yield GaugeMetricFamily(f"{NAMESPACE}_edge_cache_bytes",
                                "Bytes of origin media held in this node's edge cache.",
                                value=cache.bytes)
        yield CounterMetricFamily(f"{NAMESPACE}_edge_cache_evictions",
                                  "Media let go from the edge cache to stay within its budget.",
                                  value=cache.evictions)
