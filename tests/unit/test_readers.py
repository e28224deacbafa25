"""Readers behind bounded queues: order, overflow drops the reader, one drain per loop turn."""

from __future__ import annotations

import asyncio

from mediaserver.readers import DrainScheduler, QueuedReader


async def test_items_arrive_in_order_on_a_later_turn() -> None:
    seen: list[int] = []
    reader: QueuedReader[int] = QueuedReader("r", seen.append)
    for i in range(5):
        assert reader.offer(i)
    assert seen == []  # the publisher's call returns before any reader work
    await asyncio.sleep(0)
    assert seen == [0, 1, 2, 3, 4]


async def test_overflow_drops_the_reader_and_reports_it() -> None:
    dropped: list[str] = []
    reader: QueuedReader[int] = QueuedReader("slow", lambda item: None, max_queued=3,
                                             on_overflow=lambda r: dropped.append(r.name))
    assert [reader.offer(i) for i in range(5)] == [True, True, True, False, False]
    assert reader.dropped and dropped == ["slow"] and reader.backlog == 0


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
