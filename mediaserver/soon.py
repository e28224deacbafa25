"""A callback the loop runs soon, scheduled at most once at a time.

The hub's batched work (readers' drains, TS muxed ahead) is asked for many times a
turn and done once on a later turn; each asker only calls `schedule()`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class SoonCallback:
    """`callback` run by the running loop's call_soon, never queued twice at once."""

    __slots__ = ("_callback", "_loop", "scheduled")

    def __init__(self, callback: Callable[[], None]) -> None:
        self._callback = callback
        self.scheduled = False
        # Looked up once: asyncio.get_running_loop() costs a getpid() syscall per call.
        self._loop: asyncio.AbstractEventLoop | None = None

    def schedule(self) -> None:
        if self.scheduled:
            return
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        self.scheduled = True
        loop.call_soon(self._run)

    def _run(self) -> None:
        self.scheduled = False
        self._callback()
