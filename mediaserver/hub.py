"""The stream hub: the one owner of which channel is live, with which publisher and playlist.

Every state change (publish, takeover, unpublish, kick, grace expiry) happens
here, synchronously on the event loop, so there is no second copy of the truth
to race with. Each channel's HLS segmenter is a reader behind a bounded queue
that skips (to the next keyframe) when it falls behind, and is never dropped.
A publisher that unpublishes ends its playlist at once; one whose connection
drops gets the grace period to come back to the same playlist.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from control_api.live import StreamStats
from hls.media import MediaPacket
from hls.plain_frames import PUSH_PLAIN_FRAMES
from hls.resume import PlaylistResume
from hls.segmenter import Segmenter, SegmentInfo
from hls.spill import SpillDirectory

from .mux_ahead import MuxAhead
from .publisher import PublishEnded, Publisher, ReaderItem, TracksChanged
from .readers import SKIPPED, DrainScheduler, QueuedReader, SkipCounters, Skipped

log = logging.getLogger("mediaserver.hub")

# How long an ended playlist (ENDLIST) stays servable before it is dropped from
# memory: long enough for players to fetch the end of it.
ENDED_RETENTION_SECONDS = 60.0
SWEEP_INTERVAL = 1.0


@dataclass(frozen=True, slots=True)
class HubSettings:
    segment_duration: float = 2.0
    playlist_size: int = 6
    grace_period: float = 30.0
    duplicate_publish: str = "takeover"  # or "reject"
    max_stream_memory: int = 64 * 1024 * 1024
    ended_retention: float = ENDED_RETENTION_SECONDS
    part_duration: float | None = 0.333  # LL-HLS PART-TARGET; None: no LL-HLS rendition

    def check(self) -> None:
        """Raise ValueError for settings no segmenter could be made with (a start-up error
        is better than every publish failing)."""
        Segmenter(self.segment_duration, self.playlist_size, part_duration=self.part_duration)


@dataclass(frozen=True, slots=True)
class HubEvent:
    kind: str  # "stream.started" | "stream.ended"
    channel: str
    reason: str
    time: float


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a publish cannot start: description for the encoder, result for counting."""

    result: str
    description: str

    @classmethod
    def blocked(cls, channel: str, seconds: float) -> Refusal:
        return cls("blocked", f"channel {channel} is blocked for {seconds:.0f} more seconds")

    @classmethod
    def duplicate(cls, channel: str) -> Refusal:
        return cls("duplicate", f"channel {channel} already has a live publisher")


class SegmenterFeed:
    """A channel's HLS reader: what its queue hands over goes into its segmenter.

    Kept apart from LiveChannel on purpose. The channel holds its reader, and the
    reader holds these bound methods: were they the channel's own, the three would
    form a reference cycle, and a channel the hub forgot (its segments with it)
    would wait for a full pass of the cyclic collector, minutes apart in a busy
    server; a churning soak grew ~3.5 MB per publish that way (issue 9). Holding
    nothing that holds it, a channel is freed by reference counting the moment the
    hub lets go of it, whichever way it goes.
    """

    __slots__ = ("configured", "name", "offered_video", "segmenter")

    def __init__(self, segmenter: Segmenter, name: str = "") -> None:
        self.segmenter = segmenter
        self.name = name  # the channel's, for logs
        # Ingest side: whether the tracks offered so far include video (what a skip
        # resumes on).
        self.offered_video = False
        # Reader side: the tracks the segmenter was last configured with (restored
        # after a skip).
        self.configured: TracksChanged | None = None

    def resumes(self, item: ReaderItem) -> bool:
        """Where a skipping reader may pick up: a video keyframe (audio-only: any frame)."""
        return type(item) is MediaPacket and item.keyframe and (
            item.kind == "video" or not self.offered_video)

    def handle_batch(self, items: list[ReaderItem | Skipped]) -> int:
        """handle() each item in order, a frame straight into Segmenter.push (the reader's
        drain makes one call per read, not one per frame), runs of plain frames through
        the compiled fast path where built (hls.plain_frames); how many failed (logged)."""
        failed = 0
        segmenter = self.segmenter
        push = segmenter.push
        index, count = 0, len(items)
        while index < count:
            if PUSH_PLAIN_FRAMES is not None:
                try:
                    index = PUSH_PLAIN_FRAMES(segmenter, items, index)
                except Exception:  # then the frame at `index` goes to push(), which decides
                    log.exception("HLS fast path of channel=%s failed", self.name)
                if index == count:
                    break
            item = items[index]
            index += 1
            try:
                if type(item) is MediaPacket:
                    push(item)
                else:
                    self.handle(item)
            except Exception:
                failed += 1
                log.exception("HLS reader of channel=%s failed on an item", self.name)
        return failed

    def handle(self, item: ReaderItem | Skipped) -> None:
        """One queued item into the segmenter."""
        segmenter = self.segmenter
        if type(item) is MediaPacket:
            segmenter.push(item)
        elif isinstance(item, TracksChanged):
            self.configured = item
            segmenter.configure(item.video, item.audio)
        elif isinstance(item, PublishEnded):
            self.configured = None
            segmenter.publisher_gone()
        elif item is SKIPPED and self.configured is not None:
            # Media is missing here: close the period at the last frame the segmenter
            # got and start another at the resume keyframe (EXT-X-DISCONTINUITY), so
            # no segment spans the gap.
            segmenter.publisher_gone()
            segmenter.configure(self.configured.video, self.configured.audio)


@dataclass(eq=False, slots=True)
class LiveChannel:
    name: str
    segmenter: Segmenter
    feed: SegmenterFeed = field(init=False)
    reader: QueuedReader[ReaderItem] = field(init=False)
    publisher: Publisher | None = None
    left_at: float | None = None  # monotonic time the last publisher left
    ended_at: float | None = None  # monotonic time the playlist got ENDLIST
    # Extra readers beside HLS (thumbnails): each must return at once and never raise
    # into ingest; a slow one keeps its own bounded backlog.
    taps: list[Callable[[ReaderItem], None]] = field(default_factory=list)

    def deliver(self, item: ReaderItem) -> None:
        """The publisher's output: the HLS reader first, then every tap."""
        if type(item) is TracksChanged:
            self.feed.offered_video = item.video is not None
        self.reader.offer(item)
        for tap in self.taps:
            try:
                tap(item)
            except Exception:
                log.exception("tap failed on channel=%s", self.name)

    def deliver_batch(self, items: list[ReaderItem]) -> None:
        """deliver() each item, in order; the HLS reader takes them in one call when
        it keeps up (then no skip asks `resumes`, so offered_video may be set first)."""
        if not self.reader.offer_all(items):
            for item in items:
                self.deliver(item)
            return
        for item in items:
            if type(item) is TracksChanged:
                self.feed.offered_video = item.video is not None
        for tap in self.taps:
            for item in items:
                try:
                    tap(item)
                except Exception:
                    log.exception("tap failed on channel=%s", self.name)


def _is_media(item: ReaderItem) -> bool:
    return type(item) is MediaPacket


class StreamHub:
    def __init__(
        self,
        settings: HubSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings or HubSettings()
        self._clock = clock
        self.channels: dict[str, LiveChannel] = {}
        self._blocked_until: dict[str, float] = {}
        self.listeners: list[Callable[[HubEvent], None]] = []
        # Called with each new channel's name; each returns a tap for LiveChannel.taps.
        self.tap_factories: list[Callable[[str], Callable[[ReaderItem], None]]] = []
        # Called with (channel, segment) each time a channel publishes a segment.
        self.segment_listeners: list[Callable[[str, SegmentInfo], None]] = []
        # Called once per sweep with the channels it dropped from memory.
        self.drop_listeners: list[Callable[[list[str]], None]] = []
        # Called with a channel's name when its playlist ends for good (ENDLIST: an
        # unpublish, the grace period over, a shutdown), after its last segment.
        self.end_listeners: list[Callable[[str], None]] = []
        # Over every channel's HLS reader, ended channels included (for /metrics).
        self.reader_skips = SkipCounters()
        self.publishes_taken_over = 0
        self._sweeper: asyncio.Task[None] | None = None
        self._drains = DrainScheduler()
        self._mux_ahead = MuxAhead()
        # Where channels write their expired segments (None: they stay in memory).
        self.spill: SpillDirectory | None = None

    # ---- publishing -----------------------------------------------------------------

    def refusal_for(self, channel: str) -> Refusal | None:
        """A reason this channel cannot be published to right now, if there is one."""
        blocked = self.blocked_for(channel)
        if blocked > 0:
            return Refusal.blocked(channel, blocked)
        live = self.channels.get(channel)
        if (
            live is not None
            and live.publisher is not None
            and self.settings.duplicate_publish == "reject"
        ):
            return Refusal.duplicate(channel)
        return None

    def start_publish(
        self,
        channel: str,
        peer: str,
        session: object = None,
        resume: PlaylistResume | None = None,
    ) -> Publisher:
        """Attach a new publisher; a live one is taken over (closed) first.

        `resume`: the playlist was carried on elsewhere since this node last held
        it (another node was its origin), so a copy kept here in its grace period is
        stale: it is dropped and the new playlist carries on from `resume`.
        """
        live = self.channels.get(channel)
        if live is not None and resume is not None and live.publisher is None:
            self._drop_channel(live, "carried on by another node")
            live = None
        if live is None or live.ended_at is not None:
            live = self._new_channel(channel, resume)
        old = live.publisher
        publisher = Publisher(channel, peer, live.deliver, self._publisher_ended,
                              deliver_batch=live.deliver_batch)
        publisher.session = session
        live.publisher = publisher
        live.left_at = None
        if old is not None:
            self.publishes_taken_over += 1
            log.info("takeover channel=%s old_peer=%s new_peer=%s", channel, old.peer, peer)
            old_session = old.session
            old.detach()  # its end is this takeover, not a channel event
            live.reader.offer(PublishEnded("taken over"))
            if old_session is not None:
                old_session.kick("another publisher took over this channel")
        else:
            self._emit("stream.started", channel, "publish")
        log.info("live channel=%s peer=%s", channel, peer)
        return publisher

    def _new_channel(self, name: str, resume: PlaylistResume | None = None) -> LiveChannel:
        settings = self.settings
        # The segmenter holds its window, expired-but-kept and open segments within this.
        segmenter = Segmenter(
            target_duration=settings.segment_duration,
            window=settings.playlist_size,
            max_bytes=settings.max_stream_memory,
            label=name,
            on_segment=lambda info: self._segment_done(name, info),
            resume=resume,
            part_duration=settings.part_duration,
            on_ts_due=self._mux_ahead.request,
            spill=self.spill,
        )

        live = LiveChannel(name, segmenter)
        feed = live.feed = SegmenterFeed(segmenter, name)
        live.reader = QueuedReader(f"hls:{name}", feed.handle, skippable=_is_media,
                                   resumes=feed.resumes, totals=self.reader_skips,
                                   scheduler=self._drains, handle_batch=feed.handle_batch)
        live.taps.extend(factory(name) for factory in self.tap_factories)
        self.channels[name] = live
        return live

    def _segment_done(self, channel: str, info: SegmentInfo) -> None:
        for listener in self.segment_listeners:
            try:
                listener(channel, info)
            except Exception:
                log.exception("segment listener failed on channel=%s", channel)

    def _publisher_ended(self, publisher: Publisher, reason: str, unpublished: bool) -> None:
        live = self.channels.get(publisher.channel)
        if live is None or live.publisher is not publisher:
            return
        live.publisher = None
        live.left_at = self._clock()
        if unpublished:
            # The encoder stopped on purpose: it is not coming back, viewers get the end now.
            log.info("publisher stopped channel=%s peer=%s reason=%s",
                     live.name, publisher.peer, reason)
            self._end_playlist(live, "publisher stopped")
        else:
            log.info("publisher left channel=%s peer=%s reason=%s (grace %.0fs)",
                     live.name, publisher.peer, reason, self.settings.grace_period)
        self._emit("stream.ended", live.name, reason)

    def _end_playlist(self, live: LiveChannel, why: str) -> None:
        """Hand the segmenter what is queued, then end its playlist (EXT-X-ENDLIST)."""
        live.reader.flush()
        live.segmenter.end()
        live.reader.clear()
        live.feed.configured = None
        if live.ended_at is None:
            live.ended_at = self._clock()
            log.info("playlist ended channel=%s (%s)", live.name, why)
            for listener in self.end_listeners:
                try:
                    listener(live.name)
                except Exception:
                    log.exception("end listener failed on channel=%s", live.name)

    # ---- control --------------------------------------------------------------------

    def kick(self, channel: str, reason: str, block_seconds: float = 0.0) -> bool:
        if block_seconds > 0:
            self._blocked_until[channel] = self._clock() + block_seconds
        live = self.channels.get(channel)
        if live is None or live.publisher is None:
            return False
        publisher = live.publisher
        log.info("kick channel=%s peer=%s reason=%s block=%.0fs",
                 channel, publisher.peer, reason, block_seconds)
        if publisher.session is not None:
            publisher.session.kick(reason)  # ends the publisher through on_end
        if not publisher.ended:
            publisher.on_end(reason)
        return True

    def release(self, channel: str, reason: str) -> bool:
        """The channel moved to another node: close its publisher here (True if there
        was one) and drop this node's copy of the playlist, without ENDLIST, so that
        viewers here are served the carried-on playlist from the new origin."""
        live = self.channels.get(channel)
        if live is None:
            return False
        kicked = self.kick(channel, reason)
        # The publisher's end is queued: handling it publishes the last segment, whose
        # numbering is what the new origin carries on.
        live.reader.flush()
        self._drop_channel(live, reason)
        return kicked

    def _drop_channel(self, live: LiveChannel, why: str) -> None:
        """Forget a channel at once (its playlist now lives elsewhere)."""
        live.reader.clear()
        live.segmenter.end()
        if self.channels.get(live.name) is live:
            del self.channels[live.name]
        log.info("playlist dropped from memory channel=%s (%s)", live.name, why)
        self._notify_dropped([live.name])

    def _notify_dropped(self, names: list[str]) -> None:
        for listener in self.drop_listeners:
            try:
                listener(names)
            except Exception:
                log.exception("drop listener failed")

    def blocked_for(self, channel: str) -> float:
        until = self._blocked_until.get(channel)
        if until is None:
            return 0.0
        remaining = until - self._clock()
        if remaining <= 0:
            del self._blocked_until[channel]
            return 0.0
        return remaining

    # ---- queries --------------------------------------------------------------------

    def segmenter(self, channel: str) -> Segmenter | None:
        live = self.channels.get(channel)
        return live.segmenter if live is not None else None

    def is_live(self, channel: str) -> bool:
        live = self.channels.get(channel)
        return live is not None and live.publisher is not None

    def publishers(self) -> list[Publisher]:
        return [c.publisher for c in self.channels.values() if c.publisher is not None]

    def live_streams(self) -> list[StreamStats]:
        out = [self._stats_of(publisher) for publisher in self.publishers()]
        return sorted(out, key=lambda s: s.channel)

    def stream_stats(self, channel: str) -> StreamStats | None:
        live = self.channels.get(channel)
        if live is None or live.publisher is None:
            return None
        return self._stats_of(live.publisher)

    def _stats_of(self, publisher: Publisher) -> StreamStats:
        stats = publisher.stats
        fps = stats.fps()
        return StreamStats(
            channel=publisher.channel,
            publisher=publisher.peer,
            started_at=stats.started_at,
            video_codec=stats.video_codec,
            width=stats.width,
            height=stats.height,
            fps=round(fps, 2) if fps is not None else None,
            bitrate_bps=round(stats.bitrate_bps()),
            keyframe_interval=stats.keyframe_interval,
            audio_codec=stats.audio_codec,
            sample_rate=stats.sample_rate,
            audio_channels=stats.audio_channels,
            warnings=stats.warnings(self.settings.segment_duration),
        )

    # ---- lifecycle ------------------------------------------------------------------

    def sweep(self) -> None:
        """End playlists whose publisher did not come back in time; forget old ones."""
        now = self._clock()
        dropped = []
        for name, live in list(self.channels.items()):
            if live.publisher is None and live.ended_at is None and live.left_at is not None:
                if now - live.left_at >= self.settings.grace_period:
                    self._end_playlist(live, "grace period over")
            elif live.ended_at is not None and now - live.ended_at >= self.settings.ended_retention:
                del self.channels[name]
                dropped.append(name)
                log.info("playlist dropped from memory channel=%s", name)
        if dropped:
            self._notify_dropped(dropped)

    async def run_sweeper(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            try:
                self.sweep()
            except Exception:
                log.exception("hub sweep failed")

    def start(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(self.run_sweeper())

    def shutdown(self) -> None:
        """Close every publisher and end every playlist (ENDLIST)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        for live in list(self.channels.values()):
            if live.publisher is not None:
                self.kick(live.name, "server shutting down")
            self._end_playlist(live, "server shutting down")

    def _emit(self, kind: str, channel: str, reason: str) -> None:
        event = HubEvent(kind, channel, reason, time.time())
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                log.exception("hub listener failed on %s", kind)
