"""One rate limit on everything the server logs, FFmpeg's messages included.

A hostile or broken feed can make the same line repeat thousands of times a
second (FFmpeg refusing every frame, a peer failing the same way). Each
(logger, message template) gets a burst of lines per window; the rest are
counted and reported in one "N similar messages suppressed" line once the
window is over. Templates have their digits folded, so FFmpeg's preformatted
"dts 5 >= 4" and "dts 6 >= 5" count as one message.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

# Lines of one kind let through per window: enough to see what is happening.
BURST_LINES = 10
WINDOW_SECONDS = 10.0
# Distinct message kinds tracked per window; past it, new kinds share one budget
# (a peer cannot grow this table by making every line different).
MAX_TRACKED_KINDS = 4096
_OVERFLOW_KEY = ("*", "*")
_DIGITS = re.compile(r"\d+")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


@dataclass(slots=True)
class _Kind:
    window_start: float
    lines: int
    suppressed: int
    level: int
    name: str
    template: str


class RateLimit(logging.Filter):
    """A handler filter: lets a burst of each message kind through per window."""

    def __init__(self, burst: int = BURST_LINES, window: float = WINDOW_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.burst = burst
        self.window = window
        self._clock = clock
        self._kinds: dict[tuple[str, str], _Kind] = {}
        self._handlers: list[logging.Handler] = []
        self._next_sweep = clock() + window
        # FFmpeg logs from decoder threads too (thumbnails): one lock for the table.
        self._lock = threading.Lock()
        self.suppressed_total = 0

    def install(self, handler: logging.Handler) -> None:
        handler.addFilter(self)
        self._handlers.append(handler)

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "rate_limit_summary", False):
            return True
        now = self._clock()
        with self._lock:
            due = self._take_expired(now) if now >= self._next_sweep else []
            allowed = self._count(record, now, due)
        for kind in due:
            self._summarise(kind)
        return allowed

    def flush(self) -> None:
        """Report every pending suppression now (at shutdown)."""
        with self._lock:
            due = self._take_expired(float("inf"))
        for kind in due:
            self._summarise(kind)

    def _count(self, record: logging.LogRecord, now: float, due: list[_Kind]) -> bool:
        template = str(record.msg)  # shown in the summary as the first one was written
        key = (record.name, _DIGITS.sub("#", template))
        kind = self._kinds.get(key)
        if kind is not None and now - kind.window_start >= self.window:
            if kind.suppressed:
                due.append(kind)
            kind = None
            del self._kinds[key]
        if kind is None:
            if len(self._kinds) >= MAX_TRACKED_KINDS:
                key, template = _OVERFLOW_KEY, "(messages of many kinds)"
                kind = self._kinds.get(key)
            if kind is None:
                kind = self._kinds[key] = _Kind(now, 0, 0, record.levelno, record.name,
                                                template)
        if kind.lines < self.burst:
            kind.lines += 1
            return True
        kind.suppressed += 1
        kind.level = max(kind.level, record.levelno)
        self.suppressed_total += 1
        return False

    def _take_expired(self, now: float) -> list[_Kind]:
        """Forget kinds whose window is over; return those with suppressions to report."""
        self._next_sweep = min(now, self._clock()) + self.window
        expired = [key for key, kind in self._kinds.items()
                   if now - kind.window_start >= self.window]
        return [kind for kind in (self._kinds.pop(key) for key in expired) if kind.suppressed]

    def _summarise(self, kind: _Kind) -> None:
        record = logging.LogRecord(
            kind.name, kind.level, __file__, 0,
            "%d similar messages suppressed in %.0fs: %s",
            (kind.suppressed, self.window, kind.template.strip()), None)
        record.rate_limit_summary = True
        for handler in self._handlers:
            handler.handle(record)


def configure_logging(level: str, tag: str = "", libav: bool = True) -> RateLimit:
    """Log to stderr through one rate limit; FFmpeg's warnings and errors included.

    `tag` starts every line (a worker's name, so that the lines of N workers sharing
    one stderr can be told apart); `libav` False leaves FFmpeg's libraries unloaded.
    """
    fmt = LOG_FORMAT.replace("%(name)s", f"[{tag}] %(name)s") if tag else LOG_FORMAT
    logging.basicConfig(level=level.upper(), format=fmt, stream=sys.stderr)
    limit = RateLimit()
    for handler in logging.getLogger().handlers:
        limit.install(handler)
    if libav:
        from hls.muxer import enable_libav_warnings

        enable_libav_warnings()  # FFmpeg's log into the "libav.*" loggers, hence the limit
    return limit
