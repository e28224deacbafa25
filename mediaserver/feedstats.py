"""What the ingest really measured about one feed: bitrate, fps, keyframe interval, warnings.

Counting is a few integer additions per media message, and one clock read per
batch of them (`tick`); the rates are worked out only when someone asks (API,
metrics scrape), from per-second buckets.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

# Rates are averaged over this many whole seconds of wall clock.
RATE_WINDOW_SECONDS = 5
# A feed with video but no audio config after this long gets a "no audio" warning.
NO_AUDIO_AFTER_SECONDS = 5.0


class FeedStats:
    """Per-publish counters; rates derived at read time."""

    __slots__ = (
        "_bucket_bytes",
        "_bucket_frames",
        "_bucket_second",
        "_buckets",
        "_clock",
        "_last_keyframe_dts",
        "audio_bytes",
        "audio_channels",
        "audio_codec",
        "audio_frames",
        "backwards_timestamps",
        "height",
        "keyframe_interval",
        "keyframes",
        "malformed_tags",
        "metadata",
        "sample_rate",
        "started_at",
        "started_mono",
        "unknown_codecs",
        "video_bytes",
        "video_codec",
        "video_frames",
        "width",
    )

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.started_at = time.time()
        self.started_mono = clock()
        self.video_bytes = 0
        self.audio_bytes = 0
        self.video_frames = 0
        self.audio_frames = 0
        self.keyframes = 0
        self.keyframe_interval: float | None = None
        self._last_keyframe_dts: int | None = None
        self.backwards_timestamps = 0
        self.malformed_tags = 0
        self.video_codec: str | None = None
        self.width: int | None = None
        self.height: int | None = None
        self.audio_codec: str | None = None
        self.sample_rate: int | None = None
        self.audio_channels: int | None = None
        self.unknown_codecs: set[str] = set()
        self.metadata: dict[str, object] = {}
        # (second, bytes, video frames) for the last RATE_WINDOW_SECONDS whole seconds.
        self._buckets: deque[tuple[int, int, int]] = deque(maxlen=RATE_WINDOW_SECONDS + 1)
        self._bucket_second = int(self.started_mono)
        self._bucket_bytes = 0
        self._bucket_frames = 0

    def _roll(self, now: float) -> None:
        second = int(now)
        if second != self._bucket_second:
            self._buckets.append((self._bucket_second, self._bucket_bytes, self._bucket_frames))
            self._bucket_second = second
            self._bucket_bytes = 0
            self._bucket_frames = 0

    def tick(self) -> None:
        """Read the clock once for the frames that follow (one socket read's worth):
        the per-second buckets need no finer time than that."""
        self._roll(self._clock())

    def add_video(self, size: int, dts: int, keyframe: bool) -> None:
        self.video_bytes += size
        self.video_frames += 1
        self._bucket_bytes += size
        self._bucket_frames += 1
        if keyframe:
            self.keyframes += 1
            if self._last_keyframe_dts is not None and dts > self._last_keyframe_dts:
                self.keyframe_interval = (dts - self._last_keyframe_dts) / 1000.0
            self._last_keyframe_dts = dts

    def add_audio(self, size: int) -> None:
        self.audio_bytes += size
        self.audio_frames += 1
        self._bucket_bytes += size

    def add_other(self, size: int) -> None:
        """Sequence headers and tags we do not remux still count as ingest bytes."""
        self._bucket_bytes += size

    def _window(self) -> tuple[float, int, int]:
        """Seconds covered and bytes/frames in them: the last whole seconds, or since start."""
        now = self._clock()
        self._roll(now)
        current = int(now)
        recent = [b for b in self._buckets if current - b[0] <= RATE_WINDOW_SECONDS]
        if len(recent) >= RATE_WINDOW_SECONDS:
            return float(len(recent)), sum(b[1] for b in recent), sum(b[2] for b in recent)
        # Young feed: everything since the start over the time elapsed.
        elapsed = max(now - self.started_mono, 0.001)
        total_bytes = sum(b[1] for b in recent) + self._bucket_bytes
        total_frames = sum(b[2] for b in recent) + self._bucket_frames
        return elapsed, total_bytes, total_frames

    def bitrate_bps(self) -> float:
        seconds, size, _ = self._window()
        return size * 8 / seconds

    def fps(self) -> float | None:
        if self.video_codec is None:
            return None
        seconds, _, frames = self._window()
        return frames / seconds

    def warnings(self, segment_target: float) -> tuple[str, ...]:
        found: list[str] = []
        if self.keyframe_interval is not None and self.keyframe_interval > segment_target + 0.05:
            found.append(
                f"keyframe interval {self.keyframe_interval:.2f}s is longer than the "
                f"{segment_target:g}s segment target: segments will be longer"
            )
        if (
            self.audio_codec is None
            and self._clock() - self.started_mono > NO_AUDIO_AFTER_SECONDS
        ):
            found.append("no audio track")
        if self.video_codec is None and self._clock() - self.started_mono > NO_AUDIO_AFTER_SECONDS:
            found.append("no video track")
        if self.backwards_timestamps:
            found.append(f"timestamps jumped back {self.backwards_timestamps} times")
        if self.malformed_tags:
            found.append(f"{self.malformed_tags} malformed tags dropped")
        found.extend(f"unsupported codec {codec} ignored" for codec in sorted(self.unknown_codecs))
        return tuple(found)
