"""Expired segments wait out their retention in files, not in memory.

Why. A segment that has left the playlist must stay fetchable for its duration plus
the longest playlist it appeared in (RFC 8216 6.2.2): with the defaults (6 x 2 s)
that is ~14 s of media, half of everything a channel holds (5 MB of 10.4 at
3.2 Mbit/s), and only late players ever ask for it. So at expiry its buffers are
written as they are (one writev, no join) to a file of their own and let go; a late
request reads the file back whole; the file goes at the deadline. The files live a
few seconds, so on a disk-backed directory the kernel usually frees their pages
before writing them back at all; nginx-rtmp keeps every segment in files likewise.
It is not free: the kernel's page-cache work costs 0.3-0.6 ms of CPU per stream·s
at 3.2 Mbit/s (benchmarks/README.md, "Expired segments in files"), so the server
does it only when asked (`--expired-segments disk`).

A write that fails (disk full, directory gone) keeps the segment in memory: the
caller gets None, and the failure is logged once per directory and counted.

One directory per process (`ROOT/<pid>`), emptied at start and removed at close,
so workers sharing a data directory never touch each other's files; directories
left by processes that are gone (a crash, a SIGKILL) are removed at the next start.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger("hls.spill")

Buffer = bytes | bytearray | memoryview


class SpilledMedia:
    """A segment's buffers in one file: `load()` gives them back, `remove()` deletes it
    (also done when this object goes, so a dropped channel leaves no file behind)."""

    __slots__ = ("lengths", "path")

    def __init__(self, path: str, lengths: tuple[int, ...]) -> None:
        self.path: str | None = path
        self.lengths = lengths

    def load(self) -> tuple[memoryview, ...]:
        """The buffers, as views into one bytes object read from the file."""
        view = memoryview(self._read(0, sum(self.lengths)))
        buffers = []
        start = 0
        for length in self.lengths:
            buffers.append(view[start:start + length])
            start += length
        return tuple(buffers)

    def load_one(self, index: int) -> bytes:
        """Buffer `index` alone (an LL-HLS part: a seventh of the file)."""
        return self._read(sum(self.lengths[:index]), self.lengths[index])

    def _read(self, offset: int, size: int) -> bytes:
        if self.path is None:
            raise FileNotFoundError("the segment's file was removed")
        fd = os.open(self.path, os.O_RDONLY)
        try:
            data = os.pread(fd, size, offset)
        finally:
            os.close(fd)
        if len(data) != size:
            raise OSError(f"{self.path}: {len(data)} bytes at {offset}, expected {size}")
        return data

    def remove(self) -> None:
        path, self.path = self.path, None
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter exit too
            self.remove()


class SpillDirectory:
    """Where this process writes its expired segments."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        _remove_dead_siblings(root)
        self.path = root / str(os.getpid())
        shutil.rmtree(self.path, ignore_errors=True)  # a dead process's, with our pid
        self.path.mkdir()
        self._names = itertools.count()
        self.written = 0  # segments written
        self.failed = 0  # writes that failed (those segments stayed in memory)

    def write(self, buffers: Sequence[Buffer]) -> SpilledMedia | None:
        """Write `buffers` to a new file; None if that failed."""
        path = str(self.path / f"{next(self._names)}.seg")
        lengths = tuple(len(buffer) for buffer in buffers)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                _write_all(fd, buffers)
            finally:
                os.close(fd)
        except OSError as exc:
            self.failed += 1
            if self.failed == 1:
                log.warning("could not keep an expired segment in %s (%s): expired segments "
                            "stay in memory while writes fail", self.path, exc)
            with contextlib.suppress(OSError):
                os.unlink(path)
            return None
        self.written += 1
        return SpilledMedia(path, lengths)

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _write_all(fd: int, buffers: Sequence[Buffer]) -> None:
    """writev until every byte is written (a short write resumes where it stopped)."""
    pending = [memoryview(buffer).cast("B") for buffer in buffers if len(buffer)]
    while pending:
        written = os.writev(fd, pending[:_IOV_MAX])
        if written <= 0:
            raise OSError("writev wrote nothing")
        while written and pending:
            first = pending[0]
            if written >= len(first):
                written -= len(first)
                pending.pop(0)
            else:
                pending[0] = first[written:]
                written = 0


# writev takes at most this many buffers a call (Linux's UIO_MAXIOV); a segment has
# one buffer per LL-HLS part, ~7 at the defaults.
_IOV_MAX = 1024


def _remove_dead_siblings(root: Path) -> None:
    for entry in root.iterdir():
        if not entry.name.isdigit() or not entry.is_dir():
            continue
        pid = int(entry.name)
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(entry, ignore_errors=True)
        except PermissionError:
            pass  # alive, someone else's
