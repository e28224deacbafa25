"""Where a playlist stood, so that another segmenter can carry it on.

A channel whose publisher moves to another process (a node died, or the
encoder reconnected elsewhere within the grace period) gets a new Segmenter
there. Seeded with the old one's `PlaylistResume`, the new playlist reads to a
player like the same one after a reconnect on one node: media sequence numbers
continue, the first new segment carries EXT-X-DISCONTINUITY (so its
discontinuity sequence number is one past the last old segment's),
TARGETDURATION stays what players already saw, and output timestamps go on
from where the old timeline ended.

Pure data: how it is stored or sent between processes is the caller's business.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PlaylistResume:
    """The numbering a carried-on playlist needs, taken after a published segment."""

    next_sequence: int  # media sequence number the next segment gets
    discontinuity_sequence: int  # discontinuity sequence number of the last segment
    target_duration: int  # TARGETDURATION players saw (whole seconds)
    timeline_end_ms: int | None = None  # output timeline (ms) where the last segment ended

    def __post_init__(self) -> None:
        if self.next_sequence < 0 or self.discontinuity_sequence < 0:
            raise ValueError("sequence numbers must not be negative")
        if self.target_duration < 1:
            raise ValueError("target_duration must be at least 1 second")
        if self.timeline_end_ms is not None and self.timeline_end_ms < 0:
            raise ValueError("timeline_end_ms must not be negative")
