"""/metrics computed from a real hub fed with FLV tags, parsed back with prometheus_client."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from hls.segmenter import SegmentInfo
from mediaserver.http_limits import HttpGate, HttpLimits
from mediaserver.hub import StreamHub
from mediaserver.metrics import HlsTraffic, SegmentDurations, ServerMetrics
from mediaserver.publisher import Publisher
from rtmp.server import RtmpServer
from tests.hls_media import Media, av_clip
from tests.live import wait_for

GRAFANA = Path(__file__).resolve().parents[2] / "grafana" / "mediaserver-dashboard.json"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition as {(name, sorted labels): value}."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(parsed: dict, name: str, **labels: str) -> float:
    return parsed[(name, tuple(sorted(labels.items())))]


def feed(publisher: Publisher, media: Media) -> None:
    """Send a clip as an encoder would: sequence headers, then FLV video/audio tag bodies."""
    assert media.video is not None and media.audio is not None
    publisher.on_video(0, b"\x17\x00\x00\x00\x00" + media.video.extradata)
    publisher.on_audio(0, b"\xaf\x00" + media.audio.extradata)
    for packet in media.packets:
        if packet.kind == "video":
            cts = struct.pack(">i", packet.pts - packet.dts)[1:]
            head = (b"\x17\x01" if packet.keyframe else b"\x27\x01") + cts
            publisher.on_video(packet.dts, head + bytes(packet.data))
        else:
            publisher.on_audio(packet.dts, b"\xaf\x01" + bytes(packet.data))


@pytest.fixture
async def live_hub() -> tuple[StreamHub, ServerMetrics, RtmpServer]:
    hub = StreamHub()
    rtmp = RtmpServer(policy=None)  # type: ignore[arg-type]  # never started: stats only
    metrics = ServerMetrics(hub, lambda: rtmp)
    publisher = hub.start_publish("cam1", "127.0.0.1:50000")
    feed(publisher, av_clip())
    await wait_for(lambda: hub.channels["cam1"].segmenter.segments_produced >= 2, timeout=10,
                   what="segments from the fed clip")
    return hub, metrics, rtmp


async def test_stream_series_come_from_the_hub(live_hub) -> None:
    hub, metrics, rtmp = live_hub
    media = av_clip()
    rtmp.publish_results.update({"ok": 3, "bad_key": 2, "unavailable": 1})
    rtmp.stats.protocol_errors = 4
    rtmp.stats.connections_total = 9
    parsed = samples(generate_latest(metrics.registry).decode())

    video = [p for p in media.packets if p.kind == "video"]
    audio = [p for p in media.packets if p.kind == "audio"]
    assert value(parsed, "mediaserver_live_streams") == 1
    assert value(parsed, "mediaserver_stream_ingest_bytes_total", channel="cam1",
                 track="video") == sum(len(p.data) + 5 for p in video)
    assert value(parsed, "mediaserver_stream_ingest_bytes_total", channel="cam1",
                 track="audio") == sum(len(p.data) + 2 for p in audio)
    assert value(parsed, "mediaserver_stream_video_frames_total", channel="cam1") == len(video)
    assert value(parsed, "mediaserver_stream_keyframe_interval_seconds", channel="cam1") == 2.0
    assert value(parsed, "mediaserver_stream_bitrate_bits_per_second", channel="cam1") > 0
    assert value(parsed, "mediaserver_stream_frames_per_second", channel="cam1") > 0
    assert value(parsed, "mediaserver_stream_info", channel="cam1", video_codec="h264",
                 width="1280", height="720", audio_codec="aac", sample_rate="48000") == 1
    produced = hub.channels["cam1"].segmenter.segments_produced
    assert value(parsed, "mediaserver_hls_segments_produced_total", channel="cam1") == produced
    assert value(parsed, "mediaserver_hls_segment_duration_seconds_count",
                 channel="cam1") == produced
    assert value(parsed, "mediaserver_hls_segment_duration_seconds_bucket", channel="cam1",
                 le="2.0") == produced  # 2 s GOPs: every segment in the 2.0 bucket
    assert value(parsed, "mediaserver_hls_segment_duration_seconds_bucket", channel="cam1",
                 le="1.5") == 0
    segmenter = hub.channels["cam1"].segmenter
    assert value(parsed, "mediaserver_hls_bytes_held", channel="cam1") == segmenter.bytes_held
    assert segmenter.bytes_held >= segmenter.bytes_in_window > 0
    # No TS segment was asked for: none was muxed.
    for when in ("request", "close"):
        assert value(parsed, "mediaserver_hls_ts_segments_muxed_total", channel="cam1",
                     when=when) == 0
    assert value(parsed, "mediaserver_hls_ts_bytes_muxed_total", channel="cam1") == 0
    first = segmenter.playlist.segments[0].uri
    ts = segmenter.segment(first)
    assert ts is not None
    parsed = samples(generate_latest(metrics.registry).decode())
    assert value(parsed, "mediaserver_hls_ts_segments_muxed_total", channel="cam1",
                 when="request") == 1
    assert value(parsed, "mediaserver_hls_ts_bytes_muxed_total", channel="cam1") == len(ts)
    assert value(parsed, "mediaserver_hls_ts_mux_seconds_total", channel="cam1") > 0
    assert value(parsed, "mediaserver_hls_ts_mux_failures_total", channel="cam1") == 0
    for counter in ("segments_dropped_early", "forced_cuts", "durations_clamped"):
        # A clean 2 s GOP clip under the cap needs none of the safety valves.
        assert value(parsed, f"mediaserver_hls_{counter}_total", channel="cam1") == 0
    # Publish attempts: the known results always present, protocol errors folded in.
    assert value(parsed, "mediaserver_rtmp_publish_attempts_total", result="ok") == 3
    assert value(parsed, "mediaserver_rtmp_publish_attempts_total", result="bad_key") == 2
    assert value(parsed, "mediaserver_rtmp_publish_attempts_total", result="unavailable") == 1
    assert value(parsed, "mediaserver_rtmp_publish_attempts_total", result="blocked") == 0
    assert value(parsed, "mediaserver_rtmp_publish_attempts_total", result="duplicate") == 0
    assert value(parsed, "mediaserver_rtmp_publish_attempts_total", result="bad_app") == 0
    assert value(parsed, "mediaserver_rtmp_publish_attempts_total", result="protocol_error") == 4
    assert value(parsed, "mediaserver_rtmp_connections_total") == 9
    assert value(parsed, "mediaserver_rtmp_connections_open") == 0
    # The default collectors are on the server's own registry.
    assert value(parsed, "process_resident_memory_bytes") > 0
    assert ("process_cpu_seconds_total", ()) in parsed


async def test_a_gone_publisher_leaves_no_stream_series(live_hub) -> None:
    hub, metrics, _ = live_hub
    hub.kick("cam1", "test")
    parsed = samples(generate_latest(metrics.registry).decode())
    assert value(parsed, "mediaserver_live_streams") == 0
    assert not [key for key in parsed if key[0].startswith("mediaserver_stream_")]
    # The playlist lives on through the grace period, and so do its HLS series.
    assert value(parsed, "mediaserver_hls_segments_produced_total", channel="cam1") >= 2


def test_every_server_has_its_own_registry() -> None:
    first, second = StreamHub(), StreamHub()
    a = ServerMetrics(first, lambda: None)
    b = ServerMetrics(second, lambda: None)  # would raise on a shared registry
    assert a.registry is not b.registry
    first.start_publish("only-in-a", "127.0.0.1:1")
    assert b"only-in-a" in generate_latest(a.registry)
    assert b"only-in-a" not in generate_latest(b.registry)


def test_viewers_are_distinct_clients_within_the_window() -> None:
    clock = FakeClock()
    traffic = HlsTraffic(clock)
    traffic.note_viewer("cam1", "10.0.0.1 hls.js")
    traffic.note_viewer("cam1", "10.0.0.1 hls.js")
    traffic.note_viewer("cam1", "10.0.0.1 VLC")
    traffic.note_viewer("cam2", "10.0.0.2 hls.js")
    assert traffic.viewers("cam1", 2.0) == 2
    clock.now += 1.5
    traffic.note_viewer("cam1", "10.0.0.1 VLC")
    clock.now += 1.0  # hls.js last seen 2.5 s ago, VLC 1 s ago
    assert traffic.viewers("cam1", 2.0) == 1
    assert traffic.viewers("cam2", 2.0) == 0
    assert traffic.viewers("nobody", 2.0) == 0
    traffic.forget_others(["cam1"])
    assert traffic.viewers("cam1", 2.0) == 1


def test_request_counts_by_kind_and_status() -> None:
    traffic = HlsTraffic()
    for kind, status in [("playlist", 200), ("playlist", 200), ("segment", 206),
                         ("playlist", 404)]:
        traffic.on_request(kind, status, "cam1", "127.0.0.1 test")
    assert traffic.requests == {("playlist", 200): 2, ("segment", 206): 1, ("playlist", 404): 1}


def test_segment_histogram_is_cumulative_and_forgets_gone_channels() -> None:
    durations = SegmentDurations(buckets=(1.0, 2.0, 4.0))
    for channel, seconds in [("a", 0.5), ("a", 2.0), ("a", 2.1), ("a", 9.0), ("b", 1.0)]:
        durations.observe(channel, SegmentInfo(0, "x.ts", seconds, 1, False, True))
    family = durations.family("x_seconds", "doc", ["a"])
    buckets = {s.labels["le"]: s.value for s in family.samples if s.name == "x_seconds_bucket"}
    assert buckets == {"1.0": 1, "2.0": 2, "4.0": 3, "+Inf": 4}
    sums = [s.value for s in family.samples if s.name == "x_seconds_sum"]
    assert sums == [pytest.approx(13.6)]
    assert {s.labels["channel"] for s in family.samples} == {"a"}  # b is gone
    assert not [s for s in durations.family("x", "doc", ["a", "b"]).samples
                if s.labels["channel"] == "b"]


async def test_grafana_dashboard_uses_only_exported_metrics(live_hub) -> None:
    hub, _, rtmp = live_hub
    metrics = ServerMetrics(hub, lambda: rtmp, lambda: _thumbnail_stats())
    exported = exported_names(generate_latest(metrics.registry).decode())
    dashboard = json.loads(GRAFANA.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) > 20
    used = {m for e in exprs for m in re.findall(r"\b(?:mediaserver|process)_[a-z_]+", e)}
    assert used <= exported, sorted(used - exported)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "channel"} <= variables


def exported_names(text: str) -> set[str]:
    """Every series name the exposition declares, samples or not (empty families too)."""
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"],
                "info": ["_info"], "gauge": [""], "summary": ["_sum", "_count", ""]}
    return {family.name + suffix for family in text_string_to_metric_families(text)
            for suffix in suffixes.get(family.type, [""])}


def _thumbnail_stats():
    from mediaserver.thumbnails import ThumbnailStats

    return ThumbnailStats(rendered=1)


def test_http_listener_series_come_from_the_gate() -> None:
    gate = HttpGate(HttpLimits(max_connections=10, header_timeout=5.0))
    gate.stats.connections_total, gate.stats.refused, gate.stats.header_timeouts = 12, 2, 3
    metrics = ServerMetrics(StreamHub(), lambda: None, http=lambda: gate)
    parsed = samples(generate_latest(metrics.registry).decode())
    assert value(parsed, "mediaserver_http_connections_total") == 12
    assert value(parsed, "mediaserver_http_connections_refused_total") == 2
    assert value(parsed, "mediaserver_http_header_timeouts_total") == 3
    assert value(parsed, "mediaserver_http_connections_open") == 0
