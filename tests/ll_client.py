"""A small LL-HLS player for tests: reads ll.m3u8 and follows it as hls.js does
(blocking reload for the next part, the hinted part fetched before it is listed)."""

from __future__ import annotations

import aiohttp

from benchmarks.llm3u8 import LlPlaylist, parse_ll_playlist


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
        self.playlist = parse_ll_playlist(body.decode())
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
        self.playlist = parse_ll_playlist(body.decode())
        for listed in self.playlist.all_parts():
            if listed.uri not in self.parts:
                status, body = await self.get(listed.uri)
                assert status == 200, listed.uri
                self.parts[listed.uri] = body
        return self.playlist
