"""What memory costs this machine the first time a process touches it, and after.

Why: the 30 s window of `run` starts while every stream's playlist fills the server's
memory and its first expired segments fill the expired-segment file's pages (about
1.3 GB and 1.2 GB at N = 200). On the team's VM the file's growth alone was about half
of the window's system time and a sixth of its CPU (benchmarks/README.md, "Issue 12 on
2026-12-08"); on a machine that hands out memory cheaply it is a fraction of that. Run
this next to a benchmark to see which kind of machine it is. Each case moves
`--megabytes` in 1 MB writes:

- anonymous, fresh: a new private mapping written once (a page fault per 4 kB page);
- anonymous, again: the same mapping written again (no faults: the cost of the copy);
- file, new pages: a new file written (the kernel allocates its page cache pages);
- file, overwrite: the same range written again (pages already cached);
- file, after unlink: another new file, right after the first was deleted (the kernel
  hands back the pages it just freed, if nothing reclaimed them first).

    python -m benchmarks firsttouch [--megabytes 1024] [--dir DIR]

`--dir` should be on the file system the server's --data-dir is on (default: a
temporary directory under the current one). Prints wall and system seconds per GB.
"""

from __future__ import annotations

import argparse
import mmap
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

BLOCK = 1 << 20  # bytes per write, about a 2 s, 3 Mbit/s segment's worth of parts


def _timed(work: Callable[[], None]) -> tuple[float, float]:
    """(wall, system) seconds that `work` took."""
    wall, before = time.perf_counter(), os.times()
    work()
    return time.perf_counter() - wall, os.times().system - before.system


def _fill_mapping(memory: mmap.mmap, block: bytes) -> None:
    for offset in range(0, len(memory), len(block)):
        memory[offset : offset + len(block)] = block


def _write_file(path: Path, size: int, block: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for offset in range(0, size, len(block)):
            os.pwrite(fd, block, offset)
    finally:
        os.close(fd)


def measure(size: int, directory: Path) -> dict[str, tuple[float, float]]:
    """Each case's (wall, system) seconds for `size` bytes (a multiple of BLOCK)."""
    block = os.urandom(BLOCK)
    results: dict[str, tuple[float, float]] = {}
    memory = mmap.mmap(-1, size)
    try:
        results["anonymous, fresh"] = _timed(lambda: _fill_mapping(memory, block))
        results["anonymous, again"] = _timed(lambda: _fill_mapping(memory, block))
    finally:
        memory.close()
    first, second = directory / "first", directory / "second"
    try:
        results["file, new pages"] = _timed(lambda: _write_file(first, size, block))
        results["file, overwrite"] = _timed(lambda: _write_file(first, size, block))
        first.unlink()
        results["file, after unlink"] = _timed(lambda: _write_file(second, size, block))
    finally:
        first.unlink(missing_ok=True)
        second.unlink(missing_ok=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks firsttouch",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=int, default=1024)
    parser.add_argument("--dir", type=Path, default=None,
                        help="where the files go (default: a temporary directory here)")
    args = parser.parse_args(argv)
    if args.megabytes < 1:
        parser.error("--megabytes must be at least 1")
    size = args.megabytes * BLOCK
    with tempfile.TemporaryDirectory(prefix="firsttouch-", dir=args.dir or ".") as where:
        results = measure(size, Path(where))
    per_gb = (1 << 30) / size
    for case, (wall, system) in results.items():
        print(f"{case:20s}: {wall * per_gb:6.3f} s wall, {system * per_gb:6.3f} s system "
              f"per GB ({args.megabytes} MB)")
    return 0
