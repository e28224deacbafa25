"""/metrics series of LL-HLS blocked requests, read at scrape time from the HLS routes'
Signals (hls.waiters): how many wait now, and how long after the part that woke them
they were answered (the cost of waking hundreds at once)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric

from hls.waiters import WAKEUP_BUCKETS, Signals

from .metrics import NAMESPACE


def blocked_request_families(signals: Signals) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        f"{NAMESPACE}_hls_blocked_requests",
        "Requests held right now: LL-HLS blocking playlist reloads and preload-hinted parts, "
        "and other nodes' requests for index.m3u8 held until it changes (edges following it).",
        value=signals.waiting)
    wakeups = signals.wakeups
    buckets = []
    total = 0
    for bound, count in zip(WAKEUP_BUCKETS, wakeups.counts, strict=False):
        total += count
        buckets.append((repr(bound), total))
    buckets.append(("+Inf", wakeups.count))
    histogram = HistogramMetricFamily(
        f"{NAMESPACE}_hls_blocked_wakeup_seconds",
        "Time from the part (or segment) that answered a held LL-HLS request to its answer "
        "being ready.")
    histogram.add_metric([], buckets, sum_value=wakeups.sum)
    yield histogram
