"""Just enough of an LL-HLS media playlist parser for player-like clients (load and tests)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Part:
    uri: str
    duration: float
    independent: bool


@dataclass(slots=True)
class LlPlaylist:
    media_sequence: int = 0
    skipped: int = 0
    maps: list[str] = field(default_factory=list)
    segments: list[tuple[int, str, list[Part]]] = field(default_factory=list)  # msn, uri, parts
    open_parts: list[Part] = field(default_factory=list)
    hint: str | None = None
    ended: bool = False
    part_hold_back: float = 0.0
    tags: dict[str, str] = field(default_factory=dict)  # single-valued header tags

    @property
    def open_msn(self) -> int:
        """Media sequence number of the segment being written (the next to be listed)."""
        return self.media_sequence + self.skipped + len(self.segments)

    def next_wanted(self) -> tuple[int, int]:
        """(_HLS_msn, _HLS_part) of the part after the newest listed."""
        return self.open_msn, len(self.open_parts)

    def all_parts(self) -> list[Part]:
        return [part for _, _, parts in self.segments for part in parts] + self.open_parts

    def part_at(self, msn: int, index: int) -> Part | None:
        """Part `index` of segment `msn`; past a segment's last part, the next one's first
        (RFC 8216bis 6.2.5.2)."""
        for number, _, parts in self.segments:
            if number == msn:
                return parts[index] if index < len(parts) else self.part_at(msn + 1, 0)
        if msn == self.open_msn and index < len(self.open_parts):
            return self.open_parts[index]
        return None


def attributes(value: str) -> dict[str, str]:
    out = {}
    for item in value.split(","):
        name, _, raw = item.partition("=")
        out[name] = raw.strip('"')
    return out


def parse_ll_playlist(text: str) -> LlPlaylist:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != "#EXTM3U":
        raise ValueError(f"not a playlist: {text[:80]!r}")
    playlist = LlPlaylist()
    parts: list[Part] = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name == "#EXT-X-PART":
            attrs = attributes(value)
            parts.append(Part(attrs["URI"], float(attrs["DURATION"]),
                              attrs.get("INDEPENDENT") == "YES"))
        elif name == "#EXT-X-MAP":
            playlist.maps.append(attributes(value)["URI"])
        elif name == "#EXT-X-PRELOAD-HINT":
            playlist.hint = attributes(value)["URI"]
        elif name == "#EXT-X-SKIP":
            playlist.skipped = int(attributes(value)["SKIPPED-SEGMENTS"])
        elif name == "#EXT-X-SERVER-CONTROL":
            playlist.part_hold_back = float(attributes(value).get("PART-HOLD-BACK", 0))
            playlist.tags[name[1:]] = value
        elif line == "#EXT-X-ENDLIST":
            playlist.ended = True
        elif name == "#EXT-X-MEDIA-SEQUENCE":
            playlist.media_sequence = int(value)
        elif name.startswith("#EXT-X-") and value and name != "#EXT-X-PROGRAM-DATE-TIME":
            playlist.tags[name[1:]] = value
        elif not line.startswith("#"):
            playlist.segments.append((playlist.open_msn, line, parts))
            parts = []
    playlist.open_parts = parts
    return playlist


@dataclass(frozen=True, slots=True)
class LiveEdge:
    """What a player at the live edge needs from each playlist answer."""

    open_msn: int  # the segment being written
    open_parts: tuple[str, ...]  # URIs of its parts so far
    hint: str | None
    ended: bool

    def next_wanted(self) -> tuple[int, int]:
        return self.open_msn, len(self.open_parts)


_OPEN_PART = re.compile(rb'#EXT-X-PART:[^\n]*URI="([^"]+)"')
_HINT = re.compile(rb'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="([^"]+)"')
_DURATION = re.compile(rb"#EXT-X-PART:DURATION=([0-9.]+)")


def live_edge(body: bytes) -> LiveEdge:
    """`parse_ll_playlist`'s answer to next_wanted() and hint, from byte searches only:
    a load generator reads hundreds of these a second and must not be what it measures."""
    sequence = int(_tag_value(body, b"#EXT-X-MEDIA-SEQUENCE:") or 0)
    skipped = int(_tag_value(body, b"#EXT-X-SKIP:SKIPPED-SEGMENTS=") or 0)
    last = body.rfind(b"#EXTINF:")
    tail = body
    if last >= 0:  # after the last segment's URI line: the open segment
        tail = body[body.find(b"\n", body.find(b"\n", last) + 1) + 1:]
    hint = _HINT.search(tail)
    return LiveEdge(sequence + skipped + body.count(b"#EXTINF:"),
                    tuple(uri.decode() for uri in _OPEN_PART.findall(tail)),
                    hint.group(1).decode() if hint else None, b"#EXT-X-ENDLIST" in tail)


def part_duration(body: bytes, uri: str) -> float | None:
    """DURATION of the part with this URI, if the playlist lists it."""
    at = body.find(b'URI="' + uri.encode() + b'"')
    if at < 0:
        return None
    match = _DURATION.match(body, body.rfind(b"\n", 0, at) + 1)
    return float(match.group(1)) if match else None


def _tag_value(body: bytes, tag: bytes) -> bytes | None:
    at = body.find(tag)
    if at < 0:
        return None
    end = body.find(b"\n", at)
    value = body[at + len(tag):end if end >= 0 else None]
    return value.split(b",", 1)[0]
