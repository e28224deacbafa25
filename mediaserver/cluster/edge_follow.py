"""Following a channel's index.m3u8 on its origin while this edge has viewers of it.

Refetching the playlist whenever a viewer finds the edge's copy older than a
freshness window costs the origin about two requests a second per edge, and
serves viewers a copy up to that window old. Instead, once a viewer's fetch has
the playlist, a follower asks the origin again at once, with the ETag of that
copy and hls.remote.WAIT_HEADER: the origin holds the request until the playlist
differs (hls.edge_hold). So the origin answers once per playlist change per edge
(one segment every target duration), and every viewer here is served, from
memory, a copy that is never older than the trip between the two nodes.

A follower serves viewers only while it follows: from the fetch that started it
until one of its requests fails (origin gone or frozen, channel moved, registry
unsure). Viewers then go back to plain fetches (edge_playlists), with their
failover rules, and the next fetch that gets the playlist starts a follower
again. A follower stops once nobody asked for its playlist for
FOLLOW_IDLE_SECONDS, and once the playlist ended (ENDLIST: it never changes
again, and players stop reloading it). Each one holds one connection to its
origin.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from hls.remote import Found, RemoteAnswer

from .edge_locate import LocateError, Locator
from .edge_metrics import EdgeStats
from .tasks import cancel_all

log = logging.getLogger("mediaserver.edge")

# How long the origin may hold one request. Any playlist changes every target duration
# (2 s by default), so this is reached only by a stalled stream, which then costs each
# edge one 304 this often.
FOLLOW_WAIT_SECONDS = 10.0
# A follower stops once its playlist went this long without a viewer request. Players
# reload every target duration (hls.js: half of it while nothing changes), so several
# targets of silence mean the audience here has left.
FOLLOW_IDLE_SECONDS = 10.0
# Followers at once, each holding a connection from the origin client's pool (256):
# at most half of it, so that segment fetches always find connections. Playlists past
# this are served by plain fetches (as all are with a limit of 0).
MAX_FOLLOWED = 128
# An origin that answers a held request with the playlist this edge has, in less than
# half the wait, did not hold it (another version of this server): ask it no more often
# than this, as plain fetches would.
UNHELD_PAUSE_SECONDS = 0.5

Key = tuple[str, str, str]  # channel, path, directives (none for a followed playlist)
# (origin, key, wait) -> the answer for viewers, and whether it is the origin's playlist
# as of now (not a failure, nor a last copy kept for failover).
Fetch = Callable[[str, Key, float], Awaitable[tuple[RemoteAnswer, bool]]]


class _Follower:
    __slots__ = ("answer", "asked_at")

    def __init__(self, answer: Found, asked_at: float) -> None:
        self.answer: Found | None = answer  # None once it no longer follows
        self.asked_at = asked_at


class Followers:
    """The playlists this edge follows, each by one task holding a request to its origin."""

    def __init__(self, locate: Locator, fetch: Fetch, stats: EdgeStats,
                 clock: Callable[[], float], *, wait: float = FOLLOW_WAIT_SECONDS,
                 idle: float = FOLLOW_IDLE_SECONDS, limit: int = MAX_FOLLOWED) -> None:
        self._locate = locate
        self._fetch = fetch
        self._stats = stats
        self._clock = clock
        self.wait = wait
        self.idle = idle
        self.limit = limit
        self._followers: dict[Key, _Follower] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._followers)

    def current(self, key: Key) -> Found | None:
        """The followed playlist, as the origin has it now; None if it is not followed."""
        follower = self._followers.get(key)
        if follower is None or follower.answer is None:
            return None
        follower.asked_at = self._clock()
        return follower.answer

    def start(self, key: Key, answer: Found) -> None:
        """A viewer's fetch just got `answer` from the origin: follow it from there."""
        if key in self._followers or len(self._followers) >= self.limit or _ended(answer):
            return
        follower = self._followers[key] = _Follower(answer, self._clock())
        task = asyncio.get_running_loop().create_task(self._follow(key, follower))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._stats.followed = len(self._followers)

    async def _follow(self, key: Key, follower: _Follower) -> None:
        channel = key[0]
        try:
            while self._clock() - follower.asked_at < self.idle:
                try:
                    origin = await self._locate(channel)
                except LocateError:
                    return  # logged by the locator; viewers' own fetches say what they can
                if origin is None:
                    return
                asked = self._clock()
                answer, current = await self._fetch(origin, key, self.wait)
                if not current or not isinstance(answer, Found):
                    return  # the fetch logged it; viewers fall back to plain fetches
                unchanged = answer is follower.answer
                follower.answer = answer
                if _ended(answer):
                    return
                if unchanged and self._clock() - asked < self.wait / 2:
                    await asyncio.sleep(UNHELD_PAUSE_SECONDS)
        except Exception:
            log.exception("edge: following the playlist failed channel=%s", channel)
        finally:
            follower.answer = None
            if self._followers.get(key) is follower:
                del self._followers[key]
            self._stats.followed = len(self._followers)

    async def close(self) -> None:
        """Stop following (shutdown): the held requests are cancelled, the origins hear it."""
        await cancel_all(self._tasks)


def _ended(playlist: Found) -> bool:
    return b"#EXT-X-ENDLIST" in playlist.body
