"""Stand-ins for the live system when the control API is tested alone."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from control_api.live import StreamStats


@dataclass
class FakeLive:
    """A LiveControl that records kicks; a kicked stream goes away, like the real hub's."""

    streams: dict[str, StreamStats] = field(default_factory=dict)
    kicks: list[tuple[str, str, float]] = field(default_factory=list)

    def live_here(self) -> set[str]:
        return set(self.streams)

    async def live_streams(self) -> list[StreamStats]:
        return list(self.streams.values())

    async def is_live(self, channel: str) -> bool:
        return channel in self.streams

    async def kick(self, channel: str, reason: str, block_seconds: float = 0.0) -> bool:
        self.kicks.append((channel, reason, block_seconds))
        return self.streams.pop(channel, None) is not None


async def wait_until(predicate: Callable[[], bool], deadline: float = 5.0) -> None:
    """Poll a synchronous condition until it holds; fail at the deadline."""
    end = time.monotonic() + deadline
    while not predicate():
        assert time.monotonic() < end, "condition not reached before the deadline"
        await asyncio.sleep(0.01)
