"""Blocked LL-HLS requests (blocking playlist reloads, preload-hinted parts) waiting on
one channel: all of them share one primitive, woken once per change.

A waiter costs one future and one timer handle while it waits, whatever the
audience; a change (a part, a segment, the end) sets one event, every waiter
re-checks its own condition (a comparison or two) and those satisfied answer
from the playlist rendered once for all of them.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable

from .segmenter import Segmenter


class ChangeSignal:
    """Wakes everyone waiting on one segmenter each time it changes."""

    __slots__ = ("_event", "waiting")

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.waiting = 0  # requests blocked right now (for tests and benchmarks)

    def notify(self) -> None:
        # Waiters hold the event they started on; later ones get a fresh, unset one.
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait_until(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Wait until `condition()` holds (checked now and after each change), at most
        `timeout` seconds; whether it holds."""
        if condition():
            return True
        self.waiting += 1
        try:
            async with asyncio.timeout(timeout):
                while not condition():
                    await self._event.wait()
        except TimeoutError:
            return condition()
        finally:
            self.waiting -= 1
        return True


class Signals:
    """One ChangeSignal per segmenter, made on first use; it goes with the segmenter."""

    __slots__ = ("_signals",)

    def __init__(self) -> None:
        self._signals: weakref.WeakKeyDictionary[Segmenter, ChangeSignal] = (
            weakref.WeakKeyDictionary())

    def of(self, segmenter: Segmenter) -> ChangeSignal:
        signal = self._signals.get(segmenter)
        if signal is None:
            signal = self._signals[segmenter] = ChangeSignal()
            segmenter.add_listener(signal.notify)
        return signal

    @property
    def waiting(self) -> int:
        return sum(signal.waiting for signal in self._signals.values())
