"""Blocked LL-HLS requests (blocking playlist reloads, preload-hinted parts) waiting on
one channel: all of them share one primitive, woken once per change.

A waiter costs one future and one timer handle while it waits, whatever the
audience; a change (a part, a segment, the end) sets one event, every waiter
re-checks its own condition (a comparison or two) and those satisfied answer
from the playlist rendered once for all of them.

How long a woken request takes to be answered after the change that woke it is
kept in a histogram (`WakeupDelays`): with hundreds of waiters on one part, the
last one answers after all the others, and that is what this shows.
"""

from __future__ import annotations

import asyncio
import bisect
import weakref
from collections.abc import Callable

from .segmenter import Segmenter

# Upper bounds (seconds) of the wake-up histogram's buckets: a millisecond or two for a
# few waiters, tens of milliseconds for hundreds; past a part target it is late.
WAKEUP_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3,
                  0.5, 1.0)


class WakeupDelays:
    """Counts of woken requests by how long after the change they were answered."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(WAKEUP_BUCKETS) + 1)  # the last one: past every bound
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(WAKEUP_BUCKETS, seconds)] += 1
        self.sum += seconds

    @property
    def count(self) -> int:
        return sum(self.counts)


class _Change:
    """One generation of the signal: the event its waiters wait on, and when it was set."""

    __slots__ = ("at", "event")

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.at = 0.0


class ChangeSignal:
    """Wakes everyone waiting on one segmenter each time it changes."""

    __slots__ = ("_current", "waiting")

    def __init__(self) -> None:
        self._current = _Change()
        self.waiting = 0  # requests blocked right now (for tests and benchmarks)

    def notify(self) -> None:
        # Waiters hold the generation they started on; later ones get a fresh, unset one.
        change, self._current = self._current, _Change()
        change.at = asyncio.get_running_loop().time()
        change.event.set()

    async def wait_until(self, condition: Callable[[], bool], timeout: float
                         ) -> tuple[bool, float | None]:
        """Wait until `condition()` holds (checked now and after each change), at most
        `timeout` seconds. (whether it holds, the loop time of the change that made it
        hold; None when it held from the start)."""
        if condition():
            return True, None
        self.waiting += 1
        change = self._current
        try:
            async with asyncio.timeout(timeout):
                while True:
                    await change.event.wait()
                    if condition():
                        return True, change.at
                    change = self._current
        except TimeoutError:
            return condition(), None
        finally:
            self.waiting -= 1


class Signals:
    """One ChangeSignal per segmenter, made on first use; it goes with the segmenter."""

    __slots__ = ("_signals", "wakeups")

    def __init__(self) -> None:
        self._signals: weakref.WeakKeyDictionary[Segmenter, ChangeSignal] = (
            weakref.WeakKeyDictionary())
        self.wakeups = WakeupDelays()

    def of(self, segmenter: Segmenter) -> ChangeSignal:
        signal = self._signals.get(segmenter)
        if signal is None:
            signal = self._signals[segmenter] = ChangeSignal()
            segmenter.add_listener(signal.notify)
        return signal

    def answered(self, woken_at: float | None) -> None:
        """A blocked request's answer is ready; `woken_at`: the change that woke it."""
        if woken_at is not None:
            self.wakeups.observe(asyncio.get_running_loop().time() - woken_at)

    @property
    def waiting(self) -> int:
        return sum(signal.waiting for signal in self._signals.values())
