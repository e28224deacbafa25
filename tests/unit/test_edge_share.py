"""The edge's sharing parts on their own: the byte-bounded cache, one fetch per key, directives."""

from __future__ import annotations

import asyncio

from mediaserver.cluster.edge_playlists import directives
from mediaserver.cluster.edge_share import ByteLru, InFlight


def test_cache_is_bounded_in_bytes_and_evicts_the_least_recently_used() -> None:
    cache: ByteLru[str, bytes] = ByteLru(100)
    for name in "abcd":
        assert cache.put(name, name.encode() * 30, 30)
    # 4 x 30 > 100: "a" (oldest) went when "d" came.
    assert cache.get("a") is None and cache.bytes == 90 and cache.evictions == 1
    assert cache.get("b") == b"b" * 30  # now most recent: "c" goes next
    cache.put("e", b"e" * 20, 20)
    assert cache.get("c") is None and cache.get("b") is not None
    assert cache.bytes == sum(size for size in (30, 30, 20)) and len(cache) == 3


def test_cache_refuses_what_alone_exceeds_it_and_replacing_keeps_the_count() -> None:
    cache: ByteLru[str, bytes] = ByteLru(100)
    assert not cache.put("huge", b"x", 101)
    assert cache.bytes == 0 and len(cache) == 0
    cache.put("a", b"1", 60)
    cache.put("a", b"2", 70)  # same key: the old size is given back first
    assert cache.bytes == 70 and cache.get("a") == b"2" and cache.evictions == 0


async def test_one_task_per_key_shared_by_all_and_one_caller_leaving_cancels_nothing() -> None:
    inflight: InFlight[str, int] = InFlight()
    started = 0
    release = asyncio.Event()

    async def work() -> int:
        nonlocal started
        started += 1
        await release.wait()
        return 42

    joined = [inflight.join("k", work) for _ in range(20)]
    assert [shared for _, shared in joined] == [False] + [True] * 19
    leaver, _ = inflight.join("k", work)
    await asyncio.sleep(0)
    leaver.cancel()  # a viewer hanging up
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*(pending for pending, _ in joined)) == [42] * 20
    assert started == 1
    await asyncio.sleep(0)
    assert len(inflight) == 0
    # Done: the next call starts a new task.
    pending, shared = inflight.join("k", work)
    assert not shared and await pending == 42 and started == 2


def test_directives_keep_only_hls_parameters_in_order() -> None:
    assert directives("") == ""
    assert directives("t=123&_HLS_msn=5&_HLS_part=2&x") == "_HLS_msn=5&_HLS_part=2"
    assert directives("_HLS_skip=YES") == "_HLS_skip=YES"
