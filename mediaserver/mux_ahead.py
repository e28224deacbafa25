"""Watched channels' TS segments muxed ahead of their requests, one per loop turn.

A channel watched as index.m3u8 gets each segment muxed as it closes (hls.tsjit),
so that its viewers never wait for a mux. Done inside the segment's close, the
mux (~2 ms for a 2 s, 3 Mbit/s segment) ran inside a reader's drain, and every
HTTP request that came meanwhile waited behind the drain slice and the mux
together. Here each mux is a loop callback of its own: requests are answered
between two muxes, and a viewer that asks before its segment's turn has it muxed
for its request instead (once: the turn then finds it made).
"""

from __future__ import annotations

import logging
from collections import deque

from hls.segmenter import Segmenter

from .soon import SoonCallback

log = logging.getLogger("mediaserver.mux_ahead")


class MuxAhead:
    """Runs `Segmenter.make_due_ts` once per loop turn, round robin over the channels
    that have segments due, until none has."""

    __slots__ = ("_due", "_soon", "made")

    def __init__(self) -> None:
        self._due: deque[Segmenter] = deque()  # channels with segments due, each once
        self._soon = SoonCallback(self._run)
        self.made = 0  # turns taken (for tests and debugging)

    def request(self, segmenter: Segmenter) -> None:
        """`segmenter` has segments due where it had none (its `on_ts_due`)."""
        self._due.append(segmenter)
        self._soon.schedule()

    def _run(self) -> None:
        if not self._due:
            return
        segmenter = self._due.popleft()
        self.made += 1
        try:
            more = segmenter.make_due_ts()
        except Exception:
            log.exception("muxing a watched channel's segment ahead failed")
            more = True  # the failed one is off its queue: go on with the rest
        if more:
            self._due.append(segmenter)
        if self._due:
            self._soon.schedule()
