"""Asking the cluster registry which node holds a channel, with a deadline and clear failures."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from .edge_metrics import EdgeStats

log = logging.getLogger("mediaserver.edge")

# The origin's base URL ("http://host:port") when another live node holds the channel;
# None when this node holds it or nobody does. Provided by the cluster registry.
Locate = Callable[[str], Awaitable[str | None]]

# A registry look-up is one Redis round trip; a second means Redis is in trouble, and a
# viewer should get an answer (its last playlist, or a 504) rather than wait on it.
LOCATE_TIMEOUT = 1.0


class LocateError(Exception):
    """The registry could not say where a channel is."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status  # 504: timed out; 502: failed
        self.reason = reason


class Locator:
    """`locate` with a timeout, failures counted, logged and turned into LocateError."""

    def __init__(self, locate: Locate, stats: EdgeStats) -> None:
        self._locate = locate
        self._stats = stats

    async def __call__(self, channel: str) -> str | None:
        try:
            origin = await asyncio.wait_for(self._locate(channel), LOCATE_TIMEOUT)
        except TimeoutError:
            self._stats.locate_failures += 1
            log.warning("edge: origin look-up timed out channel=%s", channel)
            raise LocateError(504, "cluster registry timed out") from None
        except Exception as exc:
            self._stats.locate_failures += 1
            log.warning("edge: origin look-up failed channel=%s: %r", channel, exc)
            raise LocateError(502, "cluster registry unavailable") from exc
        return origin.rstrip("/") if origin else None
