"""A small LL-HLS player for tests: reads ll.m3u8 and follows it as hls.js does
(blocking reload for the next part, the hinted part fetched before it is listed)."""

from __future__ import annotations

from dataclasses import dataclass, field

import aiohttp


@dataclass(frozen=True)
class Part:
    uri: str
    duration: float
    independent: bool


@dataclass
class LlPlaylist:
    media_sequence: int = 0
    skipped: int = 0
    maps: list[str] = field(default_factory=list)
    segments: list[tuple[int, str, list[Part]]] = field(default_factory=list)  # msn, uri, parts
    open_parts: list[Part] = field(default_factory=list)
    hint: str | None = None
    ended: bool = False
    tags: dict[str, str] = field(default_factory=dict)  # single-valued header tags

    @property
    def open_msn(self) -> int:
        return self.media_sequence + self.skipped + len(self.segments)

    def next_wanted(self) -> tuple[int, int]:
        """(_HLS_msn, _HLS_part) of the part after the newest listed."""
        return self.open_msn, len(self.open_parts)

    def all_parts(self) -> list[Part]:
        return [part for _, _, parts in self.segments for part in parts] + self.open_parts


def attributes(value: str) -> dict[str, str]:
    out = {}
    for item in value.split(","):
        name, _, raw = item.partition("=")
        out[name] = raw.strip('"')
    return out


def parse_ll(text: str) -> LlPlaylist:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    assert lines[0] == "#EXTM3U", text[:80]
    playlist = LlPlaylist()
    parts: list[Part] = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if line.startswith("#EXT-X-PART:"):
            attrs = attributes(value)
            parts.append(Part(attrs["URI"], float(attrs["DURATION"]),
                              attrs.get("INDEPENDENT") == "YES"))
        elif line.startswith("#EXT-X-MAP:"):
            playlist.maps.append(attributes(value)["URI"])
        elif line.startswith("#EXT-X-PRELOAD-HINT:"):
            playlist.hint = attributes(value)["URI"]
        elif line.startswith("#EXT-X-SKIP:"):
            playlist.skipped = int(attributes(value)["SKIPPED-SEGMENTS"])
        elif line == "#EXT-X-ENDLIST":
            playlist.ended = True
        elif line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            playlist.media_sequence = int(value)
        elif line.startswith("#EXT-X-") and value and name not in ("#EXT-X-PROGRAM-DATE-TIME",):
            playlist.tags[name[1:]] = value
        elif not line.startswith("#"):
            playlist.segments.append((playlist.open_msn, line, parts))
            parts = []
    playlist.open_parts = parts
    return playlist


class LlFollower:
    """Follows one channel's ll.m3u8 at `base` (…/live/CHANNEL), fetching every part once."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base
        self.parts: dict[str, bytes] = {}
        self.playlist = LlPlaylist()
        self.statuses: list[int] = []

    async def get(self, path: str) -> tuple[int, bytes]:
        async with self.session.get(f"{self.base}/{path}") as response:
            self.statuses.append(response.status)
            return response.status, await response.read()

    async def start(self) -> LlPlaylist:
        status, body = await self.get("ll.m3u8")
        assert status == 200, body[:200]
        self.playlist = parse_ll(body.decode())
        return self.playlist

    async def step(self) -> LlPlaylist:
        """Fetch the hinted part (held until complete), then the playlist that lists it
        (a blocking reload), then any listed part not fetched yet."""
        hint = self.playlist.hint
        if hint is not None and hint not in self.parts:
            status, body = await self.get(hint)
            if status == 200:
                self.parts[hint] = body
        msn, part = self.playlist.next_wanted()
        status, body = await self.get(f"ll.m3u8?_HLS_msn={msn}&_HLS_part={part}")
        assert status == 200, body[:200]
        self.playlist = parse_ll(body.decode())
        for listed in self.playlist.all_parts():
            if listed.uri not in self.parts:
                status, body = await self.get(listed.uri)
                assert status == 200, listed.uri
                self.parts[listed.uri] = body
        return self.playlist
