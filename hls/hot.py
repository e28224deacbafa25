"""The hot HLS URLs answered from bytes made ahead, below aiohttp's request path.

Viewers of a live channel ask, over and over, for the same few things: its
playlist (the same bytes for everyone until the next segment or part) and its
segments and parts (immutable). Going through aiohttp for each costs a request
object, a task, routing, a response object and its serialisation: 45 µs of CPU
per playlist request against 15 µs here, most of which is the kernel's
(benchmarks/README.md, "Issue 12, viewer half"). Here an answer is a head made once (per
playlist version, in hls.versions; per content type for media) and the body the
segmenter already holds, handed back as is: no per-request copy of the body.

Only what a channel held here can answer at once is hot: index.m3u8; ll.m3u8
without a query (a query carries delivery directives: blocking reloads, delta
updates); a segment, part or init section, or the 404 for one that is not
there. `answer` gives None for everything else (another node's channel, the
preload-hinted part that must be waited for, an unusual path) and the caller
leaves the request to the aiohttp handlers (hls.http), which answer it as they
always have. The request's parsing and the connection are the caller's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .chunks import Chunks
from .versions import PlaylistVersions
from .wire import content_length_line

if TYPE_CHECKING:
    from .segmenter import Segmenter

log = logging.getLogger("hls.hot")

Body = bytes | bytearray | memoryview | Chunks
# (kind, status, channel, client): the hls.http on_request hook.
RequestHook = Callable[[str, int, str, str], None]
# (head without the Date line and the final CRLF, body or None for a HEAD request)
Answer = tuple[bytes, Body | None]


@dataclass(frozen=True, slots=True)
class Canned:
    """A whole answer made once (the 404s): status, head (no Date line), body."""

    status: int
    head: bytes
    body: bytes


@dataclass(frozen=True, slots=True)
class HotHeads:
    """What the aiohttp handlers would answer, made once, as hls.http builds them."""

    ts_media: bytes  # 200 head of a TS segment, without Content-Length
    fmp4_media: bytes  # likewise for init sections, parts and fMP4 segments
    not_ready: Canned  # a channel publishing but without a segment yet
    ll_off: Canned  # ll.m3u8 on a server with LL-HLS off
    unknown_media: Canned  # a segment, part or init section not (or no longer) held


class HotAnswers:
    """Answers for the hot URLs of local channels, as heads and bodies for the wire."""

    __slots__ = ("_heads", "_lookup", "_on_request", "_prefix", "_prefix_length", "_versions")

    def __init__(self, lookup: Callable[[str], Segmenter | None], versions: PlaylistVersions,
                 heads: HotHeads, *, prefix: str = "/live",
                 on_request: RequestHook | None = None) -> None:
        self._lookup = lookup
        self._versions = versions
        self._heads = heads
        self._prefix = (prefix.rstrip("/") + "/").encode()
        self._prefix_length = len(self._prefix)
        self._on_request = on_request

    def answer(self, target: bytes, head_only: bool, accept_encoding: bytes | None,
               if_none_match: bytes | None, peer: str, user_agent: bytes | None
               ) -> Answer | None:
        """The answer to GET (or HEAD) `target`, or None if it is not a hot request."""
        path, query, _ = target.partition(b"?")
        if not path.startswith(self._prefix) or b"%" in path:
            return None  # not ours, or percent-encoded: aiohttp decodes and routes it
        channel_raw, slash, name = path[self._prefix_length:].partition(b"/")
        if not slash or b"/" in name:
            return None
        channel = channel_raw.decode("latin-1")
        segmenter = self._lookup(channel)
        if segmenter is None:
            return None  # not held here: another node may hold it (hls.remote)
        if name == b"index.m3u8":
            kind = "playlist"
            if not segmenter.playlist_ready:
                return self._canned(self._heads.not_ready, kind, channel, head_only, peer,
                                    user_agent)
            version = self._versions.of(segmenter, "ts", segmenter.render_playlist())
        elif name == b"ll.m3u8":
            if query:
                return None  # delivery directives: blocking reloads and delta updates
            kind = "ll_playlist"
            if not segmenter.low_latency:
                return self._canned(self._heads.ll_off, kind, channel, head_only, peer,
                                    user_agent)
            if not segmenter.playlist_ready:
                return self._canned(self._heads.not_ready, kind, channel, head_only, peer,
                                    user_agent)
            version = self._versions.of(segmenter, "ll", segmenter.render_ll_playlist())
        else:
            return self._media(segmenter, channel, name, head_only, peer, user_agent)
        chosen, unchanged = version.choose(
            accept_encoding.decode("latin-1") if accept_encoding is not None else None,
            if_none_match.decode("latin-1") if if_none_match is not None else None)
        if unchanged:
            self._count(kind, 304, channel, peer, user_agent)
            return chosen.not_modified_head, None
        self._count(kind, 200, channel, peer, user_agent)
        return chosen.head, None if head_only else chosen.body

    def _media(self, segmenter: Segmenter, channel: str, name: bytes, head_only: bool,
               peer: str, user_agent: bytes | None) -> Answer | None:
        stem, _, extension = name.rpartition(b".")
        if not stem:
            return None
        if extension == b"ts":
            head = self._heads.ts_media
        elif extension in (b"m4s", b"mp4"):
            head = self._heads.fmp4_media
        else:
            return None
        resource = name.decode("latin-1")
        data = segmenter.segment(resource)
        if data is None:
            if resource == segmenter.preload_hint:
                return None  # held until the part is complete: the aiohttp handler waits
            return self._canned(self._heads.unknown_media, "segment", channel, head_only, peer,
                                user_agent)
        self._count("segment", 200, channel, peer, user_agent)
        return head + content_length_line(len(data)), None if head_only else data

    def _canned(self, canned: Canned, kind: str, channel: str, head_only: bool, peer: str,
                user_agent: bytes | None) -> Answer:
        self._count(kind, canned.status, channel, peer, user_agent)
        return canned.head, None if head_only else canned.body

    def _count(self, kind: str, status: int, channel: str, peer: str,
               user_agent: bytes | None) -> None:
        hook = self._on_request
        if hook is None:
            return
        agent = user_agent.decode("utf-8", "surrogateescape") if user_agent is not None else ""
        try:
            hook(kind, status, channel, f"{peer} {agent}")
        except Exception:
            log.exception("on_request hook failed")
