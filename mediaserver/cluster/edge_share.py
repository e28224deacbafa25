"""Sharing between the viewers of an edge: one fetch in flight per key, a byte-bounded cache.

Both are what make N viewers on an edge cost the origin about one: whoever asks
while a fetch is under way waits for that fetch, and an immutable answer is kept
(until the byte budget needs the room) so it is fetched once per node.
"""

from __future__ import annotations

import asyncio
import functools
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class InFlight(Generic[K, V]):
    """At most one task per key; every caller for that key awaits the same one.

    Callers wait through a shield: a viewer that hangs up does not cancel the
    fetch the others (or the cache) are waiting for.
    """

    def __init__(self) -> None:
        self._tasks: dict[K, asyncio.Task[V]] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    def join(self, key: K, start: Callable[[], Coroutine[Any, Any, V]]
             ) -> tuple[asyncio.Future[V], bool]:
        """What to await for `key` (its task, started if none); True if it was already running."""
        task = self._tasks.get(key)
        shared = task is not None
        if task is None:
            task = asyncio.get_running_loop().create_task(start())
            self._tasks[key] = task
            task.add_done_callback(functools.partial(self._finished, key))
        return asyncio.shield(task), shared

    def _finished(self, key: K, task: asyncio.Task[V]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]

    async def close(self) -> None:
        """Cancel what is in flight (shutdown): waiters see CancelledError."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class ByteLru(Generic[K, V]):
    """Values by key, least recently used first out, bounded by their total size in bytes."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.bytes = 0
        self.evictions = 0
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, key: K, value: V, size: int) -> bool:
        """Keep value, evicting the least recently used; False if it alone exceeds the budget."""
        if size > self.capacity:
            return False
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= old[1]
        while self._entries and self.bytes + size > self.capacity:
            _, (_, dropped) = self._entries.popitem(last=False)
            self.bytes -= dropped
            self.evictions += 1
        self._entries[key] = (value, size)
        self.bytes += size
        return True
