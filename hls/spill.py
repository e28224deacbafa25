"""Expired segments wait out their retention in files, not in memory.

Why. A segment that has left the playlist must stay fetchable for its duration plus
the longest playlist it appeared in (RFC 8216 6.2.2): with the defaults (6 x 2 s)
that is ~14 s of media, half of everything a channel holds (5 MB of 10.4 at
3.2 Mbit/s), and only late players ever ask for it. So at expiry its buffers are
written as they are (one pwritev, no join) to a file and let go; a late request reads
the file back; at the deadline the file is free for the next expired segment.

Files are reused, not created and unlinked, because that is where the kernel's cost
was: a new file's pages are allocated, charged and reserved by the file system, then
invalidated and freed at the unlink, 0.3-0.5 ms of system time per 0.8 MB segment;
overwriting a file in place only copies into pages it already has, ~0.1 ms
(`python -m benchmarks spillwrite`). New files are still made while no deadline has
passed (a server's first ~26 s), and cost what they did. The price is that the kernel
writes the pages back to the disk (every ~30 s, `dirty_expire`), as nginx-rtmp's
segment files are: the pages stay reclaimable page cache, not the process's memory.

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
    """A segment's buffers in one file: `load()` gives them back, `remove()` gives the
    file back to its directory for the next segment (also done when this object goes,
    so a dropped channel holds no file). After `remove()` this object reads nothing,
    whoever has the file next."""

    __slots__ = ("_directory", "_extent", "lengths", "path")

    def __init__(self, path: str, lengths: tuple[int, ...], extent: int,
                 directory: SpillDirectory) -> None:
        self.path: str | None = path
        self.lengths = lengths
        self._extent = extent  # the file's size: it may be longer than these buffers
        self._directory = directory

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
            raise FileNotFoundError("the segment's file was given up")
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
            self._directory.release(path, self._extent)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter exit too
            self.remove()


class SpillDirectory:
    """Where this process writes its expired segments, and the files free for reuse."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        _remove_dead_siblings(root)
        self.path = root / str(os.getpid())
        shutil.rmtree(self.path, ignore_errors=True)  # a dead process's, with our pid
        self.path.mkdir()
        self._names = itertools.count()
        self._spare: list[tuple[str, int]] = []  # (path, size) of files free for reuse
        self._closed = False
        self.in_use = 0  # files holding a segment now
        self.written = 0  # segments written
        self.failed = 0  # writes that failed (those segments stayed in memory)

    @property
    def spare(self) -> int:
        """Files free for the next segments."""
        return len(self._spare)

    def write(self, buffers: Sequence[Buffer]) -> SpilledMedia | None:
        """Write `buffers` to a spare file, or a new one; None if that failed."""
        lengths = tuple(len(buffer) for buffer in buffers)
        size = sum(lengths)
        path, extent = self._spare.pop() if self._spare else (
            str(self.path / f"{next(self._names)}.seg"), -1)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | (os.O_EXCL if extent < 0 else 0),
                         0o600)
            try:
                _write_all(fd, buffers)
                if extent > _SHRINK_PAST * size:  # a long segment's file, now too big
                    os.ftruncate(fd, size)
                    extent = size
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
        self.in_use += 1
        return SpilledMedia(path, lengths, max(extent, size), self)

    def release(self, path: str, extent: int) -> None:
        """A segment's deadline passed: its file takes the next one (kept as a spare, or
        deleted when there are spares enough)."""
        self.in_use -= 1
        if not self._closed and len(self._spare) < _SPARE_FILES:
            self._spare.append((path, extent))
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    def close(self) -> None:
        self._closed = True
        self._spare.clear()
        shutil.rmtree(self.path, ignore_errors=True)


# Spare files kept for reuse. A channel frees a file at about the rate it writes one
# (one segment a target duration each way), so a handful covers any number of
# channels; spares beyond this (channels that ended) are deleted, not kept forever.
_SPARE_FILES = 64

# A reused file more than this many times longer than its new segment is cut to size,
# so one long segment (a long keyframe interval) does not keep its file's size forever;
# segments of similar size reuse the same pages.
_SHRINK_PAST = 2


def _write_all(fd: int, buffers: Sequence[Buffer]) -> None:
    """pwritev from the file's start until every byte is written (a short write resumes
    where it stopped)."""
    pending = [memoryview(buffer).cast("B") for buffer in buffers if len(buffer)]
    offset = 0
    while pending:
        written = os.pwritev(fd, pending[:_IOV_MAX], offset)
        if written <= 0:
            raise OSError("pwritev wrote nothing")
        offset += written
        while written and pending:
            first = pending[0]
            if written >= len(first):
                written -= len(first)
                pending.pop(0)
            else:
                pending[0] = first[written:]
                written = 0


# pwritev takes at most this many buffers a call (Linux's UIO_MAXIOV); a segment has
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
