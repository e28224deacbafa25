"""Playlists of channels held elsewhere: one origin fetch per channel in flight, shared.

A playlist changes with every segment (or part), so it cannot be kept like a
segment; but every viewer polling an edge wants the same bytes. index.m3u8,
which every player polls, is followed while viewers ask for it (edge_follow):
the origin answers this edge once per change and viewers get the copy held
here. Otherwise (before a follower answers, after one failed, past
MAX_FOLLOWED, any other playlist) requests for one playlist (same channel, path
and HLS directives) share one fetch in flight, and its answer stays fresh for
PLAYLIST_FRESH_SECONDS, so however many viewers poll an edge, the origin sees
about one. Refetches are conditional (If-None-Match), so an unchanged playlist
costs the origin a 304.

LL-HLS: a blocking reload (_HLS_msn/_HLS_part) is one key per (channel, path,
msn, part, skip), so all of an edge's viewers waiting for the same part wait on
one origin request, which the origin holds until the part lands. Its timeout
follows the origin's limit (three target durations, read from the last copy).
The origin's 400 (a directive past the live edge), and its 503 to a blocking
reload (the part did not come), are passed on as they are; a 503 to a plain
request is an origin going down, ridden through with the last copy.

The last good copy of each playlist is kept: when the origin cannot be reached,
answers 404 or the registry says nobody holds the channel, viewers get that copy
(as it was: no ENDLIST added) for up to the grace period after it was fetched, so
players ride through an encoder moving to another node. A copy from any origin
is replaced as soon as a new origin answers.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

from hls.remote import FOLLOWED_PLAYLIST, Failed, Found, Missing, RemoteAnswer, RemoteRequest

from .edge_client import OriginClient, Outcome
from .edge_follow import Followers
from .edge_locate import LocateError, Locator
from .edge_metrics import EdgeStats
from .edge_share import InFlight

log = logging.getLogger("mediaserver.edge")

# How long one origin answer serves every viewer of the edge, for a playlist not
# followed. A new segment reaches them at most this much later than viewers of the
# origin (a quarter of the default 2 s target), and the origin sees at most two
# requests a second per playlist per edge, whatever the audience: what one or two
# players cost (hls.js reloads every target duration, every half target while
# nothing changed).
PLAYLIST_FRESH_SECONDS = 0.5
# The origin renders a playlist from memory; one target duration (2 s by default) later
# the viewer would be polling again anyway.
PLAYLIST_TIMEOUT = 2.0
# An LL-HLS blocking reload is held by the origin until the part it names exists, up to
# three target durations (RFC 8216bis 6.2.5.2); past that the origin answers 503. The
# floor covers the default 2 s target; with a longer one the limit follows it, plus
# this much for the answer to travel.
BLOCKING_RELOAD_TIMEOUT = 8.0
BLOCKING_TARGETS = 3
BLOCKING_MARGIN_SECONDS = 2.0
# Playlists remembered (fresh answers, last copies). Every key a viewer can make costs an
# entry; past this the oldest go first, so varying queries cannot grow the tables.
MAX_PLAYLIST_KEYS = 4096
# Directives that make the origin wait (RFC 8216bis 6.2.5): the playlist's form without
# them is what a failover falls back to.
_BLOCKING = frozenset({"_HLS_msn", "_HLS_part"})

Key = tuple[str, str, str]  # channel, path, directives


def directives(query: str) -> str:
    """The `_HLS_` delivery directives of a query, in their order: all an origin acts on.

    Other parameters (players' cache-busters, say) mean nothing to the origin; keeping
    them would only split one playlist into many and defeat the sharing.
    """
    if not query:
        return ""
    pairs = parse_qsl(query, keep_blank_values=True)
    # In name order: players differ in the order they write them, the origin does not care.
    return urlencode(sorted((name, value) for name, value in pairs if name.startswith("_HLS_")))


def _form(query: str) -> str:
    if not query:
        return ""
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(name, value) for name, value in pairs if name not in _BLOCKING])


@dataclass(slots=True)
class _Copy:
    """The last playlist an origin gave for one form, for conditional refetch and failover."""

    found: Found
    origin: str
    etag: str | None
    fetched_at: float


class PlaylistRelay:
    def __init__(self, locate: Locator, client: OriginClient, stats: EdgeStats,
                 grace_period: float, *, freshness: float = PLAYLIST_FRESH_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._locate = locate
        self._client = client
        self._stats = stats
        self.grace_period = grace_period
        self.freshness = freshness
        self._clock = clock
        # Both oldest first: entries are re-inserted at the end whenever they change.
        self._fresh: OrderedDict[Key, tuple[float, RemoteAnswer]] = OrderedDict()  # made at
        self._copies: OrderedDict[Key, _Copy] = OrderedDict()
        self._inflight: InFlight[Key, RemoteAnswer] = InFlight()
        self.followers = Followers(locate, self._follow_fetch, stats, clock)

    async def get(self, request: RemoteRequest) -> RemoteAnswer:
        key = (request.channel, request.path, directives(request.query))
        if _followable(key):
            followed = self.followers.current(key)
            if followed is not None:
                self._stats.hits["playlist"] += 1
                return followed
        fresh = self._fresh.get(key)
        if fresh is not None and self._clock() - fresh[0] < self.freshness:
            self._stats.hits["playlist"] += 1
            return fresh[1]
        pending, shared = self._inflight.join(key, lambda: self._refresh(key))
        if shared:
            self._stats.hits["playlist"] += 1
        return await pending

    async def _refresh(self, key: Key) -> RemoteAnswer:
        channel, path, query = key
        form = (channel, path, _form(query))
        try:
            origin = await self._locate(channel)
        except LocateError as exc:
            answer = self._fallback(form) or Failed(exc.status, exc.reason)
        else:
            if origin is None:
                answer = self._fallback(form) or Missing("unknown channel")
            else:
                answer, current = await self._fetch(origin, key, form)
                if current and _followable(key):
                    assert isinstance(answer, Found)
                    self.followers.start(key, answer)
        self._fresh[key] = (self._clock(), answer)
        self._fresh.move_to_end(key)
        self._prune()
        return answer

    async def _follow_fetch(self, origin: str, key: Key, wait: float
                            ) -> tuple[RemoteAnswer, bool]:
        """A follower's request. What it gets is also the freshest answer for plain
        requests, which take over when the follower stops."""
        answer, current = await self._fetch(origin, key, key, wait)
        if current:
            self._fresh[key] = (self._clock(), answer)
            self._fresh.move_to_end(key)
        return answer, current

    async def _fetch(self, origin: str, key: Key, form: Key, wait: float | None = None
                     ) -> tuple[RemoteAnswer, bool]:
        """One origin request: what viewers get, and whether it is the origin's playlist as
        of now (not a failure, nor a last copy). `wait`: ask the origin to hold it until the
        playlist differs from the copy held here."""
        channel, path, query = key
        copy = self._copies.get(form)
        etag = copy.etag if copy is not None and copy.origin == origin else None
        timeout = PLAYLIST_TIMEOUT + (wait or 0.0)
        blocking = bool(_BLOCKING & _names(query))
        if blocking:
            target = _target_duration(copy.found.body) if copy is not None else 0
            timeout = max(BLOCKING_RELOAD_TIMEOUT,
                          BLOCKING_TARGETS * target + BLOCKING_MARGIN_SECONDS)
        url = f"{origin}{path}?{query}" if query else origin + path
        reply = await self._client.get(url, timeout, etag, wait)
        outcome = reply.outcome
        self._stats.fetches[("playlist", outcome.value)] += 1
        if outcome is Outcome.OK:
            # An unchanged body keeps its object, so the handlers' rendering of it stays.
            same = copy is not None and copy.found.body == reply.body
            found = copy.found if same and copy is not None else Found(reply.body)
            self._keep(form, _Copy(found, origin, reply.etag, self._clock()))
            return found, True
        if outcome is Outcome.NOT_MODIFIED and etag is not None and copy is not None:
            self._keep(form, _Copy(copy.found, origin, etag, self._clock()))
            return copy.found, True
        refused = outcome is Outcome.REFUSED
        if refused and (blocking or reply.status == 400):
            return reply.failed(), False  # the origin's answer to this request, not an outage
        if outcome.failure or refused or outcome is Outcome.NOT_MODIFIED:
            log.warning("edge: playlist fetch failed channel=%s origin=%s: %s %s",
                        channel, origin, outcome.value, reply.detail)
        fallback = self._fallback(form)
        if fallback is not None:
            return fallback, False
        if outcome is Outcome.NOT_FOUND:
            return Missing(reply.detail or "unknown channel"), False
        return reply.failed(), False

    def _fallback(self, form: Key) -> Found | None:
        """The last copy of this playlist, if it is within the grace period."""
        copy = self._copies.get(form)
        if copy is None or self._clock() - copy.fetched_at > self.grace_period:
            return None
        self._stats.stale_playlists += 1
        return copy.found

    def _keep(self, form: Key, copy: _Copy) -> None:
        self._copies[form] = copy
        self._copies.move_to_end(form)

    def _prune(self) -> None:
        """Forget fresh answers past their time and copies past the grace period."""
        now = self._clock()
        fresh, copies = self._fresh, self._copies
        while fresh and (len(fresh) > MAX_PLAYLIST_KEYS
                         or now - next(iter(fresh.values()))[0] >= self.freshness):
            fresh.popitem(last=False)
        while copies and (len(copies) > MAX_PLAYLIST_KEYS
                          or now - next(iter(copies.values())).fetched_at > self.grace_period):
            copies.popitem(last=False)

    async def close(self) -> None:
        await self.followers.close()
        await self._inflight.close()


def _followable(key: Key) -> bool:
    """The playlist an origin holds requests for, asked without directives."""
    return not key[2] and key[1].endswith("/" + FOLLOWED_PLAYLIST)


def _names(query: str) -> frozenset[str]:
    return frozenset(name for name, _ in parse_qsl(query, keep_blank_values=True))


def _target_duration(playlist: bytes) -> int:
    """EXT-X-TARGETDURATION of a playlist body (0 if it has none)."""
    at = playlist.find(b"#EXT-X-TARGETDURATION:")
    if at < 0:
        return 0
    value = playlist[at + len(b"#EXT-X-TARGETDURATION:"):].split(b"\n", 1)[0].strip()
    return int(value) if value.isdigit() else 0
