"""The steady state of a publish: plain coded frames in, MediaPackets out, in one call.

Once a publish's tracks are declared, nearly every message is a plain coded
frame (rtmp.flv.coded_frame): its timestamp is unwrapped, it is counted, and it
becomes a MediaPacket. `take_coded_frames` does that for a run of frames and
stops at the first one that needs the Publisher's full handling (a sequence
header, an odd tag), so the Publisher keeps every decision and the order.

This module is the reference; mediaserver/_coded_frames.pyx is its compiled
twin (the loop and TrackClock), used unless MEDIASERVER_NO_EXTENSIONS is set
(see rtmp.extensions).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hls.media import MediaPacket
from rtmp.extensions import extensions_wanted
from rtmp.flv import coded_frame

if TYPE_CHECKING:
    from .feedstats import FeedStats

# RTMP message type of video (audio is 8).
TAG_VIDEO = 9
_WRAP = 1 << 32
_HALF_WRAP = 1 << 31


class TrackClock:
    """Unwraps one track's 32-bit RTMP timestamps and keeps them from going back."""

    __slots__ = ("last", "offset", "raw")

    def __init__(self) -> None:
        self.raw: int | None = None
        self.offset = 0
        self.last: int | None = None

    def unwrap(self, raw: int) -> tuple[int, bool]:
        """(monotonic ms, whether the encoder's clock went backwards)."""
        if self.raw is not None and raw < self.raw and self.raw - raw > _HALF_WRAP:
            self.offset += _WRAP
        self.raw = raw
        value = raw + self.offset
        if self.last is not None and value < self.last:
            return self.last, True
        self.last = value
        return value, False


def take_coded_frames(
    frames: list[tuple[int, int, bytes]],
    start: int,
    video: bool,
    audio: bool,
    video_clock: TrackClock,
    audio_clock: TrackClock,
    stats: FeedStats,
    out: list[Any],
) -> int:
    """Handle frames[start:] while they are plain coded frames; the index it stopped at.

    Each is unwrapped on its track's clock (`unwrap(timestamp) -> (dts, went_back)`)
    and counted in `stats`; it becomes a MediaPacket in `out` if its track is
    declared (`video`, `audio`). Returns len(frames) when all were plain.
    """
    for index in range(start, len(frames)):
        type_id, timestamp, payload = frames[index]
        frame = coded_frame(type_id, payload)
        if frame is None:
            return index
        keyframe, composition_time, data = frame
        if type_id == TAG_VIDEO:
            dts, backwards = video_clock.unwrap(timestamp)
            stats.add_video(len(payload), dts, keyframe)
            if backwards:
                stats.backwards_timestamps += 1
            if video:
                pts = dts + composition_time
                out.append(MediaPacket("video", dts, pts if pts >= dts else dts, keyframe, data))
        else:
            dts, backwards = audio_clock.unwrap(timestamp)
            stats.add_audio(len(payload))
            if backwards:
                stats.backwards_timestamps += 1
            if audio:
                out.append(MediaPacket("audio", dts, dts, True, data))
    return len(frames)


# The compiled twins go together: the compiled loop unwraps on compiled clocks in C.
PureTrackClock = TrackClock
pure_take_coded_frames = take_coded_frames
COMPILED_FRAMES = False
if extensions_wanted():
    try:
        from ._coded_frames import TrackClock, take_coded_frames  # type: ignore[no-redef]
    except ImportError:
        pass
    else:
        COMPILED_FRAMES = True
