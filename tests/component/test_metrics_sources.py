"""Families added through ServerMetrics.sources (the edge's, the cluster's, LL-HLS's) appear
once per scrape: a family given twice makes scrapers and parsers read it wrongly."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily

from mediaserver.hub import StreamHub
from mediaserver.metrics import ServerMetrics


def test_a_source_family_is_scraped_once() -> None:
    metrics = ServerMetrics(StreamHub(), lambda: None)
    metrics.sources.append(lambda: [GaugeMetricFamily("extra_series", "One more.", value=1)])
    text = generate_latest(metrics.registry).decode()
    assert text.count("# TYPE extra_series gauge") == 1
    assert text.count("\nextra_series 1.0") == 1
