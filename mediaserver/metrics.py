"""Prometheus metrics, computed at scrape time from the hub and the RTMP server.

Nothing here sits on the ingest path: the collector reads counters that the
hub, publishers, segmenters and RTMP server keep anyway. The only state of its
own is what cannot be read back later: HLS requests by kind and status, the
clients each channel saw lately (viewers), and the segment duration histogram
(fed once per segment). Each MediaServer gets its own CollectorRegistry, so
several servers in one process (tests) never share or clash over series. In a
cluster every series carries a `node` label (the node id), the standard process_*
and python_* ones included, so the series of several nodes scraped into one
Prometheus never collide.
"""

from __future__ import annotations

import bisect
import copy
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from hls.segmenter import SegmentInfo

from .thumbnails import ThumbnailStats

if TYPE_CHECKING:
    from rtmp.server import RtmpServer

    from .hot_http import HotStats
    from .http_limits import HttpGate
    from .hub import StreamHub

NAMESPACE = "mediaserver"
# Publish results always exported, even at zero, so that dashboards and alerts
# (rate of bad_key, say) have a series before the first such attempt.
KNOWN_PUBLISH_RESULTS = (
    "ok", "bad_key", "bad_app", "blocked", "duplicate", "unavailable", "protocol_error",
)
# Around the usual 2 s target, and out to the forced cut (5 x target) of
# encoders with long keyframe intervals.
SEGMENT_DURATION_BUCKETS = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0)
# A hostile client cycling addresses could grow the viewer table without end;
# past this many recent clients a channel forgets its oldest.
MAX_TRACKED_CLIENTS = 50_000
# Shortest viewer window: a playlist that has not advertised a target yet.
MIN_VIEWER_WINDOW_SECONDS = 1.0
_VIEWER_KINDS = ("playlist", "ll_playlist", "segment")


class HlsTraffic:
    """HLS answers by kind and status, and which clients fetched each channel lately.

    A viewer is one client address and User-Agent that fetched a channel's
    playlist or a segment successfully; HLS has no sessions, and viewers
    behind one NAT with the same player are counted once.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.requests: Counter[tuple[str, int]] = Counter()
        # channel -> client -> last seen; dicts kept oldest-first for cheap pruning.
        self._seen: dict[str, dict[str, float]] = {}

    def on_request(self, kind: str, status: int, channel: str, client: str) -> None:
        """The hls.http `on_request` hook: count the answer; a served fetch marks a viewer."""
        self.requests[(kind, status)] += 1
        if status < 400 and kind in _VIEWER_KINDS:
            self.note_viewer(channel, client)

    def note_viewer(self, channel: str, client: str) -> None:
        seen = self._seen.setdefault(channel, {})
        seen.pop(client, None)
        seen[client] = self._clock()
        if len(seen) > MAX_TRACKED_CLIENTS:
            del seen[next(iter(seen))]

    def viewers(self, channel: str, window: float) -> int:
        """Distinct clients of `channel` seen in the last `window` seconds."""
        seen = self._seen.get(channel)
        if not seen:
            return 0
        horizon = self._clock() - window
        while seen:
            client, last = next(iter(seen.items()))
            if last >= horizon:
                break
            del seen[client]
        return len(seen)

    def forget_others(self, channels: Iterable[str]) -> None:
        """Drop what is kept for channels that no longer exist."""
        keep = set(channels)
        for name in [n for n in self._seen if n not in keep]:
            del self._seen[name]


class SegmentDurations:
    """Per-channel cumulative histograms of published segment durations."""

    def __init__(self, buckets: tuple[float, ...] = SEGMENT_DURATION_BUCKETS) -> None:
        self.buckets = buckets
        # channel -> [count per bucket (last one is +Inf)], sum
        self._counts: dict[str, list[int]] = {}
        self._sums: dict[str, float] = {}

    def observe(self, channel: str, info: SegmentInfo) -> None:
        """A hub segment listener: one segment of `channel` was published."""
        counts = self._counts.get(channel)
        if counts is None:
            counts = self._counts[channel] = [0] * (len(self.buckets) + 1)
            self._sums[channel] = 0.0
        counts[bisect.bisect_left(self.buckets, info.duration)] += 1
        self._sums[channel] += info.duration

    def family(self, name: str, documentation: str, channels: Iterable[str]) -> Metric:
        """The histogram for the given channels; those not given are forgotten."""
        keep = set(channels)
        for gone in [c for c in self._counts if c not in keep]:
            del self._counts[gone], self._sums[gone]
        family = HistogramMetricFamily(name, documentation, labels=["channel"])
        for channel in sorted(self._counts):
            cumulative, running = [], 0
            for bound, count in zip((*self.buckets, float("inf")), self._counts[channel],
                                    strict=True):
                running += count
                cumulative.append((_le(bound), running))
            family.add_metric([channel], cumulative, self._sums[channel])
        return family


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


class ServerCollector(Collector):
    """Reads hub, RTMP server, HLS traffic and thumbnail counters at each scrape."""

    def __init__(
        self,
        hub: StreamHub,
        rtmp: Callable[[], RtmpServer | None],
        traffic: HlsTraffic,
        segments: SegmentDurations,
        thumbnails: Callable[[], ThumbnailStats] | None = None,
        http: Callable[[], HttpGate | None] | None = None,
        node: Callable[[], str | None] | None = None,
        sources: list[Callable[[], Iterable[Metric]]] | None = None,
    ) -> None:
        self._hub = hub
        self._rtmp = rtmp
        self._traffic = traffic
        self._segments = segments
        self._thumbnails = thumbnails
        self._http = http
        self._node = node
        self._sources = sources if sources is not None else []

    def describe(self) -> Iterable[Metric]:
        return []  # names are fixed; skip the registry's trial collect at register time

    def collect(self) -> Iterator[Metric]:
        return with_node(self._families(), self._node() if self._node is not None else None)

    def _families(self) -> Iterator[Metric]:
        yield from self._rtmp_metrics()
        if self._http is not None:
            yield from self._http_metrics(self._http())
        yield from self._stream_metrics()
        yield from self._hls_metrics()
        if self._thumbnails is not None:
            yield from self._thumbnail_metrics(self._thumbnails())
        for source in self._sources:
            yield from source()

    def _rtmp_metrics(self) -> Iterator[Metric]:
        rtmp = self._rtmp()
        if rtmp is None:
            return
        stats = rtmp.stats
        yield GaugeMetricFamily(f"{NAMESPACE}_rtmp_connections_open",
                                "RTMP connections open now.", value=len(rtmp.sessions))
        yield CounterMetricFamily(f"{NAMESPACE}_rtmp_connections",
                                  "RTMP connections accepted since start.",
                                  value=stats.connections_total)
        yield CounterMetricFamily(f"{NAMESPACE}_rtmp_connections_refused",
                                  "RTMP connections closed at once: connection cap reached.",
                                  value=stats.connections_refused)
        timeouts = CounterMetricFamily(f"{NAMESPACE}_rtmp_timeouts",
                                       "RTMP connections closed for a timeout.", labels=["kind"])
        timeouts.add_metric(["handshake"], stats.handshake_timeouts)
        timeouts.add_metric(["idle"], stats.idle_timeouts)
        yield timeouts
        yield CounterMetricFamily(f"{NAMESPACE}_rtmp_output_overflows",
                                  "RTMP connections aborted for leaving our output unread.",
                                  value=stats.output_overflows)
        yield CounterMetricFamily(f"{NAMESPACE}_rtmp_internal_errors",
                                  "RTMP connections closed for a bug on our side.",
                                  value=stats.internal_errors)
        # Closed connections are folded into stats at close; open ones are read live.
        received = stats.bytes_received + sum(s.conn.bytes_received for s in rtmp.sessions)
        yield CounterMetricFamily(f"{NAMESPACE}_rtmp_received_bytes",
                                  "Bytes received on RTMP connections.", value=received)
        results = Counter(dict.fromkeys(KNOWN_PUBLISH_RESULTS, 0))
        results.update(rtmp.publish_results)
        results["protocol_error"] += stats.protocol_errors
        attempts = CounterMetricFamily(
            f"{NAMESPACE}_rtmp_publish_attempts",
            "Publish attempts by result; protocol_error counts connections closed for "
            "breaking the protocol.",
            labels=["result"],
        )
        for result in sorted(results):
            attempts.add_metric([result], results[result])
        yield attempts

    def _http_metrics(self, gate: HttpGate | None) -> Iterator[Metric]:
        if gate is None:
            return
        stats = gate.stats
        yield GaugeMetricFamily(f"{NAMESPACE}_http_connections_open",
                                "HTTP connections open now.", value=gate.open_connections)
        yield CounterMetricFamily(f"{NAMESPACE}_http_connections",
                                  "HTTP connections accepted since start.",
                                  value=stats.connections_total)
        yield CounterMetricFamily(f"{NAMESPACE}_http_connections_refused",
                                  "HTTP connections answered 503 and closed: connection cap "
                                  "reached.", value=stats.refused)
        yield CounterMetricFamily(f"{NAMESPACE}_http_header_timeouts",
                                  "HTTP connections aborted for not sending complete request "
                                  "headers in time.", value=stats.header_timeouts)

    def _stream_metrics(self) -> Iterator[Metric]:
        hub = self._hub
        publishers = sorted(hub.publishers(), key=lambda p: p.channel)
        target = hub.settings.segment_duration
        yield GaugeMetricFamily(f"{NAMESPACE}_live_streams", "Channels with a live publisher.",
                                value=len(publishers))
        yield CounterMetricFamily(f"{NAMESPACE}_publish_takeovers",
                                  "Publishes that replaced a live publisher on its channel.",
                                  value=hub.publishes_taken_over)
        if hub.spill is not None:
            yield CounterMetricFamily(f"{NAMESPACE}_hls_expired_segments_written",
                                      "Segments written to a file when they left the playlist "
                                      "(--expired-segments disk).", value=hub.spill.written)
            yield CounterMetricFamily(f"{NAMESPACE}_hls_expired_segment_write_failures",
                                      "Expired segments that could not be written and stayed "
                                      "in memory.", value=hub.spill.failed)
            yield GaugeMetricFamily(f"{NAMESPACE}_hls_expired_segments_in_file",
                                    "Expired segments waiting out their retention in the "
                                    "file under --data-dir/expired.", value=hub.spill.in_use)
            file_bytes = GaugeMetricFamily(f"{NAMESPACE}_hls_expired_segment_file_bytes",
                                           "Bytes of that file: holding expired segments, or "
                                           "free for the next ones.", labels=["state"])
            file_bytes.add_metric(["in_use"], hub.spill.bytes_in_use)
            file_bytes.add_metric(["free"], hub.spill.bytes_free)
            yield file_bytes
        ingest = CounterMetricFamily(f"{NAMESPACE}_stream_ingest_bytes",
                                     "Media payload bytes received for the current publish.",
                                     labels=["channel", "track"])
        frames = CounterMetricFamily(f"{NAMESPACE}_stream_video_frames",
                                     "Video frames received for the current publish.",
                                     labels=["channel"])
        keyframes = CounterMetricFamily(f"{NAMESPACE}_stream_keyframes",
                                        "Video keyframes received for the current publish.",
                                        labels=["channel"])
        bitrate = GaugeMetricFamily(f"{NAMESPACE}_stream_bitrate_bits_per_second",
                                    "Ingest bitrate over the last few seconds.",
                                    labels=["channel"])
        fps = GaugeMetricFamily(f"{NAMESPACE}_stream_frames_per_second",
                                "Video frame rate over the last few seconds.", labels=["channel"])
        keyint = GaugeMetricFamily(f"{NAMESPACE}_stream_keyframe_interval_seconds",
                                   "Time between the last two keyframes.", labels=["channel"])
        started = GaugeMetricFamily(f"{NAMESPACE}_stream_start_time_seconds",
                                    "When the current publish started (Unix time).",
                                    labels=["channel"])
        warnings = GaugeMetricFamily(f"{NAMESPACE}_stream_health_warnings",
                                     "Health warnings the feed has now (0 is healthy).",
                                     labels=["channel"])
        info = InfoMetricFamily(f"{NAMESPACE}_stream", "Codecs and size of the live feed.",
                                labels=["channel"])
        for publisher in publishers:
            channel, stats = publisher.channel, publisher.stats
            ingest.add_metric([channel, "video"], stats.video_bytes)
            ingest.add_metric([channel, "audio"], stats.audio_bytes)
            frames.add_metric([channel], stats.video_frames)
            keyframes.add_metric([channel], stats.keyframes)
            bitrate.add_metric([channel], stats.bitrate_bps())
            rate = stats.fps()
            if rate is not None:
                fps.add_metric([channel], rate)
            if stats.keyframe_interval is not None:
                keyint.add_metric([channel], stats.keyframe_interval)
            started.add_metric([channel], stats.started_at)
            warnings.add_metric([channel], len(stats.warnings(target)))
            info.add_metric([channel], {
                "video_codec": stats.video_codec or "",
                "width": str(stats.width or ""),
                "height": str(stats.height or ""),
                "audio_codec": stats.audio_codec or "",
                "sample_rate": str(stats.sample_rate or ""),
            })
        yield from (ingest, frames, keyframes, bitrate, fps, keyint, started, warnings, info)

    def _hls_metrics(self) -> Iterator[Metric]:
        channels = sorted(self._hub.channels.items())
        produced = CounterMetricFamily(f"{NAMESPACE}_hls_segments_produced",
                                       "Segments published to the channel's playlist.",
                                       labels=["channel"])
        dropped = CounterMetricFamily(f"{NAMESPACE}_hls_packets_dropped",
                                      "Packets the segmenter could not use, by reason.",
                                      labels=["channel", "reason"])
        window = GaugeMetricFamily(f"{NAMESPACE}_hls_window_bytes",
                                   "Bytes held for the segments in the playlist window: their "
                                   "media once, and their TS bytes once muxed.",
                                   labels=["channel"])
        held = GaugeMetricFamily(f"{NAMESPACE}_hls_bytes_held",
                                 "Bytes the channel holds: window, expired segments kept for "
                                 "late players, and the open segment (capped per stream).",
                                 labels=["channel"])
        dropped_early = CounterMetricFamily(f"{NAMESPACE}_hls_segments_dropped_early",
                                            "Segments let go before their time to keep the "
                                            "channel under its memory cap.", labels=["channel"])
        forced = CounterMetricFamily(f"{NAMESPACE}_hls_forced_cuts",
                                     "Segments cut without a keyframe to stay within "
                                     "EXT-X-TARGETDURATION.", labels=["channel"])
        clamped = CounterMetricFamily(f"{NAMESPACE}_hls_durations_clamped",
                                      "Segment durations capped at the target after a "
                                      "timestamp jump.", labels=["channel"])
        ts_muxed = CounterMetricFamily(f"{NAMESPACE}_hls_ts_segments_muxed",
                                       "MPEG-TS segments muxed (just in time, from the frames "
                                       "held): for a request, or as they closed while the "
                                       "channel had TS viewers. Never asked for: never muxed.",
                                       labels=["channel", "when"])
        ts_again = CounterMetricFamily(f"{NAMESPACE}_hls_ts_segments_muxed_again",
                                       "TS segments muxed once more for a late request, their "
                                       "bytes having been let go (left the playlist, or the "
                                       "memory cap).", labels=["channel"])
        ts_bytes = CounterMetricFamily(f"{NAMESPACE}_hls_ts_bytes_muxed",
                                       "Bytes of MPEG-TS muxed.", labels=["channel"])
        ts_seconds = CounterMetricFamily(f"{NAMESPACE}_hls_ts_mux_seconds",
                                         "Time spent muxing MPEG-TS segments, on the loop.",
                                         labels=["channel"])
        ts_failed = CounterMetricFamily(f"{NAMESPACE}_hls_ts_mux_failures",
                                        "TS segments that could not be muxed.",
                                        labels=["channel"])
        viewers = GaugeMetricFamily(f"{NAMESPACE}_hls_viewers",
                                    "Distinct clients that fetched the channel within the "
                                    "last target duration.", labels=["channel"])
        for name, live in channels:
            segmenter = live.segmenter
            produced.add_metric([name], segmenter.segments_produced)
            for reason, count in sorted(segmenter.drop_reasons.items()):
                dropped.add_metric([name, reason], count)
            window.add_metric([name], segmenter.bytes_in_window)
            held.add_metric([name], segmenter.bytes_held)
            dropped_early.add_metric([name], segmenter.segments_dropped_early)
            forced.add_metric([name], segmenter.forced_cuts)
            clamped.add_metric([name], segmenter.durations_clamped)
            packager = segmenter.ts_packager
            ts_muxed.add_metric([name, "request"], packager.made_on_request)
            ts_muxed.add_metric([name, "close"], packager.made_at_close)
            ts_again.add_metric([name], packager.made_again)
            ts_bytes.add_metric([name], packager.bytes_made)
            ts_seconds.add_metric([name], packager.seconds)
            ts_failed.add_metric([name], packager.failed)
            span = max(float(segmenter.target_duration_seen), MIN_VIEWER_WINDOW_SECONDS)
            viewers.add_metric([name], self._traffic.viewers(name, span))
        self._traffic.forget_others(name for name, _ in channels)
        yield from (produced, dropped, window, held, dropped_early, forced, clamped, ts_muxed,
                    ts_again, ts_bytes, ts_seconds, ts_failed, viewers)
        yield self._segments.family(f"{NAMESPACE}_hls_segment_duration_seconds",
                                    "Durations of published segments.",
                                    (name for name, _ in channels))
        requests = CounterMetricFamily(f"{NAMESPACE}_hls_requests",
                                       "HLS requests answered, by kind and status.",
                                       labels=["kind", "status"])
        for (kind, status), count in sorted(self._traffic.requests.items()):
            requests.add_metric([kind, str(status)], count)
        yield requests
        skips = self._hub.reader_skips
        yield CounterMetricFamily(f"{NAMESPACE}_hls_reader_skips",
                                  "Times a segmenter fell behind ingest and skipped to the "
                                  "next keyframe.", value=skips.times)
        yield CounterMetricFamily(f"{NAMESPACE}_hls_reader_frames_skipped",
                                  "Media frames segmenters skipped to catch up with ingest.",
                                  value=skips.frames)

    def _thumbnail_metrics(self, stats: ThumbnailStats) -> Iterator[Metric]:
        yield CounterMetricFamily(f"{NAMESPACE}_thumbnails_rendered",
                                  "Keyframes decoded and encoded as JPEG.", value=stats.rendered)
        yield CounterMetricFamily(f"{NAMESPACE}_thumbnail_render_failures",
                                  "Keyframes that could not be turned into a JPEG.",
                                  value=stats.failed)
        yield CounterMetricFamily(f"{NAMESPACE}_thumbnail_renders_skipped",
                                  "Renders not started because the renderer was busy "
                                  "(an older picture was served).", value=stats.skipped)
        yield CounterMetricFamily(f"{NAMESPACE}_thumbnail_render_seconds",
                                  "Time spent rendering thumbnails (off the event loop).",
                                  value=stats.render_seconds)


def with_node(families: Iterable[Metric], node: str | None) -> Iterator[Metric]:
    """The families with the `node` label on every sample (copies: a collector may hand
    out the same family objects at every scrape); as they are when `node` is None."""
    for family in families:
        if node is not None:
            family = copy.copy(family)
            family.samples = [sample._replace(labels={**sample.labels, "node": node})
                              for sample in family.samples]
        yield family


class NodeLabelled(Collector):
    """A standard collector (process_*, python_*) whose series carry the node label too, so
    that no series of two nodes collide where they are scraped into one place."""

    def __init__(self, inner: Collector, node: Callable[[], str | None]) -> None:
        self._inner = inner
        self._node = node

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        return with_node(self._inner.collect(), self._node())


class ServerMetrics:
    """The /metrics endpoint of one MediaServer, with its own registry."""

    def __init__(
        self,
        hub: StreamHub,
        rtmp: Callable[[], RtmpServer | None],
        thumbnails: Callable[[], ThumbnailStats] | None = None,
        http: Callable[[], HttpGate | None] | None = None,
    ) -> None:
        self.traffic = HlsTraffic()
        self.segments = SegmentDurations()
        hub.segment_listeners.append(self.segments.observe)
        # Set when this server is a node of a cluster: the `node` label's value.
        self.node: str | None = None
        # More families of our own, read at scrape time (the cluster's, the edge's),
        # labelled like the rest.
        self.sources: list[Callable[[], Iterable[Metric]]] = []
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(ServerCollector(hub, rtmp, self.traffic, self.segments,
                                               thumbnails, http, lambda: self.node,
                                               self.sources))
        # CPU, memory, file descriptors, GC: the standard process_* and python_* series.
        # Made on a registry of their own (GCCollector insists on one), served labelled.
        aside = CollectorRegistry(auto_describe=False)
        for standard in (ProcessCollector(registry=aside), PlatformCollector(registry=aside),
                         GCCollector(registry=aside)):
            self.registry.register(NodeLabelled(standard, lambda: self.node))

    def add_routes(self, app: web.Application, path: str = "/metrics") -> None:
        app.router.add_get(path, self._handle)

    async def _handle(self, request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encoder(self.registry),
                            headers={"Content-Type": content_type, "Cache-Control": "no-store"})


def hot_path_families(stats: HotStats) -> Iterator[Metric]:
    """The hot path's share of HTTP (mediaserver.hot_http): a source for ServerMetrics."""
    yield CounterMetricFamily(f"{NAMESPACE}_http_hot_answers",
                              "HTTP requests answered below aiohttp from pre-built bytes "
                              "(hot HLS requests).", value=stats.answered)
    yield CounterMetricFamily(f"{NAMESPACE}_http_connections_handed_over",
                              "HTTP connections handed to aiohttp at their first request "
                              "that is not hot.", value=stats.handed_over)
