"""Cut one channel's packets into MPEG-TS segments and keep the live window.

Cut rules (all by dts, in milliseconds):

- A segment starts at a video keyframe; what comes before a publish's first
  keyframe is dropped. Audio-only publishes cut on audio frames.
- A segment is cut at the first keyframe once it has lasted the target
  duration, less one frame: keyframes that land a frame early in decode
  order (millisecond rounding, timestamp jitter, an open GOP's leading
  pictures) still cut where the encoder meant to. A longer keyframe interval
  simply makes longer segments, and TARGETDURATION follows them up.
- Memory bound: a segment that reaches ``max_segment_duration`` (default
  ``FORCED_CUT_TARGETS`` x target) or
  ``max_segment_bytes`` without a keyframe is cut anyway. The next segment
  then does not start with a keyframe, so the playlist drops
  EXT-X-INDEPENDENT-SEGMENTS until that segment leaves the window.

Output timeline: every publish ("period") is shifted by one offset so that
the first period starts at ``TIMELINE_ORIGIN_MS`` and each later period
continues where the previous one ended. Encoders restart their clocks at 0
on reconnect; players see monotonic timestamps and one EXT-X-DISCONTINUITY.

Duration of a segment: the next segment's first dts minus its own; for the
last segment of a period: its last dts minus its first plus one frame.
"""

from __future__ import annotations

import enum
import logging
import math
import secrets
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

from .aac import parse_audio_specific_config
from .continuity import ContinuityCounters
from .media import MediaPacket, TrackConfig, TrackKind
from .muxer import MuxerError, TrackSet, TsMuxer
from .playlist import MediaPlaylist, PartialSegment, SegmentEntry

log = logging.getLogger("hls.segmenter")

# Where the first period's first keyframe lands on the output timeline. Audio
# that arrives just after that keyframe may be stamped a little earlier; the
# headroom keeps it positive, because libavformat shifts negative timestamps
# and would shift only the segment that happens to hold them.
TIMELINE_ORIGIN_MS = 10_000
# A segment without a keyframe is cut after this many target durations. Five
# leaves room for OBS's "auto" keyframe interval (x264's 250 frames: 8.3 s at
# 30 fps) at the default 2 s target, while still bounding a stream that sends
# one keyframe and never another.
FORCED_CUT_TARGETS = 5.0
# ...or once it holds this many payload bytes (a 50 Mbit/s feed fills it in ~10 s).
MAX_SEGMENT_BYTES = 64 * 1024 * 1024
# Segments that slid out of the playlist stay fetchable this long (in segments):
# a player that loaded the previous playlist may still ask for them.
RECENTLY_EXPIRED_KEPT = 2
# Frame duration guess before a video track has shown two frames (30 fps).
DEFAULT_VIDEO_FRAME_MS = 1000 / 30
# Gaps between consecutive frames beyond this are stalls, not the frame rate.
MAX_FRAME_DURATION_MS = 1000


class State(enum.Enum):
    """Where the segmenter is in the life of its channel."""

    IDLE = "idle"  # no publisher: waiting for configure()
    WAITING_KEYFRAME = "waiting_keyframe"  # configured; nothing to cut until a keyframe
    RECORDING = "recording"  # a segment is open
    ENDED = "ended"  # ENDLIST written; nothing more is accepted


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """What `on_segment` observers learn about each published segment."""

    sequence: int
    name: str
    duration: float  # seconds
    size: int  # bytes
    discontinuity: bool
    independent: bool


class _OpenSegment:
    """The segment being written. Owns its muxer; LL-HLS parts will be byte ranges of it."""

    __slots__ = (
        "discontinuity",
        "first_dts",
        "independent",
        "last_anchor_dts",
        "muxer",
        "name",
        "parts",
        "payload_bytes",
        "sequence",
        "wall_clock",
    )

    def __init__(
        self,
        sequence: int,
        name: str,
        muxer: TsMuxer,
        first_dts: int,
        wall_clock: float,
        discontinuity: bool,
        independent: bool,
    ) -> None:
        self.sequence = sequence
        self.name = name
        self.muxer = muxer
        self.first_dts = first_dts
        self.last_anchor_dts = first_dts
        self.wall_clock = wall_clock
        self.discontinuity = discontinuity
        self.independent = independent
        self.payload_bytes = 0
        self.parts: list[PartialSegment] = []


class Segmenter:
    """One channel's HLS output: packets in; playlist text and segment bytes out.

    Synchronous and loop-bound: call it from the event loop that owns the
    channel. Cost per packet is one PyAV mux call (see hls.muxer).
    """

    def __init__(
        self,
        target_duration: float = 2.0,
        window: int = 6,
        clock: Callable[[], float] = time.time,
        *,
        max_segment_duration: float | None = None,
        max_segment_bytes: int = MAX_SEGMENT_BYTES,
        on_segment: Callable[[SegmentInfo], None] | None = None,
        name_token: str | None = None,
        label: str = "",
    ) -> None:
        """`name_token` goes into segment names (default: random) so that a channel
        restarted later never reuses a URL that caches may hold as immutable;
        pass "" for plain ``seg{sequence}.ts``. `label` prefixes log lines."""
        if target_duration <= 0:
            raise ValueError("target_duration must be positive")
        if max_segment_duration is None:
            max_segment_duration = FORCED_CUT_TARGETS * target_duration
        if max_segment_duration < target_duration:
            raise ValueError("max_segment_duration must be at least target_duration")
        if max_segment_bytes <= 0:
            raise ValueError("max_segment_bytes must be positive")
        self.target_duration = target_duration
        self.max_segment_duration = max_segment_duration
        self.max_segment_bytes = max_segment_bytes
        self._target_ms = round(target_duration * 1000)
        self._max_ms = round(max_segment_duration * 1000)
        self._clock = clock
        self._on_segment = on_segment
        self._label = label
        token = secrets.token_hex(4) if name_token is None else name_token
        self._name_suffix = f"-{token}.ts" if token else ".ts"
        self._playlist = MediaPlaylist(window, target_duration)

        self._state = State.IDLE
        self._configs: tuple[TrackConfig | None, TrackConfig | None] | None = None
        self._tracks: TrackSet | None = None
        self._anchor: str | None = None  # the track that cuts: video if any, else audio
        self._offset: int | None = None  # input ms → output ms, per period
        self._timeline_end: float | None = None  # output ms where the last period ended
        self._discontinuity_next = False
        self._open: _OpenSegment | None = None
        self._last_dts: dict[str, int] = {}
        self._frame_ms: dict[str, float] = {}

        self._data: dict[str, bytes | bytearray] = {}
        self._expired: deque[tuple[str, bytes | bytearray]] = deque(maxlen=RECENTLY_EXPIRED_KEPT)
        self._bytes_in_window = 0
        self._segments_produced = 0
        self._last_segment_duration = 0.0
        self._longest_segment_duration = 0.0
        self._drops: Counter[str] = Counter()
        self._continuity = ContinuityCounters()

    # ---- publisher side ---------------------------------------------------------------

    def configure(self, video: TrackConfig | None, audio: TrackConfig | None) -> None:
        """Declare a publish's tracks: at its start, and again when a sequence header changes.

        The same configs again are a no-op (encoders repeat sequence headers).
        Different configs mid-publish close the open segment; the next one
        starts at a keyframe with EXT-X-DISCONTINUITY (encoding parameters changed)
        on the same timeline.
        """
        if self._state is State.ENDED:
            log.warning("%sconfigure() after end(): ignored", self._prefix())
            return
        in_period = self._state is not State.IDLE
        if in_period and self._configs == (video, audio):
            return
        if in_period:
            self._close_open_segment(next_first_dts=None)
            self._discontinuity_next |= self._segments_produced > 0
        else:
            self._offset = None  # a new publisher brings a new clock
        self._set_tracks(video, audio)
        self._state = State.WAITING_KEYFRAME

    def push(self, packet: MediaPacket) -> None:
        """Take one packet (in arrival order). Unusable packets are counted and dropped."""
        kind = packet.kind
        if self._state is State.IDLE or self._state is State.ENDED:
            self._drop("not_configured")
            return
        assert self._tracks is not None
        if kind not in self._tracks.kinds:
            self._drop("undeclared_track")
            return
        starts_segment = kind == self._anchor and packet.keyframe
        if self._offset is None:
            if not starts_segment:
                self._drop("before_keyframe")
                return
            self._offset = self._period_offset(packet.dts)

        dts = packet.dts + self._offset
        pts = packet.pts + self._offset
        last = self._last_dts.get(kind)
        if last is not None and dts <= last:
            if dts < last:
                self._drop("backwards_dts")
                return
            dts = last + 1  # a repeated timestamp: muxers need strictly increasing dts
        if pts < dts:
            pts = dts
        if dts < 0:
            self._drop("negative_dts")
            return

        segment = self._open
        if segment is None:
            if not starts_segment:
                self._drop("before_keyframe")
                return
            segment = self._open_segment(dts, independent=True)
        else:
            elapsed = dts - segment.first_dts
            tolerance = math.ceil(self._frame_ms.get(self._anchor or "", DEFAULT_VIDEO_FRAME_MS))
            if starts_segment and elapsed >= self._target_ms - tolerance:
                self._close_open_segment(next_first_dts=dts)
                segment = self._open_segment(dts, independent=True)
            elif elapsed >= self._max_ms or segment.payload_bytes >= self.max_segment_bytes:
                log.warning(
                    "%sno keyframe for %.1f s / %d bytes: cutting segment %d anyway",
                    self._prefix(),
                    elapsed / 1000,
                    segment.payload_bytes,
                    segment.sequence,
                )
                self._close_open_segment(next_first_dts=dts)
                segment = self._open_segment(dts, independent=starts_segment)

        data = packet.data
        if isinstance(data, memoryview) and not data.readonly:
            data = bytes(data)  # the muxer may queue it; a writable buffer could change under it
        duration = round(self._frame_ms.get(kind, 0))
        if not segment.muxer.write(kind, dts, pts, packet.keyframe, data, duration):
            self._drop("muxer_refused")
            return
        segment.payload_bytes += len(data)
        if kind == self._anchor:
            segment.last_anchor_dts = dts
        self._note_frame(kind, dts)

    def publisher_gone(self) -> None:
        """The publisher left: publish the open segment; a later configure() starts a new period."""
        if self._state is State.ENDED or self._state is State.IDLE:
            return
        self._close_open_segment(next_first_dts=None)
        self._discontinuity_next |= self._segments_produced > 0
        self._clear_tracks()
        self._state = State.IDLE

    def end(self) -> None:
        """Publish the open segment and end the playlist (EXT-X-ENDLIST). Idempotent."""
        if self._state is State.ENDED:
            return
        self._close_open_segment(next_first_dts=None)
        self._clear_tracks()
        self._playlist.end()
        self._state = State.ENDED

    # ---- viewer side --------------------------------------------------------------------

    def render_playlist(self) -> str:
        return self._playlist.render()

    def segment(self, name: str) -> bytes | bytearray | None:
        """A segment's bytes: any in the window, or one of the last few that slid out."""
        data = self._data.get(name)
        if data is not None:
            return data
        for expired_name, expired_data in self._expired:
            if expired_name == name:
                return expired_data
        return None

    def segment_name(self, sequence: int) -> str:
        return f"seg{sequence}{self._name_suffix}"

    # ---- observability ------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def playlist(self) -> MediaPlaylist:
        return self._playlist

    @property
    def playlist_ready(self) -> bool:
        """True once there is a segment to list (players get 404 before that)."""
        return bool(self._playlist.segments)

    @property
    def segments_produced(self) -> int:
        return self._segments_produced

    @property
    def last_segment_duration(self) -> float:
        return self._last_segment_duration

    @property
    def longest_segment_duration(self) -> float:
        return self._longest_segment_duration

    @property
    def target_duration_seen(self) -> int:
        """The TARGETDURATION the playlist advertises (grows, never shrinks)."""
        return self._playlist.target_duration

    @property
    def bytes_in_window(self) -> int:
        return self._bytes_in_window

    @property
    def ended(self) -> bool:
        return self._state is State.ENDED

    @property
    def packets_dropped(self) -> int:
        return sum(self._drops.values())

    @property
    def drop_reasons(self) -> dict[str, int]:
        return dict(self._drops)

    @property
    def tracks(self) -> tuple[str, ...]:
        """The track kinds the current publish is segmented with (unsupported ones skipped)."""
        return self._tracks.kinds if self._tracks is not None else ()

    # ---- internals ----------------------------------------------------------------------

    def _set_tracks(self, video: TrackConfig | None, audio: TrackConfig | None) -> None:
        self._clear_tracks()
        self._configs = (video, audio)
        try:
            tracks = TrackSet(video, audio, label=self._label)
        except MuxerError as exc:
            log.error("%scannot segment this publish: %s", self._prefix(), exc)
            tracks = TrackSet(None, None, label=self._label)
        self._tracks = tracks
        if tracks.video is not None:
            self._anchor = TrackKind.VIDEO
        elif tracks.audio is not None:
            self._anchor = TrackKind.AUDIO
        else:
            self._anchor = None
            log.warning("%sno track HLS can carry: packets will be dropped", self._prefix())
        if tracks.audio is not None:
            asc = parse_audio_specific_config(tracks.audio.extradata)
            self._frame_ms[TrackKind.AUDIO] = asc.frame_duration_ms
        self._frame_ms.setdefault(TrackKind.VIDEO, DEFAULT_VIDEO_FRAME_MS)

    def _clear_tracks(self) -> None:
        if self._tracks is not None:
            self._tracks.close()
        self._tracks = None
        self._configs = None
        self._anchor = None

    def _period_offset(self, first_dts: int) -> int:
        """Shift that puts this period's first keyframe right after the previous period."""
        if self._timeline_end is None:
            return TIMELINE_ORIGIN_MS - first_dts
        return math.ceil(self._timeline_end) - first_dts

    def _open_segment(self, first_dts: int, *, independent: bool) -> _OpenSegment:
        assert self._tracks is not None
        sequence = self._playlist.next_sequence
        name = self.segment_name(sequence)
        muxer = TsMuxer(self._tracks, label=self._label)
        segment = _OpenSegment(
            sequence,
            name,
            muxer,
            first_dts,
            self._clock(),
            discontinuity=self._discontinuity_next,
            independent=independent,
        )
        self._discontinuity_next = False
        self._open = segment
        self._state = State.RECORDING
        return segment

    def _close_open_segment(self, *, next_first_dts: int | None) -> None:
        """Publish the open segment. `next_first_dts` is None when its period ends here."""
        segment = self._open
        if segment is None:
            return
        self._open = None
        self._state = State.WAITING_KEYFRAME
        if next_first_dts is not None:
            duration_ms = float(next_first_dts - segment.first_dts)
        else:
            frame = self._frame_ms.get(self._anchor or "", DEFAULT_VIDEO_FRAME_MS)
            duration_ms = segment.last_anchor_dts - segment.first_dts + frame
            self._timeline_end = max(
                [segment.first_dts + duration_ms]
                + [last + self._frame_ms.get(kind, 0) for kind, last in self._last_dts.items()]
            )
        data = self._continuity.restamp(segment.muxer.close())
        if segment.muxer.packets == 0 or not data:
            log.error("%ssegment %d came out empty: skipped", self._prefix(), segment.sequence)
            self._discontinuity_next |= segment.discontinuity
            return
        duration = max(duration_ms, 1.0) / 1000
        entry = SegmentEntry(
            sequence=segment.sequence,
            uri=segment.name,
            duration=duration,
            program_date_time=segment.wall_clock,
            discontinuity=segment.discontinuity,
            independent=segment.independent,
            parts=tuple(segment.parts),
        )
        self._data[segment.name] = data
        self._bytes_in_window += len(data)
        for removed in self._playlist.append(entry):
            removed_data = self._data.pop(removed.uri)
            self._bytes_in_window -= len(removed_data)
            self._expired.append((removed.uri, removed_data))
        self._segments_produced += 1
        self._last_segment_duration = duration
        self._longest_segment_duration = max(self._longest_segment_duration, duration)
        if self._on_segment is not None:
            info = SegmentInfo(
                segment.sequence,
                segment.name,
                duration,
                len(data),
                segment.discontinuity,
                segment.independent,
            )
            try:
                self._on_segment(info)
            except Exception:
                log.exception("%son_segment observer failed", self._prefix())

    def _note_frame(self, kind: str, dts: int) -> None:
        last = self._last_dts.get(kind)
        self._last_dts[kind] = dts
        if kind == TrackKind.VIDEO and last is not None:
            gap = dts - last
            if 1 < gap <= MAX_FRAME_DURATION_MS:
                # Smoothed, so a nudged (+1 ms) or dropped frame barely moves it.
                self._frame_ms[kind] = 0.75 * self._frame_ms[kind] + 0.25 * gap

    def _drop(self, reason: str) -> None:
        if not self._drops[reason]:
            log.info("%sdropping packets: %s", self._prefix(), reason.replace("_", " "))
        self._drops[reason] += 1

    def _prefix(self) -> str:
        return f"[{self._label}] " if self._label else ""
