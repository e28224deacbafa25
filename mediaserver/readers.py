"""Readers of a live stream, each behind its own bounded queue.

The publisher's data_received path only appends to queues; each reader drains
its queue on a later loop turn. A reader whose queue overflows (it cannot keep
up) is dropped and counted, never allowed to stall ingest or the other readers.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

log = logging.getLogger("mediaserver.readers")

Item = TypeVar("Item")

# About 20 s of a 30 fps + AAC stream: far more than any healthy reader lags by.
DEFAULT_MAX_QUEUED = 1800


class DrainScheduler:
    """One loop callback per loop turn drains every reader that was offered items.

    With hundreds of publishers, uvloop hands many sockets' data to the
    protocols in one turn; scheduling one callback for all of them instead of
    one per reader saves a loop handle per read (profiled: thousands a second).
    """

    def __init__(self) -> None:
        self._pending: list[QueuedReader[Any]] = []
        # Looked up once: asyncio.get_running_loop() costs a getpid() syscall per call.
        self._loop: asyncio.AbstractEventLoop | None = None

    def request(self, reader: QueuedReader[Any]) -> None:
        if not self._pending:
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            loop.call_soon(self._run)
        self._pending.append(reader)

    def _run(self) -> None:
        pending, self._pending = self._pending, []
        for reader in pending:
            reader.flush()


class QueuedReader(Generic[Item]):
    """Calls `handle` for each offered item, in order, from its own loop callback."""

    def __init__(
        self,
        name: str,
        handle: Callable[[Item], None],
        max_queued: int = DEFAULT_MAX_QUEUED,
        on_overflow: Callable[[QueuedReader[Item]], None] | None = None,
        scheduler: DrainScheduler | None = None,
    ) -> None:
        self.name = name
        self._handle = handle
        self._queue: deque[Item] = deque()
        self._max_queued = max_queued
        self._scheduled = False
        self._scheduler = scheduler or DrainScheduler()
        self._on_overflow = on_overflow
        self.dropped = False
        self.errors = 0

    def offer(self, item: Item) -> bool:
        """Queue an item; False (and the reader is dropped) when it is too far behind."""
        if self.dropped:
            return False
        queue = self._queue
        if len(queue) >= self._max_queued:
            self.dropped = True
            queue.clear()
            log.warning("reader %s dropped: %d items behind", self.name, self._max_queued)
            if self._on_overflow is not None:
                self._on_overflow(self)
            return False
        queue.append(item)
        if not self._scheduled:
            self._scheduled = True
            self._scheduler.request(self)
        return True

    @property
    def backlog(self) -> int:
        return len(self._queue)

    def _drain(self) -> None:
        self._scheduled = False
        queue = self._queue
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
