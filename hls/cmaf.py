"""The fMP4 (CMAF) rendition of one channel for LL-HLS: init sections, parts, parent segments.

The segmenter decides where segments start and end (the TS rendition's cuts, so
both renditions share sequence numbers, durations and discontinuities) and hands
every frame it muxed to `add`. This module cuts the open segment into parts:

- A part ends before a frame of the lead track (video; audio while the segment
  holds no video) when that frame would make it longer than the part target,
  i.e. when (dts - part start) + one frame > PART-TARGET, the frame rounded up
  and a millisecond added: FLV stamps are rounded to the millisecond, so frames
  33.3 ms apart come 33 or 34 ms apart. At 30 fps and the default 0.333 s target
  that is 9 frames (0.300 s); RFC 8216bis 4.4.4.9 asks at least 85 % of the
  target of every part but a segment's last.
- A part's duration is the next part's start minus its own; the segment's last
  part ends where the segment does. A gap in the feed can make a part longer
  than the target: it is listed as the target (counted in `parts_clamped`),
  as the segmenter clamps EXTINF, and the media keeps its timestamps.
- A part is INDEPENDENT when its first video frame is a keyframe, or it has no
  video.

Names are never reused within a channel's life: parts are numbered across
segments (``part{N}``), so the preload hint names the next part before anyone
knows which segment it will belong to (RFC 8216bis 4.4.5.3 allows that); an
init section is named by a digest of its bytes, so the same tracks after a
republish keep one init and caches stay right. When a segment closes its parts
make the parent segment, served as their buffers back to back (hls.chunks).
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass

from .chunks import Chunks
from .fmp4 import FragmentWriter
from .media import TrackConfig, TrackKind
from .playlist import PartialSegment

log = logging.getLogger("hls.cmaf")

CMAF_SEGMENT_SUFFIX = ".m4s"
INIT_SUFFIX = ".mp4"
# Digest bytes in an init section's name: collisions between the few configs of one
# channel are out of reach, and the name stays short.
INIT_DIGEST_BYTES = 6
# Millisecond rounding of FLV timestamps: the next frame may come this much later
# than the frame duration says.
TIMESTAMP_JITTER_MS = 1


@dataclass(frozen=True, slots=True)
class FinishedSegment:
    """A closed segment's fMP4 form: the parent (its parts back to back) and each part."""

    uri: str
    map_uri: str
    data: Chunks
    parts: tuple[PartialSegment, ...]
    part_data: dict[str, bytes]


def init_name(init: bytes) -> str:
    return f"init-{hashlib.blake2b(init, digest_size=INIT_DIGEST_BYTES).hexdigest()}{INIT_SUFFIX}"


class CmafRendition:
    """Parts and parent segments of one channel, one segment open at a time."""

    __slots__ = ("_lead_in_part", "_open_bytes", "_part_independent", "_part_start",
                 "_parts", "_suffix", "_writer", "init", "init_uri", "next_part",
                 "part_target_ms", "parts_clamped")

    def __init__(self, part_target_ms: int, token: str) -> None:
        if part_target_ms <= 0:
            raise ValueError("the part target must be positive")
        self.part_target_ms = part_target_ms
        self._suffix = f"-{token}" if token else ""
        self._writer: FragmentWriter | None = None
        self.init = b""
        self.init_uri = ""
        self.next_part = 0  # number of the next part (channel-wide): the preload hint
        self.parts_clamped = 0
        # The open segment: its parts so far, and the part being built.
        self._parts: list[tuple[PartialSegment, bytes]] = []
        self._open_bytes = 0
        self._part_start: float | None = None  # dts (ms) where the part being built starts
        self._part_independent: bool | None = None  # decided by its first video frame
        self._lead_in_part = False

    # ---- configuration ------------------------------------------------------------

    def set_tracks(self, video: TrackConfig | None, audio: TrackConfig | None) -> None:
        """A new track configuration: a new init section (the segmenter starts a new
        segment, with a discontinuity, before any frame of it)."""
        self._writer = FragmentWriter(video, audio)
        self.init = self._writer.init
        self.init_uri = init_name(self.init)

    def clear_tracks(self) -> None:
        self._writer = None

    # ---- names --------------------------------------------------------------------

    def segment_uri(self, sequence: int) -> str:
        return f"seg{sequence}{self._suffix}{CMAF_SEGMENT_SUFFIX}"

    def part_uri(self, number: int) -> str:
        return f"part{number}{self._suffix}{CMAF_SEGMENT_SUFFIX}"

    @property
    def hint_uri(self) -> str:
        return self.part_uri(self.next_part)

    # ---- the open segment ---------------------------------------------------------

    @property
    def open_parts(self) -> tuple[PartialSegment, ...]:
        return tuple(part for part, _ in self._parts)

    def open_part(self, name: str) -> bytes | None:
        """A finished part of the open segment (few: a linear look is cheapest)."""
        for part, data in self._parts:
            if part.uri == name:
                return data
        return None

    @property
    def bytes_held(self) -> int:
        """The open segment's parts and the samples of the part being built (per frame:
        two additions)."""
        writer = self._writer
        return self._open_bytes + (writer.pending_bytes if writer is not None else 0)

    def begin(self, first_dts: float) -> None:
        """Open a segment at `first_dts` (ms): its first part starts there."""
        self._parts = []
        self._open_bytes = 0
        self._part_start = first_dts
        self._part_independent = None
        self._lead_in_part = False

    def add(self, kind: str, dts: float, pts: float, keyframe: bool,
            data: bytes | memoryview, *, lead: bool, frame_ms: float) -> PartialSegment | None:
        """One frame the TS rendition took; the part it closed before this frame, if any.

        `lead`: the frame is on the track that times the segment; `frame_ms`: that
        track's frame duration (ms).
        """
        writer = self._writer
        assert writer is not None and self._part_start is not None
        finished = None
        frame = math.ceil(frame_ms) + TIMESTAMP_JITTER_MS
        if lead and self._lead_in_part and dts - self._part_start + frame > self.part_target_ms:
            finished = self._close_part(dts, {kind: dts})
            self._part_start = dts
        if lead:
            self._lead_in_part = True
        if kind == TrackKind.VIDEO and self._part_independent is None:
            self._part_independent = keyframe
        writer.add(kind, dts, pts, keyframe, data)
        return finished

    def finish(self, sequence: int, end_dts: float, next_dts: dict[str, float] | None
               ) -> FinishedSegment | None:
        """Close the open segment, which ends at `end_dts` (ms): its last part, then
        the parent joined from all parts. None if it holds no media."""
        if self._writer is not None and self._writer.pending and self._part_start is not None:
            self._close_part(end_dts, next_dts)
        parts, self._parts = self._parts, []
        self._open_bytes = 0
        self._part_start = None
        if not parts:
            return None
        return FinishedSegment(self.segment_uri(sequence), self.init_uri,
                               Chunks(chunk for _, chunk in parts),
                               tuple(part for part, _ in parts),
                               {part.uri: chunk for part, chunk in parts})

    def _close_part(self, end_dts: float, next_dts: dict[str, float] | None) -> PartialSegment:
        writer = self._writer
        assert writer is not None and self._part_start is not None
        chunk = writer.fragment(next_dts)
        assert chunk is not None
        duration_ms = max(end_dts - self._part_start, 1.0)
        if duration_ms > self.part_target_ms:
            # Only a gap in the feed's timestamps gets here (see the module doc).
            if not self.parts_clamped:
                log.warning("a part spans %.3f s of timestamps: listed as the %.3f s part "
                            "target", duration_ms / 1000, self.part_target_ms / 1000)
            self.parts_clamped += 1
            duration_ms = self.part_target_ms
        independent = self._part_independent is not False
        part = PartialSegment(duration_ms / 1000, self.part_uri(self.next_part), independent)
        self.next_part += 1
        self._parts.append((part, chunk))
        self._open_bytes += len(chunk)
        self._part_independent = None
        self._lead_in_part = False
        return part
