"""LL-HLS delivery directives (RFC 8216bis 6.2.5): what a playlist request asks for,
and whether the playlist has it yet. Pure: the HTTP layer does the waiting.

- `_HLS_msn=M` holds the request until segment M is complete; with `_HLS_part=N`
  until part N of segment M exists (a part index past a segment's last part means
  part 0 of the next segment, 6.2.5.2). Both are ignored once the playlist ended.
- `_HLS_part` without `_HLS_msn`, values that are not decimal integers, a repeated
  directive or an unknown `_HLS_skip` value are bad requests; so is M more than two
  past the last segment, or N more than the Advance Part Limit past the last part.
- `_HLS_skip=YES` or `v2` asks for a delta update (we have no date ranges, so v2 is
  YES).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from .playlist import MediaPlaylist

MSN = "_HLS_msn"
PART = "_HLS_part"
SKIP = "_HLS_skip"
SKIP_VALUES = frozenset({"YES", "v2"})
# A decimal-integer is 1 to 20 digits and at most 2^64 - 1 (RFC 8216bis 4.2).
MAX_DECIMAL_INTEGER = 2**64 - 1
MAX_DECIMAL_DIGITS = 20
# 6.2.5.2: the server may wait for a segment at most this far past the last one.
MSN_LOOKAHEAD = 2
# Advance Part Limit: 3 / PART-TARGET parts below a one-second part target, else 3.
ADVANCE_PART_SECONDS = 3.0


class DirectiveError(ValueError):
    """A request whose delivery directives cannot be honoured; the message says why (400)."""


@dataclass(frozen=True, slots=True)
class Directives:
    msn: int | None = None
    part: int | None = None
    skip: bool = False

    @property
    def blocking(self) -> bool:
        return self.msn is not None


def parse_directives(query: Mapping[str, str], repeated: frozenset[str] = frozenset()
                     ) -> Directives:
    """The directives of a playlist request's query; `repeated` names parameters that
    appeared more than once. Other parameters (cache busters) are ignored."""
    for name in (MSN, PART, SKIP):
        if name in repeated:
            raise DirectiveError(f"{name} is given more than once")
    msn = _decimal_integer(query, MSN)
    part = _decimal_integer(query, PART)
    if part is not None and msn is None:
        raise DirectiveError(f"{PART} needs {MSN} (RFC 8216bis 6.2.5.2)")
    skip = query.get(SKIP)
    if skip is not None and skip not in SKIP_VALUES:
        raise DirectiveError(f"{SKIP} must be YES or v2, got {skip[:32]!r}")
    return Directives(msn, part, skip is not None)


def _decimal_integer(query: Mapping[str, str], name: str) -> int | None:
    value = query.get(name)
    if value is None:
        return None
    if not (value.isascii() and value.isdigit() and len(value) <= MAX_DECIMAL_DIGITS):
        raise DirectiveError(f"{name} must be a decimal integer, got {value[:32]!r}")
    number = int(value)
    if number > MAX_DECIMAL_INTEGER:
        raise DirectiveError(f"{name} is out of range")
    return number


def advance_part_limit(part_target: float) -> int:
    if part_target < 1:
        return math.floor(ADVANCE_PART_SECONDS / part_target)
    return int(ADVANCE_PART_SECONDS)


def too_far(playlist: MediaPlaylist, directives: Directives) -> str | None:
    """Why a blocking request asks for more than the server should wait for, or None."""
    msn, part = directives.msn, directives.part
    if msn is None or playlist.ended:
        return None
    upcoming = playlist.next_sequence  # the segment being written (or the next one)
    if msn > upcoming + MSN_LOOKAHEAD - 1:
        return (f"{MSN}={msn} is more than {MSN_LOOKAHEAD} past the last segment "
                f"({upcoming - 1})")
    if part is None or playlist.part_target is None:
        return None
    open_segment = playlist.open_segment
    published = len(open_segment.parts) if open_segment is not None else 0
    if msn == upcoming:
        ahead = part + 1 - published
    elif msn > upcoming:
        ahead = part + 1  # at least: whatever the open segment still gets comes first
    else:
        return None
    limit = advance_part_limit(playlist.part_target)
    if ahead > limit:
        return f"{PART}={part} is more than {limit} parts past the last part"
    return None


def satisfied(playlist: MediaPlaylist, directives: Directives) -> bool:
    """Whether the playlist now holds what a blocking request waits for."""
    msn, part = directives.msn, directives.part
    if msn is None or playlist.ended:
        return True
    last = playlist.next_sequence - 1  # the last complete segment
    if part is None:
        return msn <= last
    if msn <= last:
        if msn < playlist.media_sequence:
            return True  # gone from the window: the current playlist is the answer
        segment = playlist.segments[msn - playlist.media_sequence]
        if part < len(segment.parts) or not segment.parts:
            return True
        msn, part = msn + 1, 0  # past the segment's last part: the next segment's first
        if msn <= last:
            return True
    open_segment = playlist.open_segment
    return (open_segment is not None and open_segment.sequence == msn
            and part < len(open_segment.parts))
