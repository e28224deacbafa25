"""Freed heap goes back to the OS when a channel is dropped (glibc's malloc_trim)."""

from __future__ import annotations

import platform

import pytest

from mediaserver.memory import release_free_memory


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_freed_segment_sized_buffers_leave_rss_after_a_trim() -> None:
    # Free one big buffer first: glibc then raises its mmap threshold, and the
    # segment-sized buffers that follow live on the heap, as a channel's do.
    first = bytearray(16 * 1024 * 1024)
    del first
    # Small objects that outlive the buffers pin the heap's top, as the rest of a
    # running server does: freeing the buffers alone then gives nothing back.
    buffers, pins = [], []
    for _ in range(100):
        buffers.append(bytearray(b"x" * (900 * 1024)))  # ~90 MB of segments
        pins.append(bytearray(64))
    del buffers
    before = rss_kib()
    assert release_free_memory()
    after = rss_kib()
    assert before - after > 16 * 1024, f"trim gave back only {before - after} KiB"
    assert len(pins) == 100
