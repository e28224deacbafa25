"""In-process record of which channels are live, for stores that serve one node."""

from __future__ import annotations

import time
from collections.abc import Callable


class OnlineTable:
    """Channel -> (node, deadline); entries lapse on their own like Redis keys with a TTL."""

    __slots__ = ("_clock", "_entries")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[str, tuple[str, float]] = {}

    def mark_online(self, name: str, node: str, ttl_seconds: float) -> None:
        if not ttl_seconds > 0:
            raise ValueError("ttl_seconds must be positive")
        self._entries[name] = (node, self._clock() + ttl_seconds)

    def mark_offline(self, name: str) -> None:
        self._entries.pop(name, None)

    def online(self) -> set[str]:
        now = self._clock()
        expired = [name for name, (_, deadline) in self._entries.items() if deadline <= now]
        for name in expired:
            del self._entries[name]
        return set(self._entries)
