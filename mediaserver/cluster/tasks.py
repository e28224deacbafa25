"""Work started by one event and left to run, kept track of (the bus's handlers).

A Redis failure in it is logged and counted, never raised into whoever started
it; cancel() ends what is still running when the node stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Iterable
from typing import Any

from redis.exceptions import RedisError

log = logging.getLogger("mediaserver.cluster")


class Background:
    """A set of running tasks whose Redis failures are logged, not raised."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self.failures = 0

    def spawn(self, coro: Coroutine[Any, Any, Any], what: str) -> None:
        async def run() -> None:
            try:
                await coro
            except (RedisError, OSError) as exc:
                self.failures += 1
                log.warning("cluster: %s failed (Redis unavailable): %s", what, exc)
            except Exception:
                self.failures += 1
                log.exception("cluster: %s failed", what)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def cancel(self) -> None:
        await cancel_all(self._tasks)


async def cancel_all(tasks: Iterable[asyncio.Task[None]]) -> None:
    """Cancel every task and wait until each has ended (a node stopping)."""
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
