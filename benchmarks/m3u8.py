"""Just enough of an HLS media playlist parser for a player-like load client."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Segment:
    sequence: int
    duration: float
    uri: str


@dataclass(slots=True)
class MediaPlaylist:
    target_duration: float = 0.0
    media_sequence: int = 0
    ended: bool = False
    segments: list[Segment] = field(default_factory=list)

    @property
    def next_sequence(self) -> int:
        """Sequence number the next segment will get (segments produced so far)."""
        return self.media_sequence + len(self.segments)


def parse_media_playlist(text: str) -> MediaPlaylist:
    """Parse tags a live media playlist needs; unknown tags are skipped, as players do."""
    playlist = MediaPlaylist()
    duration: float | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#EXT-X-TARGETDURATION:"):
            playlist.target_duration = float(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            playlist.media_sequence = int(line.split(":", 1)[1])
        elif line.startswith("#EXTINF:"):
            duration = float(line.split(":", 1)[1].split(",", 1)[0])
        elif line.startswith("#EXT-X-ENDLIST"):
            playlist.ended = True
        elif not line.startswith("#") and duration is not None:
            sequence = playlist.media_sequence + len(playlist.segments)
            playlist.segments.append(Segment(sequence, duration, line))
            duration = None
    return playlist
