"""hls.spill's files: buffers come back as written, short writes resume, files go with
their owner, and a start clears what dead processes left but nobody else's."""

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
    real_writev = os.writev
    calls = []

    def at_most_1000(fd: int, buffers: list[memoryview]) -> int:
        calls.append(len(buffers))
        return real_writev(fd, [bytes(b"".join(buffers)[:1000])])

    monkeypatch.setattr(spill_module.os, "writev", at_most_1000)
    directory = SpillDirectory(tmp_path)
    buffers = [bytes([n]) * size for n, size in enumerate((700, 1, 2500, 0, 999))]
    media = directory.write(buffers)
    assert media is not None and len(calls) == 5  # 4200 bytes, 1000 a call
    assert [bytes(view) for view in media.load()] == buffers


def test_the_file_goes_with_its_owner(tmp_path: Path) -> None:
    directory = SpillDirectory(tmp_path)
    media = directory.write([b"abc"])
    assert media is not None and media.path is not None
    path = media.path
    assert os.path.exists(path)
    del media
    gc.collect()
    assert not os.path.exists(path)
    kept = directory.write([b"def"])
    assert kept is not None
    kept.remove()
    kept.remove()  # twice is fine
    with pytest.raises(FileNotFoundError):
        kept.load()


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
