"""Readers of a live stream, each behind its own bounded queue.

The publisher's data_received path only appends to queues; each reader drains
its queue on a later loop turn. A reader that falls behind (its queue is full)
skips: the media queued for it is dropped, and so is the media offered after,
up to the next point it can resume from (a video keyframe). Control items
(track changes, publisher ends) are never dropped, so the reader goes on with
the right state. A `SKIPPED` marker stands where media went missing. Skips are
counted; a reader is never dropped, so it can never stall ingest nor vanish.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from .soon import SoonCallback

log = logging.getLogger("mediaserver.readers")

Item = TypeVar("Item")

# About 20 s of a 30 fps + AAC stream: far more than any healthy reader lags by.
# The queue only fills within one loop turn (each turn drains it), so an overflow
# means one turn brought this much: a sender far faster than real time.
DEFAULT_MAX_QUEUED = 1800
# A sender that outruns its reader skips on every read: one log line per reader
# this often is enough to see it, without a line per skip.
SKIP_LOG_INTERVAL_SECONDS = 10.0
# A drain callback hands the loop back after this long, and goes on with the readers
# left on the next turn. Read pacing releases every publisher at once, so one turn
# brings all their frames: at 100 streams draining them all in one go held the loop
# (and every HLS request waiting on it) for tens of milliseconds. A slice of a few
# readers' work keeps the batching and lets HTTP in between slices.
DRAIN_SLICE_SECONDS = 0.002


class Skipped:
    """Queue marker: media was skipped here; the next media item is a resume point."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "SKIPPED"


SKIPPED: Final = Skipped()


@dataclass(slots=True)
class SkipCounters:
    """Times a reader started skipping, and media items it skipped in all."""

    times: int = 0
    frames: int = 0


def _always(item: object) -> bool:
    return True


class DrainScheduler:
    """One loop callback drains the readers that were offered items, in order.

    With hundreds of publishers, uvloop hands many sockets' data to the
    protocols in one turn; scheduling one callback for all of them instead of
    one per reader saves a loop handle per read (profiled: thousands a second).
    The callback stops after DRAIN_SLICE_SECONDS and is scheduled again for the
    readers left, so that the loop turns (HTTP requests are answered) meanwhile.
    """

    def __init__(self, slice_seconds: float = DRAIN_SLICE_SECONDS) -> None:
        self._pending: list[QueuedReader[Any]] = []
        self._slice = slice_seconds
        self._soon = SoonCallback(self._run)

    def request(self, reader: QueuedReader[Any]) -> None:
        self._pending.append(reader)
        self._soon.schedule()

    def _run(self) -> None:
        pending = self._pending
        deadline = time.perf_counter() + self._slice
        done = 0
        # Readers requested meanwhile are appended: they wait their turn like the rest.
        while done < len(pending):
            pending[done].flush()
            done += 1
            if time.perf_counter() >= deadline:
                break
        del pending[:done]
        if pending:
            self._soon.schedule()


class QueuedReader(Generic[Item]):
    """Calls `handle` for each offered item, in order, from its own loop callback.

    `skippable` tells media (may be skipped) from control items (always kept);
    `resumes` tells which skippable item a skip may end on. `totals`, if given,
    is a counter shared with other readers (the hub's, for /metrics). `handle_batch`,
    if given, is called instead with everything queued at once, in order, and returns
    how many items failed (it logs them): one call per drain, not one per frame.
    """

    def __init__(
        self,
        name: str,
        handle: Callable[[Item | Skipped], None],
        max_queued: int = DEFAULT_MAX_QUEUED,
        *,
        skippable: Callable[[Item], bool] = _always,
        resumes: Callable[[Item], bool] = _always,
        totals: SkipCounters | None = None,
        scheduler: DrainScheduler | None = None,
        handle_batch: Callable[[list[Item | Skipped]], int] | None = None,
    ) -> None:
        if max_queued < 1:
            raise ValueError("max_queued must be at least 1")
        self.name = name
        self._handle = handle
        self._handle_batch = handle_batch
        self._queue: deque[Item | Skipped] = deque()
        self._max_queued = max_queued
        self._skippable = skippable
        self._resumes = resumes
        self._scheduled = False
        self._scheduler = scheduler or DrainScheduler()
        self._skipping = False
        self._counters = (SkipCounters(),) if totals is None else (SkipCounters(), totals)
        self._logged_at = float("-inf")
        self.errors = 0

    def offer(self, item: Item) -> bool:
        """Queue an item; False when it was skipped (the reader is behind)."""
        queue = self._queue
        if self._skipping or len(queue) >= self._max_queued:
            if not self._skipping:
                self._start_skipping()
            if self._skippable(item):
                if not self._resumes(item):
                    self._count(0, 1)
                    return False
                self._skipping = False
        queue.append(item)
        if not self._scheduled:
            self._scheduled = True
            self._scheduler.request(self)
        return True

    def offer_all(self, items: list[Item]) -> bool:
        """Queue every item at once if the reader keeps up (not skipping, room for all);
        False, with nothing queued, if not: then offer() them one by one."""
        queue = self._queue
        if self._skipping or len(queue) + len(items) > self._max_queued:
            return False
        queue.extend(items)
        if not self._scheduled:
            self._scheduled = True
            self._scheduler.request(self)
        return True

    def _start_skipping(self) -> None:
        """Drop the queued media, keep control items in order, mark where media went."""
        kept: deque[Item | Skipped] = deque()
        dropped = 0
        for queued in self._queue:
            if queued is SKIPPED or not self._skippable(queued):  # type: ignore[arg-type]
                kept.append(queued)
                continue
            if dropped == 0:
                kept.append(SKIPPED)  # media goes missing from here on
            dropped += 1
        if dropped == 0 and (not kept or kept[-1] is not SKIPPED):
            kept.append(SKIPPED)  # the media about to be offered goes missing here
        self._queue.clear()
        self._queue.extend(kept)
        self._skipping = True
        self._count(1, dropped)
        now = time.monotonic()
        if now - self._logged_at >= SKIP_LOG_INTERVAL_SECONDS:
            self._logged_at = now
            own = self._counters[0]
            log.warning("reader %s fell %d items behind: skipping to the next resume point "
                        "(%d skips, %d items skipped so far)",
                        self.name, self._max_queued, own.times, own.frames)

    def _count(self, times: int, frames: int) -> None:
        for counters in self._counters:
            counters.times += times
            counters.frames += frames

    @property
    def backlog(self) -> int:
        return len(self._queue)

    @property
    def skipping(self) -> bool:
        return self._skipping

    @property
    def times_skipped(self) -> int:
        return self._counters[0].times

    @property
    def frames_skipped(self) -> int:
        return self._counters[0].frames

    def _drain(self) -> None:
        self._scheduled = False
        queue = self._queue
        if self._handle_batch is not None:
            while queue:  # items offered while handling are taken too
                items = list(queue)
                queue.clear()
                self.errors += self._handle_batch(items)
            return
        handle = self._handle
        while queue:
            item = queue.popleft()
            try:
                handle(item)
            except Exception:
                self.errors += 1
                log.exception("reader %s failed on an item", self.name)

    def flush(self) -> None:
        """Handle everything queued now (shutdown, tests)."""
        self._drain()

    def clear(self) -> None:
        """Forget everything queued (the reader's output is gone)."""
        self._queue.clear()
