"""A pure model of one live HLS media playlist (RFC 8216 / draft-pantos-hls-rfc8216bis).

No I/O and no clock: the segmenter appends finished segments and asks for
text. The window rules live here because they decide what the numbering
tags must say:

- MEDIA-SEQUENCE is the sequence number of the first segment listed.
- DISCONTINUITY-SEQUENCE counts the DISCONTINUITY tags that slid out of the
  window (RFC 8216 6.2.1), so a player can line periods up across reloads.
- TARGETDURATION never changes (RFC 8216 6.2.1). It is fixed when the first
  segment is appended, as the larger of the configured target (rounded up) and
  that segment's rounded EXTINF: a playlist is only served once it lists a
  segment, so no player ever sees a provisional value. Later segments must fit
  within it; cutting them so is the segmenter's job, and append() refuses one
  that does not.

With a part target the same window is also rendered as an LL-HLS playlist
(`render_ll`, RFC 8216bis): the fMP4 form of every segment (EXT-X-MAP, parent
URI), EXT-X-PART for segments within three target durations of the end (6.2.2),
the parts of the segment being written (`set_open`), a preload hint for the
next part, and delta updates (EXT-X-SKIP) on request. Both renditions share
sequence numbers, durations, discontinuities and PROGRAM-DATE-TIME.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

# EXTINF with decimals needs version 3. Nothing else in the TS playlist needs more.
PLAYLIST_VERSION = 3
# The LL-HLS playlist: EXT-X-MAP outside an I-frames-only playlist needs 6; a delta
# update's EXT-X-SKIP needs 9 (RFC 8216bis 8). Parts, hints and server control
# need no particular version, and a playlist should not claim more than it uses.
LL_PLAYLIST_VERSION = 6
LL_DELTA_PLAYLIST_VERSION = 9
# RFC 8216bis 4.4.3.8: PART-HOLD-BACK MUST be at least twice the part target and
# SHOULD be at least three times; CAN-SKIP-UNTIL MUST be at least six target
# durations. The minimums: latency is what LL-HLS is for.
PART_HOLD_BACK_PARTS = 3
SKIP_UNTIL_TARGETS = 6
# EXT-X-PART tags are kept for segments within this many target durations of the
# end of the playlist (RFC 8216bis 6.2.2 SHOULD remove them past that).
PART_TAG_TARGETS = 3
# The window may hold more than `window` segments so that an open playlist keeps
# three target durations of media (RFC 8216 6.2.2), but never more than this many
# times `window`: a storm of tiny segments (a publisher reconnecting over and over)
# must not grow memory without bound.
WINDOW_HARD_CAP_FACTOR = 4


@dataclass(frozen=True, slots=True)
class PartialSegment:
    """An LL-HLS part (EXT-X-PART): a piece of its parent segment, its own resource."""

    duration: float  # seconds
    uri: str
    independent: bool = False  # holds an independent frame (a keyframe, or audio only)


@dataclass(frozen=True, slots=True)
class SegmentEntry:
    """One finished media segment as the playlist lists it."""

    sequence: int
    uri: str
    duration: float  # seconds
    program_date_time: float | None = (
        None  # epoch seconds: wall clock at ingest of its first packet
    )
    discontinuity: bool = False  # first segment after a publisher change or codec change
    independent: bool = True  # starts with a keyframe (false only after a forced cut)
    parts: tuple[PartialSegment, ...] = ()  # LL-HLS: its parts, in order
    ll_uri: str | None = None  # LL-HLS: the fMP4 form of the segment (concatenated parts)
    map_uri: str | None = None  # LL-HLS: the init section it needs (EXT-X-MAP)


@dataclass(frozen=True, slots=True)
class OpenSegment:
    """The LL-HLS segment being written: what ll.m3u8 shows of it is its parts so far."""

    sequence: int
    map_uri: str
    program_date_time: float | None
    discontinuity: bool
    parts: tuple[PartialSegment, ...]


def rounded_duration(seconds: float) -> int:
    """What an EXTINF counts as against TARGETDURATION: nearest, halves up (RFC 8216 4.3.3.1)."""
    return max(1, math.floor(round(seconds, 3) + 0.5))


def format_duration(seconds: float) -> str:
    return f"{seconds:.3f}"


def format_program_date_time(epoch_seconds: float) -> str:
    """ISO 8601 with milliseconds and a Z, e.g. 2024-05-01T12:00:00.250Z."""
    moment = datetime.fromtimestamp(epoch_seconds, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class MediaPlaylist:
    """The rolling window of one stream's segments and the tags that number them."""

    __slots__ = (
        "_discontinuity_sequence",
        "_ended",
        "_hint",
        "_media_sequence",
        "_open",
        "_part_target",
        "_rendered",
        "_rendered_ll",
        "_segments",
        "_target_duration",
        "_target_fixed",
        "window",
    )

    def __init__(
        self,
        window: int = 6,
        target_duration: float = 2.0,
        first_sequence: int = 0,
        *,
        discontinuity_sequence: int = 0,
        fixed_target: int | None = None,
        part_target: float | None = None,
    ) -> None:
        """`first_sequence`, `discontinuity_sequence` and `fixed_target` carry on a
        playlist begun elsewhere: its numbering, and the TARGETDURATION players saw
        (kept unless the configured target needs more). `part_target` (seconds)
        turns on the LL-HLS rendering: every appended segment must then carry its
        fMP4 form (`ll_uri`, `map_uri`) and parts no longer than it."""
        if window < 1:
            raise ValueError("window must hold at least one segment")
        if target_duration <= 0:
            raise ValueError("target_duration must be positive")
        if first_sequence < 0 or discontinuity_sequence < 0:
            raise ValueError("sequence numbers must not be negative")
        if part_target is not None and not 0 < part_target < target_duration:
            raise ValueError("part_target must be positive and shorter than the target")
        self.window = window
        self._segments: deque[SegmentEntry] = deque()
        self._media_sequence = first_sequence
        self._discontinuity_sequence = discontinuity_sequence
        # The configured target is a floor: players pace their reloads by it.
        self._target_duration = max(1, math.ceil(target_duration))
        self._target_fixed = False
        if fixed_target is not None:
            self._target_duration = max(self._target_duration, fixed_target)
            self._target_fixed = True
        self._ended = False
        self._rendered: str | None = None  # every viewer asks for the same text until it changes
        self._part_target = part_target
        self._open: OpenSegment | None = None
        self._hint: str | None = None
        self._rendered_ll: dict[bool, str] = {}  # by "delta update"

    @property
    def segments(self) -> tuple[SegmentEntry, ...]:
        return tuple(self._segments)

    @property
    def media_sequence(self) -> int:
        return self._media_sequence

    @property
    def discontinuity_sequence(self) -> int:
        return self._discontinuity_sequence

    @property
    def last_discontinuity_sequence(self) -> int:
        """The discontinuity sequence number of the newest listed segment."""
        return self._discontinuity_sequence + sum(s.discontinuity for s in self._segments)

    @property
    def next_sequence(self) -> int:
        """The sequence number the next appended segment must carry."""
        return self._media_sequence + len(self._segments)

    @property
    def target_duration(self) -> int:
        """TARGETDURATION: provisional (the configured target) until the first append."""
        return self._target_duration

    @property
    def target_fixed(self) -> bool:
        """True once the first segment has fixed TARGETDURATION for the playlist's life."""
        return self._target_fixed

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def duration(self) -> float:
        return sum(segment.duration for segment in self._segments)

    @property
    def part_target(self) -> float | None:
        """PART-TARGET in seconds; None when the playlist has no LL-HLS form."""
        return self._part_target

    @property
    def open_segment(self) -> OpenSegment | None:
        return self._open

    @property
    def preload_hint(self) -> str | None:
        """The URI of the next part (EXT-X-PRELOAD-HINT), while the playlist is live."""
        return None if self._ended else self._hint

    def append(self, segment: SegmentEntry) -> tuple[SegmentEntry, ...]:
        """Add a finished segment; return the segments that slid out of the window."""
        if self._ended:
            raise ValueError("the playlist has ended")
        if segment.sequence != self.next_sequence:
            raise ValueError(f"expected sequence {self.next_sequence}, got {segment.sequence}")
        if segment.duration <= 0:
            raise ValueError("a segment needs a positive duration")
        if self._part_target is not None:
            self._check_low_latency(segment)
        rounded = rounded_duration(segment.duration)
        if not self._target_fixed:
            self._target_duration = max(self._target_duration, rounded)
            self._target_fixed = True
        elif rounded > self._target_duration:
            raise ValueError(
                f"EXTINF {segment.duration:.3f} exceeds TARGETDURATION {self._target_duration}"
            )
        self._changed()
        self._segments.append(segment)
        if self._open is not None and self._open.sequence <= segment.sequence:
            self._open = None
        return self._slide()

    def _check_low_latency(self, segment: SegmentEntry) -> None:
        assert self._part_target is not None
        if segment.ll_uri is None or segment.map_uri is None or not segment.parts:
            raise ValueError("an LL-HLS playlist needs each segment's fMP4 form and parts")
        longest = max(part.duration for part in segment.parts)
        if round(longest, 3) > round(self._part_target, 3):
            raise ValueError(f"part of {longest:.3f} s exceeds PART-TARGET "
                             f"{self._part_target:.3f}")

    def set_open(self, segment: OpenSegment | None, hint: str | None) -> None:
        """The segment being written (its parts so far) and the next part's URI."""
        if segment is not None and segment.sequence != self.next_sequence:
            raise ValueError(f"the open segment must be {self.next_sequence}")
        self._open = segment
        self._hint = hint
        self._rendered_ll = {}

    def drop_oldest(self, keep: int = 1) -> SegmentEntry | None:
        """Take the oldest segment out early (memory pressure), leaving at least `keep` listed.

        The numbering tags follow exactly as when the window slides; None if
        only `keep` segments (or fewer) are listed.
        """
        if len(self._segments) <= max(keep, 0) or self._ended:
            return None
        self._changed()
        return self._pop_head()

    def end(self) -> None:
        """Mark the stream finished (EXT-X-ENDLIST); the window stops moving."""
        self._ended = True
        self._open = None
        self._changed()

    def _changed(self) -> None:
        self._rendered = None
        self._rendered_ll = {}

    def _slide(self) -> tuple[SegmentEntry, ...]:
        removed: list[SegmentEntry] = []
        hard_cap = self.window * WINDOW_HARD_CAP_FACTOR
        min_duration = 3 * self._target_duration
        total = self.duration
        while len(self._segments) > self.window:
            head = self._segments[0]
            if len(self._segments) <= hard_cap and total - head.duration < min_duration:
                break
            total -= self._pop_head().duration
            removed.append(head)
        return tuple(removed)

    def _pop_head(self) -> SegmentEntry:
        head = self._segments.popleft()
        self._media_sequence += 1
        if head.discontinuity:
            self._discontinuity_sequence += 1
        return head

    # ---- rendering ------------------------------------------------------------------

    def render(self) -> str:
        """The MPEG-TS playlist text (index.m3u8)."""
        if self._rendered is None:
            self._rendered = self._render()
        return self._rendered

    def render_ll(self, delta: bool = False) -> str:
        """The LL-HLS playlist text (ll.m3u8); `delta`: a Playlist Delta Update
        (_HLS_skip), which skips what lies past the skip boundary. The text is the
        same object until the playlist changes."""
        if self._part_target is None:
            raise ValueError("this playlist has no LL-HLS form")
        delta = delta and not self._ended  # RFC 8216bis 6.2.5.1: ignored once ended
        text = self._rendered_ll.get(delta)
        if text is None:
            text = self._rendered_ll[delta] = self._render_ll(delta)
        return text

    def _header(self, version: int) -> list[str]:
        return [
            "#EXTM3U",
            f"#EXT-X-VERSION:{version}",
            f"#EXT-X-TARGETDURATION:{self._target_duration}",
        ]

    def _numbering(self) -> list[str]:
        lines = [
            f"#EXT-X-MEDIA-SEQUENCE:{self._media_sequence}",
            f"#EXT-X-DISCONTINUITY-SEQUENCE:{self._discontinuity_sequence}",
        ]
        # The tag promises that every listed segment starts with a keyframe; a
        # forced cut (no keyframe within the limit) breaks that promise for a while.
        if all(segment.independent for segment in self._segments):
            lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
        return lines

    def _render(self) -> str:
        lines = self._header(PLAYLIST_VERSION) + self._numbering()
        for segment in self._segments:
            _segment_tags(lines, segment.discontinuity, segment.program_date_time)
            lines.append(f"#EXTINF:{format_duration(segment.duration)},")
            lines.append(segment.uri)
        if self._ended:
            lines.append("#EXT-X-ENDLIST")
        lines.append("")
        return "\n".join(lines)

    def _render_ll(self, delta: bool) -> str:
        part_target = self._part_target
        assert part_target is not None
        segments = list(self._segments)
        open_segment = self._open if self._open is not None and self._open.parts else None
        skipped = self._skippable(segments) if delta else 0
        version = LL_DELTA_PLAYLIST_VERSION if skipped else LL_PLAYLIST_VERSION
        skip_until = SKIP_UNTIL_TARGETS * self._target_duration
        # Up to a millisecond over, so a client comparing in floating point finds it at
        # least PART_HOLD_BACK_PARTS part targets (3 * 0.333 is 0.9990000000000001).
        hold_back = math.ceil(PART_HOLD_BACK_PARTS * part_target * 1000 + 0.5) / 1000
        lines = [
            *self._header(version),
            f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL={skip_until:.1f},"
            f"PART-HOLD-BACK={format_duration(hold_back)}",
            f"#EXT-X-PART-INF:PART-TARGET={format_duration(part_target)}",
            *self._numbering(),
        ]
        if skipped:
            lines.append(f"#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}")
        # Parts are listed for segments that end within PART_TAG_TARGETS of the end.
        remaining = sum(s.duration for s in segments) + (
            sum(p.duration for p in open_segment.parts) if open_segment else 0.0)
        horizon = PART_TAG_TARGETS * self._target_duration
        current_map: str | None = None
        for segment in segments[:skipped]:
            remaining -= segment.duration
        for segment in segments[skipped:]:
            remaining -= segment.duration
            _segment_tags(lines, segment.discontinuity, segment.program_date_time,
                          segment.map_uri if segment.map_uri != current_map else None)
            current_map = segment.map_uri
            if remaining <= horizon:
                _part_tags(lines, segment.parts)
            lines.append(f"#EXTINF:{format_duration(segment.duration)},")
            lines.append(segment.ll_uri or "")
        if self._ended:
            lines.append("#EXT-X-ENDLIST")
        else:
            if open_segment is not None:
                _segment_tags(lines, open_segment.discontinuity, open_segment.program_date_time,
                              open_segment.map_uri if open_segment.map_uri != current_map
                              else None)
                _part_tags(lines, open_segment.parts)
            if self._hint is not None:
                lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{self._hint}"')
        lines.append("")
        return "\n".join(lines)

    def _skippable(self, segments: list[SegmentEntry]) -> int:
        """Segments ending further than CAN-SKIP-UNTIL from the end of the last
        (parent) segment: what a delta update replaces with EXT-X-SKIP."""
        boundary = SKIP_UNTIL_TARGETS * self._target_duration
        after = 0.0  # media after the end of the segment looked at
        skippable = len(segments)
        for segment in reversed(segments):
            if after > boundary:
                break
            skippable -= 1
            after += segment.duration
        return skippable


def _segment_tags(lines: list[str], discontinuity: bool, program_date_time: float | None,
                  map_uri: str | None = None) -> None:
    """The tags before a segment (or its first part): they apply to all its parts."""
    if discontinuity:
        lines.append("#EXT-X-DISCONTINUITY")
    if map_uri is not None:
        lines.append(f'#EXT-X-MAP:URI="{map_uri}"')
    if program_date_time is not None:
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{format_program_date_time(program_date_time)}")


def _part_tags(lines: list[str], parts: tuple[PartialSegment, ...]) -> None:
    for part in parts:
        independent = ",INDEPENDENT=YES" if part.independent else ""
        lines.append(f'#EXT-X-PART:DURATION={format_duration(part.duration)}'
                     f'{independent},URI="{part.uri}"')
