"""Expired segments wait out their retention in a file, not in memory.

Why. A segment that has left the playlist must stay fetchable for its duration plus
the longest playlist it appeared in (RFC 8216 6.2.2): with the defaults (6 x 2 s)
that is ~14 s of media, half of everything a channel holds (5 MB of 10.4 at
3.2 Mbit/s), and only late players ever ask for it. So at expiry its buffers are
written as they are (one pwritev, no join) into a range of one file and let go; a
late request reads that range back; at the deadline the range is free for the next
expired segment.

One file per process, ranges reused, because that is where the kernel's cost was
(`python -m benchmarks spillwrite`):
- a file per segment, created and unlinked: 0.3-0.5 ms of system time per 0.8 MB
  segment (pages allocated, charged and reserved, then invalidated at the unlink);
- reused files: ~0.1 ms, only the copy into pages the file already has; but every
  file made while no deadline had passed (a server's first ~26 s) still cost an
  inode, and ext4 looks for a free one past every inode deleted in the last minute:
  0.5-0.8 ms a file after a restart or a benchmark case, a tenth of the server's CPU
  while it filled;
- one file: no inode after the first, and a range freed at a deadline is taken by the
  next segment that fits (first fit from the file's start, so the file stays compact
  and its pages stay cached). The file grows while no deadline has passed, and is cut
  back when more than SPARE_BYTES at its end are free (channels that ended).
The price is that the kernel writes the pages back to the disk (every ~30 s,
`dirty_expire`), as nginx-rtmp's segment files are: the pages stay reclaimable page
cache, not the process's memory.

A write that fails (disk full, file system gone) keeps the segment in memory: the
caller gets None, and the failure is logged once per directory and counted.

One directory per process (`ROOT/<pid>`), emptied at start and removed at close,
so workers sharing a data directory never touch each other's files; directories
left by processes that are gone (a crash, a SIGKILL) are removed at the next start.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger("hls.spill")

Buffer = bytes | bytearray | memoryview

# The file under the process's directory that holds its expired segments.
FILE_NAME = "segments"

# Each segment's range starts on a page of its own, so writing one never touches a
# page another segment's bytes are in (and a cached page is overwritten whole).
PAGE_BYTES = 4096

# Free space kept at the file's end for the next segments: about 64 segments of 2 s at
# 3.2 Mbit/s. A channel frees a range at about the rate it writes one (a segment a
# target duration each way), so this covers new channels; space past it (channels
# that ended) is cut off the file, not kept forever.
SPARE_BYTES = 64 * 1024 * 1024


class SpilledMedia:
    """A segment's buffers in a range of the spill file: `load()` gives them back,
    `remove()` gives the range back for the next segment (also done when this object
    goes, so a dropped channel holds no space). After `remove()` this object reads
    nothing, whoever has the range next."""

    __slots__ = ("_directory", "_span", "lengths", "offset")

    def __init__(self, directory: SpillDirectory, offset: int, span: int,
                 lengths: tuple[int, ...]) -> None:
        self._directory = directory
        self.offset: int | None = offset  # where the range starts; None once given back
        self._span = span  # the range's length: its buffers, to the end of their last page
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
        """Buffer `index` alone (an LL-HLS part: a seventh of the range)."""
        return self._read(sum(self.lengths[:index]), self.lengths[index])

    def _read(self, start: int, size: int) -> bytes:
        if self.offset is None:
            raise FileNotFoundError("the segment's range was given up")
        return self._directory.read(self.offset + start, size)

    def remove(self) -> None:
        offset, self.offset = self.offset, None
        if offset is not None:
            self._directory.release(offset, self._span)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter exit too
            self.remove()


class FreeRanges:
    """Which ranges of a file below `end` are free: first fit from the start, freed
    neighbours merged, so the file stays as short as its segments allow."""

    __slots__ = ("_ranges", "end")

    def __init__(self) -> None:
        self._ranges: list[tuple[int, int]] = []  # (offset, size), by offset, none touching
        self.end = 0  # the file's length in use: every range taken or free is below it

    @property
    def free(self) -> int:
        return sum(size for _, size in self._ranges)

    def take(self, size: int) -> int:
        """The offset of `size` bytes now taken: the first free range they fit, or the end."""
        for index, (offset, free) in enumerate(self._ranges):
            if free >= size:
                if free == size:
                    del self._ranges[index]
                else:
                    self._ranges[index] = (offset + size, free - size)
                return offset
        offset = self.end
        self.end += size
        return offset

    def give(self, offset: int, size: int) -> None:
        """`size` bytes at `offset`, taken before, are free again."""
        index = bisect.bisect_left(self._ranges, (offset, 0))
        if index < len(self._ranges) and self._ranges[index][0] == offset + size:
            size += self._ranges.pop(index)[1]
        if index and sum(self._ranges[index - 1]) == offset:
            offset, before = self._ranges[index - 1]
            self._ranges[index - 1] = (offset, before + size)
        else:
            self._ranges.insert(index, (offset, size))

    def cut_end(self, keep: int) -> bool:
        """Leave at most `keep` free bytes at the end; whether `end` moved."""
        if not self._ranges or sum(self._ranges[-1]) != self.end:
            return False
        offset, size = self._ranges[-1]
        if size <= keep:
            return False
        if keep:
            self._ranges[-1] = (offset, keep)
        else:
            self._ranges.pop()
        self.end = offset + keep
        return True


class SpillDirectory:
    """Where this process writes its expired segments: one file, and its free ranges."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        _remove_dead_siblings(root)
        self.path = root / str(os.getpid())
        shutil.rmtree(self.path, ignore_errors=True)  # a dead process's, with our pid
        self.path.mkdir()
        self.file = self.path / FILE_NAME
        self._fd = os.open(self.file, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                           0o600)
        self._ranges = FreeRanges()
        self.in_use = 0  # segments in the file now
        self.bytes_in_use = 0  # their ranges' bytes
        self.written = 0  # segments written
        self.failed = 0  # writes that failed (those segments stayed in memory)

    @property
    def bytes_free(self) -> int:
        """Bytes of the file free for the next segments."""
        return self._ranges.end - self.bytes_in_use

    def write(self, buffers: Sequence[Buffer]) -> SpilledMedia | None:
        """Write `buffers` into a free range of the file; None if that failed."""
        lengths = tuple(len(buffer) for buffer in buffers)
        span = -(-max(sum(lengths), 1) // PAGE_BYTES) * PAGE_BYTES
        offset = self._ranges.take(span)
        try:
            _write_all(self._fd, buffers, offset)
        except OSError as exc:
            self._ranges.give(offset, span)
            self._cut_end()
            self.failed += 1
            if self.failed == 1:
                log.warning("could not keep an expired segment in %s (%s): expired segments "
                            "stay in memory while writes fail", self.file, exc)
            return None
        self.written += 1
        self.in_use += 1
        self.bytes_in_use += span
        return SpilledMedia(self, offset, span, lengths)

    def read(self, offset: int, size: int) -> bytes:
        if self._fd < 0:
            raise FileNotFoundError(f"{self.file} is closed")
        data = os.pread(self._fd, size, offset)
        if len(data) != size:
            raise OSError(f"{self.file}: {len(data)} bytes at {offset}, expected {size}")
        return data

    def release(self, offset: int, span: int) -> None:
        """A segment's deadline passed: its range takes the next ones."""
        self.in_use -= 1
        self.bytes_in_use -= span
        if self._fd < 0:
            return
        self._ranges.give(offset, span)
        self._cut_end()

    def _cut_end(self) -> None:
        if self._ranges.cut_end(SPARE_BYTES):
            with contextlib.suppress(OSError):  # the space stays ours if the cut fails
                os.ftruncate(self._fd, self._ranges.end)

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
        shutil.rmtree(self.path, ignore_errors=True)


def _write_all(fd: int, buffers: Sequence[Buffer], offset: int) -> None:
    """pwritev at `offset` until every byte is written (a short write resumes where it
    stopped)."""
    pending = [memoryview(buffer).cast("B") for buffer in buffers if len(buffer)]
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
