"""Real-time replay of the pre-chunked clip for every publisher, from one task.

One timer per publisher would mean thousands of timer handles a second at N = 200;
one pacer ticking every 5 ms visits each feed and writes everything due in one
`writelines` call. A feed does not write while its transport holds more than
`HIGH_WATER` unsent bytes, like an encoder blocked on a full socket; its lag is
how late the oldest due frame is when it is finally written, which is what an
encoder's frame-drop logic looks at.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from .chunked import ChunkedClip

# Frames are 21 ms (AAC) and 33 ms (30 fps) apart; a 5 ms tick writes about one frame per
# write, as an encoder does. A coarser tick batches several frames per write and per server
# wake-up, which flatters servers with a high cost per wake-up.
DEFAULT_TICK = 0.005
# Unsent bytes a transport may hold before the feed stops adding more (~0.5 s at 3 Mbps).
HIGH_WATER = 192 * 1024
# Messages written per feed per tick at most, so one backlogged feed cannot stall the rest.
MAX_BATCH = 256


class Feed:
    """Where one publisher is in the endless replay of the clip."""

    __slots__ = ("bytes_sent", "clip", "closed", "index", "loop", "max_lag", "messages",
                 "next_due", "start", "stream_id", "transport")

    def __init__(self, clip: ChunkedClip, transport: asyncio.WriteTransport, stream_id: int,
                 start: float) -> None:
        self.clip = clip
        self.transport = transport
        self.stream_id = stream_id
        self.start = start  # loop-clock time at which media timestamp 0 is due
        self.index = 0
        self.loop = 0
        self.max_lag = 0.0
        self.bytes_sent = 0
        self.messages = 0
        self.closed = False
        self.next_due = self._due()  # cached: most pumps only compare it with the clock
        head = clip.head_messages(stream_id)
        transport.writelines(head)
        self.bytes_sent += sum(len(m) for m in head)

    def _due(self) -> float:
        """Loop-clock time at which the next message should be on the wire."""
        return self.start + self.media_seconds()

    def lag(self, now: float) -> float:
        """How far behind real time this feed is right now (0 when on time)."""
        return max(0.0, now - self.next_due)

    def media_seconds(self) -> float:
        """Media time sent so far."""
        clip = self.clip
        return (self.loop * clip.loop_ms + clip.offsets_ms[self.index]) / 1000.0

    def pump(self, now: float) -> None:
        first_due = self.next_due
        if first_due > now:
            return
        transport = self.transport
        if transport.is_closing():
            self.closed = True
            return
        if transport.get_write_buffer_size() > HIGH_WATER:
            self._note_lag(now - first_due)
            return
        clip = self.clip
        count = len(clip.media)
        parts = []
        due = first_due
        while due <= now and len(parts) < MAX_BATCH:
            parts.append(clip.message(self.index, self.loop, self.stream_id))
            self.index += 1
            if self.index == count:
                self.index = 0
                self.loop += 1
            due = self._due()
        self.next_due = due
        self._note_lag(now - first_due)
        transport.writelines(parts)
        self.messages += len(parts)
        self.bytes_sent += sum(map(len, parts))

    def _note_lag(self, lag: float) -> None:
        if lag > self.max_lag:
            self.max_lag = lag


@dataclass(slots=True)
class PacerStats:
    ticks: int = 0
    max_overrun: float = 0.0  # worst lateness of a tick: the load generator's own lag


class Pacer:
    """Drives all feeds on a fixed tick until stopped or its deadline passes."""

    def __init__(self, tick: float = DEFAULT_TICK) -> None:
        self.tick = tick
        self.feeds: list[Feed] = []
        self.stats = PacerStats()
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    def add(self, feed: Feed) -> None:
        self.feeds.append(feed)

    def remove(self, feed: Feed) -> None:
        """Forget a feed whose publisher left (a soak churns through thousands)."""
        with contextlib.suppress(ValueError):
            self.feeds.remove(feed)

    def start(self, deadline: float) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(deadline))

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        stats = self.stats
        while not self._stop.is_set() and (now := loop.time()) < deadline:
            overrun = now - next_tick
            if overrun > stats.max_overrun:
                stats.max_overrun = overrun
            for feed in self.feeds:
                if not feed.closed:
                    feed.pump(now)
            stats.ticks += 1
            next_tick += self.tick
            if next_tick < loop.time():  # fell behind: don't try to catch up tick by tick
                next_tick = loop.time() + self.tick
            await asyncio.sleep(max(0.0, next_tick - loop.time()))
