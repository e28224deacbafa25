"""What writing an expired segment to the spill file costs (`--expired-segments disk`).

Through `hls.spill.SpillDirectory`, as the server does: a segment's seven ~115 kB
buffers (3.2 Mbit/s, 2 s, LL-HLS parts) written with one pwritev, each from a different
set of buffers (as a server writes segments whose bytes were received seconds before).
The CPU of this process (user and system) is reported per segment, in two phases:

- filling: `--live` segments written while none has reached its deadline, so each
  makes the file longer (a server's first ~26 s);
- steady: `--segments` more, each written once the oldest one's deadline has passed,
  so each overwrites a range that is free again (a running server).

    python -m benchmarks spillwrite [--dir DIR] [--segments 3000] [--live 1500]

`--dir` should be on the file system the server's --data-dir is on (default: a
temporary directory under the current one).
"""

from __future__ import annotations

import argparse
import collections
import os
import tempfile
from pathlib import Path

from hls.spill import SpillDirectory, SpilledMedia

PART_BYTES = 115_000  # a 0.333 s part at 3.2 Mbit/s, with its boxes
PARTS = 7  # parts in a 2 s segment


def _write(directory: SpillDirectory, buffers: list[bytes]) -> SpilledMedia:
    media = directory.write(buffers)
    if media is None:
        raise OSError(f"could not write into {directory.path}")
    return media


def _per_segment(before: os.times_result, segments: int) -> tuple[float, float]:
    """(user, system) CPU milliseconds per segment since `before`."""
    after = os.times()
    return ((after.user - before.user) * 1000 / segments,
            (after.system - before.system) * 1000 / segments)


def _run(directory: SpillDirectory, segments: int,
         sources: list[list[bytes]]) -> dict[str, tuple[float, float]]:
    live = len(sources) - 1
    before = os.times()
    waiting = collections.deque(_write(directory, sources[index]) for index in range(live))
    filling = _per_segment(before, live)
    before = os.times()
    for index in range(live, live + segments):
        waiting.popleft().remove()  # its deadline passed
        waiting.append(_write(directory, sources[index % len(sources)]))
    steady = _per_segment(before, segments)
    for media in waiting:
        media.remove()
    return {"filling": filling, "steady": steady}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks spillwrite", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path("."))
    parser.add_argument("--segments", type=int, default=3000)
    parser.add_argument("--live", type=int, default=1500,
                        help="segments kept at once (200 streams x ~7 expired segments: 1400)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-spill-", dir=args.dir) as root:
        directory = SpillDirectory(Path(root))
        sources = [[os.urandom(PART_BYTES) for _ in range(PARTS)] for _ in range(args.live + 1)]
        for phase, (user, system) in _run(directory, args.segments, sources).items():
            count = args.live if phase == "filling" else args.segments
            print(f"{phase:7}: {user:.3f} ms user + {system:.3f} ms system per "
                  f"{PARTS * PART_BYTES / 1e6:.1f} MB segment ({count} segments, "
                  f"{args.live} kept at once)")
        directory.close()
    return 0
