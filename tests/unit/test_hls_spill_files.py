"""hls.spill's file: buffers come back as written, short writes resume, a range is
reused once its owner goes (and never read through the old owner), free ranges merge so
the file stays near what it holds, free space past the spare bytes is cut off, and a
start clears what dead processes left but nobody else's."""

from __future__ import annotations

import collections
import gc
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hls import spill as spill_module
from hls.spill import SpillDirectory, SpilledMedia


@settings(max_examples=50, deadline=None)
@given(st.lists(st.binary(max_size=3000), min_size=1, max_size=12))
def test_buffers_come_back_as_written(tmp_path_factory: pytest.TempPathFactory,
                                      buffers: list[bytes]) -> None:
    directory = SpillDirectory(tmp_path_factory.mktemp("spill"))
    shapes = [memoryview(b) if i % 3 == 1 else bytearray(b) if i % 3 == 2 else b
              for i, b in enumerate(buffers)]
    media = directory.write(shapes)
    assert media is not None
    assert [bytes(view) for view in media.load()] == buffers
    assert [media.load_one(index) for index in range(len(buffers))] == buffers
    directory.close()


def test_a_short_write_resumes_where_it_stopped(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    real_pwritev = os.pwritev
    calls = []

    def at_most_1000(fd: int, buffers: list[memoryview], offset: int) -> int:
        calls.append((len(buffers), offset))
        return real_pwritev(fd, [bytes(b"".join(buffers)[:1000])], offset)

    monkeypatch.setattr(spill_module.os, "pwritev", at_most_1000)
    directory = SpillDirectory(tmp_path)
    buffers = [bytes([n]) * size for n, size in enumerate((700, 1, 2500, 0, 999))]
    media = directory.write(buffers)
    assert media is not None  # 4200 bytes, 1000 a call
    assert calls == [(4, 0), (2, 1000), (2, 2000), (2, 3000), (1, 4000)]
    assert [bytes(view) for view in media.load()] == buffers


def test_a_range_is_reused_once_its_owner_goes(tmp_path: Path) -> None:
    directory = SpillDirectory(tmp_path)
    media = directory.write([b"a" * 5000, b"b" * 3000])  # two pages
    assert media is not None and media.offset == 0
    after = directory.write([b"z" * 10])
    assert after is not None and after.offset == 2 * spill_module.PAGE_BYTES
    del media
    gc.collect()
    assert (directory.in_use, directory.bytes_free) == (1, 2 * spill_module.PAGE_BYTES)
    shorter = directory.write([b"c" * 1000])  # the first free range it fits: the start
    assert shorter is not None and shorter.offset == 0
    assert [bytes(view) for view in shorter.load()] == [b"c" * 1000]
    shorter.remove()
    shorter.remove()  # twice is fine
    assert (directory.in_use, directory.bytes_free) == (1, 2 * spill_module.PAGE_BYTES)
    with pytest.raises(FileNotFoundError):
        shorter.load()  # given up: never someone else's bytes
    longer = directory.write([b"d" * 9000])  # fits no free range: at the end
    assert longer is not None and longer.offset == 3 * spill_module.PAGE_BYTES
    assert longer.load_one(0) == b"d" * 9000 and after.load_one(0) == b"z" * 10
    assert len(os.listdir(directory.path)) == 1
    directory.close()
    with pytest.raises(FileNotFoundError):
        after.load()  # the file went with its directory


def test_free_ranges_merge_and_the_first_fit_is_taken() -> None:
    ranges = spill_module.FreeRanges()
    assert [ranges.take(size) for size in (10, 20, 30, 40)] == [0, 10, 30, 60]
    ranges.give(10, 20)
    ranges.give(60, 40)
    assert (ranges.take(25), ranges.free) == (60, 35)  # 10..30 is too short
    ranges.give(30, 30)  # merges with 10..30 before it and 85..100 after it
    ranges.give(60, 25)
    assert (ranges.take(90), ranges.end, ranges.free) == (10, 100, 0)
    ranges.give(0, 100)
    assert ranges.cut_end(15) and (ranges.end, ranges.free) == (15, 15)
    assert not ranges.cut_end(15)


def test_steady_churn_keeps_the_file_near_what_it_holds(tmp_path: Path) -> None:
    """Segments of varying sizes, each freed a fixed number of writes later (a deadline
    in order), as channels do: the file stays within a few segments of the bytes held."""
    directory = SpillDirectory(tmp_path)
    rng = random.Random(7)
    live: collections.deque[SpilledMedia] = collections.deque()
    most = 0
    for n in range(600):
        media = directory.write([bytes([n % 256]) * rng.randrange(20_000, 60_000)])
        assert media is not None
        live.append(media)
        most = max(most, directory.bytes_in_use)
        if len(live) > 30:
            live.popleft().remove()
    assert os.path.getsize(directory.file) <= directory.bytes_in_use + directory.bytes_free
    assert directory.bytes_in_use + directory.bytes_free < most + 5 * 60_000
    assert all(media.load_one(0)[:1] == media.load_one(0)[-1:] for media in live)
    directory.close()


def test_free_space_past_the_spare_bytes_is_cut_off(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Channels that end free more than is written: the file is cut back."""
    monkeypatch.setattr(spill_module, "SPARE_BYTES", 3 * spill_module.PAGE_BYTES)
    directory = SpillDirectory(tmp_path)
    many = [directory.write([bytes([n]) * 10]) for n in range(12)]
    assert directory.in_use == 12 == os.path.getsize(directory.file) // 4096 + 1
    for media in many:
        assert media is not None
        media.remove()
    assert (directory.in_use, directory.bytes_free) == (0, 3 * spill_module.PAGE_BYTES)
    assert os.path.getsize(directory.file) == 3 * spill_module.PAGE_BYTES
    directory.close()
    assert not directory.path.exists()


def test_a_start_clears_dead_processes_directories_only(tmp_path: Path) -> None:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
    dead = tmp_path / finished.stdout.strip()
    alive = tmp_path / str(os.getppid())
    for directory in (dead, alive, tmp_path / "notes"):
        directory.mkdir()
        (directory / "segments").write_bytes(b"x")
    ours = SpillDirectory(tmp_path)
    assert not dead.exists()
    assert (alive / "segments").exists() and (tmp_path / "notes" / "segments").exists()
    assert ours.path == tmp_path / str(os.getpid())
    assert list(ours.path.iterdir()) == [ours.file] and ours.file.stat().st_size == 0
    ours.close()
    assert not ours.path.exists() and alive.exists()
