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
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

# EXTINF with decimals needs version 3. Nothing else used here needs more; LL-HLS
# parts will raise it (EXT-X-PART needs 9 for the blocking-reload features).
PLAYLIST_VERSION = 3
# The window may hold more than `window` segments so that an open playlist keeps
# three target durations of media (RFC 8216 6.2.2), but never more than this many
# times `window`: a storm of tiny segments (a publisher reconnecting over and over)
# must not grow memory without bound.
WINDOW_HARD_CAP_FACTOR = 4


@dataclass(frozen=True, slots=True)
class PartialSegment:
    """An LL-HLS part (EXT-X-PART). Not rendered yet; here so segments need no reshaping."""

    duration: float
    uri: str
    independent: bool = False
    byte_range: tuple[int, int] | None = None  # (offset, length) inside the segment's bytes


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
    parts: tuple[PartialSegment, ...] = ()


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
        "_media_sequence",
        "_rendered",
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
    ) -> None:
        """`first_sequence`, `discontinuity_sequence` and `fixed_target` carry on a
        playlist begun elsewhere: its numbering, and the TARGETDURATION players saw
        (kept unless the configured target needs more)."""
        if window < 1:
            raise ValueError("window must hold at least one segment")
        if target_duration <= 0:
            raise ValueError("target_duration must be positive")
        if first_sequence < 0 or discontinuity_sequence < 0:
            raise ValueError("sequence numbers must not be negative")
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

    def append(self, segment: SegmentEntry) -> tuple[SegmentEntry, ...]:
        """Add a finished segment; return the segments that slid out of the window."""
        if self._ended:
            raise ValueError("the playlist has ended")
        if segment.sequence != self.next_sequence:
            raise ValueError(f"expected sequence {self.next_sequence}, got {segment.sequence}")
        if segment.duration <= 0:
            raise ValueError("a segment needs a positive duration")
        rounded = rounded_duration(segment.duration)
        if not self._target_fixed:
            self._target_duration = max(self._target_duration, rounded)
            self._target_fixed = True
        elif rounded > self._target_duration:
            raise ValueError(
                f"EXTINF {segment.duration:.3f} exceeds TARGETDURATION {self._target_duration}"
            )
        self._rendered = None
        self._segments.append(segment)
        return self._slide()

    def drop_oldest(self, keep: int = 1) -> SegmentEntry | None:
        """Take the oldest segment out early (memory pressure), leaving at least `keep` listed.

        The numbering tags follow exactly as when the window slides; None if
        only `keep` segments (or fewer) are listed.
        """
        if len(self._segments) <= max(keep, 0) or self._ended:
            return None
        self._rendered = None
        return self._pop_head()

    def end(self) -> None:
        """Mark the stream finished (EXT-X-ENDLIST); the window stops moving."""
        self._ended = True
        self._rendered = None

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

    def render(self) -> str:
        """The playlist text. LL-HLS parts on the entries are ignored for now."""
        if self._rendered is None:
            self._rendered = self._render()
        return self._rendered

    def _render(self) -> str:
        lines = [
            "#EXTM3U",
            f"#EXT-X-VERSION:{PLAYLIST_VERSION}",
            f"#EXT-X-TARGETDURATION:{self._target_duration}",
            f"#EXT-X-MEDIA-SEQUENCE:{self._media_sequence}",
            f"#EXT-X-DISCONTINUITY-SEQUENCE:{self._discontinuity_sequence}",
        ]
        # The tag promises that every listed segment starts with a keyframe; a
        # forced cut (no keyframe within the limit) breaks that promise for a while.
        if all(segment.independent for segment in self._segments):
            lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
        for segment in self._segments:
            if segment.discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            if segment.program_date_time is not None:
                pdt = format_program_date_time(segment.program_date_time)
                lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{pdt}")
            lines.append(f"#EXTINF:{format_duration(segment.duration)},")
            lines.append(segment.uri)
        if self._ended:
            lines.append("#EXT-X-ENDLIST")
        lines.append("")
        return "\n".join(lines)
