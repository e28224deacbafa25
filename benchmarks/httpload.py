"""The HTTP side of a case: player-like viewers, or, without viewers, a slow latency sampler."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp

from .case import Case, Settings
from .probes import LatencySampler
from .viewer import Viewer, ViewerStats

COLLECT_TIMEOUT = 15.0


class HttpLoad:
    """Started when the window opens; `collect()` after it closes gives what clients saw."""

    def __init__(self, session: aiohttp.ClientSession, playlist_urls: list[str], case: Case,
                 settings: Settings) -> None:
        self.source = "viewers" if case.viewers_per_stream else "sampler"
        self._viewers = [Viewer(session, url) for url in playlist_urls
                         for _ in range(case.viewers_per_stream)]
        self._sampler = None if self._viewers else LatencySampler(
            session, playlist_urls, interval=settings.sample_interval)
        self._ramp = settings.ramp
        self._tasks: list[asyncio.Task[ViewerStats | None]] = []

    def start(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        if self._sampler is not None:
            self._tasks = [loop.create_task(self._sample(self._sampler, deadline))]
            return
        spread = self._ramp / max(1, len(self._viewers))
        self._tasks = [loop.create_task(v.run(deadline, i * spread))
                       for i, v in enumerate(self._viewers)]

    @staticmethod
    async def _sample(sampler: LatencySampler, deadline: float) -> None:
        await sampler.run(deadline)

    async def collect(self) -> tuple[ViewerStats, int]:
        """Merged client statistics and the number of viewers that started playing."""
        stats = ViewerStats()
        started = 0
        for task in self._tasks:
            with contextlib.suppress(Exception):
                one = await asyncio.wait_for(task, COLLECT_TIMEOUT)
                if one is not None:
                    stats.merge(one)
                    started += one.started
        if self._sampler is not None:
            stats.playlist_latency = self._sampler.playlist
            stats.segment_latency = self._sampler.segment
            stats.segments = len(self._sampler.segment)
            stats.errors += self._sampler.errors
        return stats, started

    def cancel(self) -> None:
        for task in self._tasks:
            task.cancel()
