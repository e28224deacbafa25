"""A small reader for the media playlists our tests fetch (tags we emit, strictly)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Segment:
    uri: str
    duration: float
    sequence: int
    discontinuity: bool = False
    program_date_time: str | None = None


@dataclass
class Playlist:
    target_duration: int = 0
    media_sequence: int = 0
    discontinuity_sequence: int = 0
    ended: bool = False
    independent: bool = False
    segments: list[Segment] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)

    def discontinuity_numbers(self) -> list[int]:
        """Each listed segment's discontinuity sequence number (RFC 8216 6.2.1): the
        tag's value, plus one per EXT-X-DISCONTINUITY up to and including its own."""
        numbers, current = [], self.discontinuity_sequence
        for segment in self.segments:
            current += segment.discontinuity
            numbers.append(current)
        return numbers


def parse_playlist(text: str) -> Playlist:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    assert lines[0] == "#EXTM3U", f"not a playlist: {text[:80]!r}"
    playlist = Playlist()
    duration: float | None = None
    discontinuity = False
    pdt: str | None = None
    for line in lines[1:]:
        if line.startswith("#"):
            playlist.tags.append(line.split(":", 1)[0])
        if line.startswith("#EXT-X-TARGETDURATION:"):
            playlist.target_duration = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            playlist.media_sequence = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-DISCONTINUITY-SEQUENCE:"):
            playlist.discontinuity_sequence = int(line.split(":", 1)[1])
        elif line == "#EXT-X-DISCONTINUITY":
            discontinuity = True
        elif line == "#EXT-X-ENDLIST":
            playlist.ended = True
        elif line == "#EXT-X-INDEPENDENT-SEGMENTS":
            playlist.independent = True
        elif line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            pdt = line.split(":", 1)[1]
        elif line.startswith("#EXTINF:"):
            duration = float(line.split(":", 1)[1].split(",")[0])
        elif not line.startswith("#"):
            assert duration is not None, f"segment {line} without EXTINF"
            sequence = playlist.media_sequence + len(playlist.segments)
            playlist.segments.append(Segment(line, duration, sequence, discontinuity, pdt))
            duration, discontinuity, pdt = None, False, None
    return playlist
