"""Readers behind bounded queues: order, overflow skips to a resume point, one drain per turn."""

from __future__ import annotations

import asyncio
import time

from mediaserver.readers import SKIPPED, DrainScheduler, QueuedReader, SkipCounters, Skipped


async def test_items_arrive_in_order_on_a_later_turn() -> None:
    seen: list[int] = []
    reader: QueuedReader[int] = QueuedReader("r", seen.append)
    for i in range(5):
        assert reader.offer(i)
    assert seen == []  # the publisher's call returns before any reader work
    await asyncio.sleep(0)
    assert seen == [0, 1, 2, 3, 4]


# Items for the skip tests: "K" a keyframe, "f" another frame, "T"/"E" control items.
def _media(item: str) -> bool:
    return item[0] in "Kf"


def _resumes(item: str) -> bool:
    return item[0] == "K"


def _skipping_reader(seen: list[str | Skipped], totals: SkipCounters | None = None
                     ) -> QueuedReader[str]:
    return QueuedReader("slow", seen.append, max_queued=4, skippable=_media, resumes=_resumes,
                        totals=totals)


async def test_overflow_skips_to_the_next_keyframe_and_goes_on() -> None:
    seen: list[str | Skipped] = []
    totals = SkipCounters()
    reader = _skipping_reader(seen, totals)
    offered = [reader.offer(item) for item in ["K1", "f2", "f3", "f4", "f5", "f6", "K7", "f8"]]
    assert offered == [True] * 4 + [False, False, True, True]
    assert not reader.skipping and reader.backlog == 3
    await asyncio.sleep(0)
    # The queued media is gone too: the reader starts again at the keyframe, after the marker.
    assert seen == [SKIPPED, "K7", "f8"]
    assert (reader.times_skipped, reader.frames_skipped) == (1, 6)
    assert totals == SkipCounters(times=1, frames=6)
    # And it keeps working afterwards.
    assert reader.offer("f9")
    await asyncio.sleep(0)
    assert seen[-1] == "f9"


async def test_control_items_are_kept_in_order_while_skipping() -> None:
    seen: list[str | Skipped] = []
    reader = _skipping_reader(seen)
    for item in ["f1", "T2", "f3", "f4", "f5", "E6", "T7", "f8", "K9"]:
        reader.offer(item)
    await asyncio.sleep(0)
    assert seen == [SKIPPED, "T2", "E6", "T7", "K9"]
    assert reader.frames_skipped == 5


async def test_each_overflow_is_one_more_skip() -> None:
    seen: list[str | Skipped] = []
    reader = _skipping_reader(seen)
    for _ in range(3):  # three loop turns that each bring too much
        for item in ["K", "f", "f", "f", "f", "K"]:
            reader.offer(item)
        await asyncio.sleep(0)
    assert reader.times_skipped == 3 and not reader.skipping
    assert seen == [SKIPPED, "K"] * 3


async def test_overflow_with_a_keyframe_resumes_at_once() -> None:
    seen: list[str | Skipped] = []
    reader = _skipping_reader(seen)
    for item in ["K1", "f2", "f3", "f4", "K5"]:
        assert reader.offer(item)
    await asyncio.sleep(0)
    assert seen == [SKIPPED, "K5"] and reader.frames_skipped == 4


async def test_one_scheduler_drains_many_readers_in_one_callback() -> None:
    loop = asyncio.get_running_loop()
    scheduler = DrainScheduler()
    seen: list[tuple[str, int]] = []
    readers = [QueuedReader(name, lambda item, name=name: seen.append((name, item)),
                            scheduler=scheduler) for name in ("a", "b", "c")]
    scheduled: list[object] = []
    original = loop.call_soon

    def counting_call_soon(callback, *args, **kwargs):  # type: ignore[no-untyped-def]
        scheduled.append(callback)
        return original(callback, *args, **kwargs)

    loop.call_soon = counting_call_soon  # type: ignore[method-assign]
    try:
        for i in range(3):
            for reader in readers:
                reader.offer(i)
    finally:
        loop.call_soon = original  # type: ignore[method-assign]
    assert len(scheduled) == 1
    await asyncio.sleep(0)
    assert sorted(seen) == sorted((name, i) for name in "abc" for i in range(3))


async def test_a_long_drain_lets_the_loop_turn_between_slices() -> None:
    """Readers whose work outlasts a slice are drained over several loop turns, in order,
    and a callback that became ready meanwhile (an HTTP request) runs in between."""
    scheduler = DrainScheduler(slice_seconds=0.001)
    order: list[str] = []
    loop = asyncio.get_running_loop()

    def slow(name: str) -> None:
        order.append(name)
        if name == "a":  # a request that comes in while the first slice runs
            loop.call_soon(order.append, "http")
        busy_until = time.perf_counter() + 0.002
        while time.perf_counter() < busy_until:
            pass

    readers = [QueuedReader(name, lambda item, name=name: slow(name), scheduler=scheduler)
               for name in ("a", "b", "c")]
    for reader in readers:
        reader.offer(0)
    for _ in range(10):
        await asyncio.sleep(0)
    assert order == ["a", "http", "b", "c"]
    # A reader offered more while waiting for its slice is drained once, with all of it.
    seen: list[int] = []
    late = QueuedReader("late", seen.append, scheduler=scheduler)
    readers[0].offer(1)
    late.offer(1)
    late.offer(2)
    for _ in range(10):
        await asyncio.sleep(0)
    assert seen == [1, 2] and order.count("a") == 2


async def test_a_failing_item_is_counted_and_the_rest_still_handled() -> None:
    seen: list[int] = []

    def handle(item: int) -> None:
        if item == 1:
            raise ValueError("bad item")
        seen.append(item)

    reader: QueuedReader[int] = QueuedReader("r", handle)
    for i in range(3):
        reader.offer(i)
    await asyncio.sleep(0)
    assert seen == [0, 2] and reader.errors == 1


async def test_offer_all_queues_a_batch_only_when_the_reader_keeps_up() -> None:
    seen: list[str | Skipped] = []
    reader = _skipping_reader(seen)
    assert reader.offer_all(["K1", "f2", "f3"])
    assert reader.backlog == 3
    assert not reader.offer_all(["f4", "f5"])  # no room for both: nothing taken
    assert reader.backlog == 3 and not reader.skipping
    assert [reader.offer(item) for item in ["f4", "f5"]] == [True, False]
    assert reader.skipping and not reader.offer_all(["f6"])  # skipping: one by one
    assert reader.offer("K7") and not reader.skipping
    assert reader.offer_all(["f8"])
    await asyncio.sleep(0)
    assert seen == [SKIPPED, "K7", "f8"]


async def test_a_batch_handler_gets_each_drain_at_once_and_reports_failures() -> None:
    batches: list[list[int]] = []

    def handle_batch(items: list[int]) -> int:
        batches.append(items)
        if len(batches) == 1:
            reader.offer(99)  # offered while handling: taken in the same drain
        return sum(1 for item in items if item == 1)

    reader: QueuedReader[int] = QueuedReader("r", lambda item: None, handle_batch=handle_batch)
    for i in range(3):
        reader.offer(i)
    await asyncio.sleep(0)
    assert batches == [[0, 1, 2], [99]] and reader.errors == 1 and reader.backlog == 0
    reader.offer(5)
    reader.flush()
    assert batches[-1] == [5]
