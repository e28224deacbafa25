"""hls.spill's files: buffers come back as written, short writes resume, a file is
reused once its owner goes (and never read through the old owner), spares are bounded,
and a start clears what dead processes left but nobody else's."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hls import spill as spill_module
from hls.spill import SpillDirectory


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


def test_a_file_is_reused_once_its_owner_goes(tmp_path: Path) -> None:
    directory = SpillDirectory(tmp_path)
    media = directory.write([b"a" * 5000, b"b" * 3000])
    assert media is not None and media.path is not None
    path = media.path
    del media
    gc.collect()
    assert (directory.in_use, directory.spare) == (0, 1)
    shorter = directory.write([b"c" * 1000])  # overwrites the start; the rest is not its
    assert shorter is not None and shorter.path == path and directory.spare == 0
    assert [bytes(view) for view in shorter.load()] == [b"c" * 1000]
    assert os.path.getsize(path) == 1000  # over twice as long as needed: cut to size
    shorter.remove()
    shorter.remove()  # twice is fine
    assert (directory.in_use, directory.spare) == (0, 1)
    with pytest.raises(FileNotFoundError):
        shorter.load()  # given up: never someone else's bytes
    again = directory.write([b"d" * 900])
    assert again is not None and again.path == path and os.path.getsize(path) == 1000
    assert again.load_one(0) == b"d" * 900
    directory.close()


def test_spare_files_are_bounded(tmp_path: Path) -> None:
    """Channels that end free more files than are written: spares past the bound go."""
    directory = SpillDirectory(tmp_path)
    many = [directory.write([bytes([n]) * 10]) for n in range(spill_module._SPARE_FILES + 9)]
    assert directory.in_use == len(many) == len(os.listdir(directory.path))
    for media in many:
        assert media is not None
        media.remove()
    assert (directory.in_use, directory.spare) == (0, spill_module._SPARE_FILES)
    assert len(os.listdir(directory.path)) == spill_module._SPARE_FILES
    directory.close()
    assert not directory.path.exists()


def test_a_start_clears_dead_processes_directories_only(tmp_path: Path) -> None:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
    dead = tmp_path / finished.stdout.strip()
    alive = tmp_path / str(os.getppid())
    for directory in (dead, alive, tmp_path / "notes"):
        directory.mkdir()
        (directory / "0.seg").write_bytes(b"x")
    ours = SpillDirectory(tmp_path)
    assert not dead.exists()
    assert (alive / "0.seg").exists() and (tmp_path / "notes" / "0.seg").exists()
    assert ours.path == tmp_path / str(os.getpid()) and list(ours.path.iterdir()) == []
    ours.close()
    assert not ours.path.exists() and alive.exists()
