"""What writing an expired segment to its file costs (`--expired-segments disk`).

Through `hls.spill.SpillDirectory`, as the server does: a segment's seven ~115 kB
buffers (3.2 Mbit/s, 2 s, LL-HLS parts) written with one writev, and each file
removed once `--live` newer ones exist (a channel's expired segments waiting for their
deadline). The CPU of this process (user and system) is reported per segment:

- hot: the same buffers every time (they stay in the CPU's caches);
- cold: a different set of buffers for each live file, as a server writes segments
  whose bytes were received seconds before.

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


def _run(directory: SpillDirectory, segments: int, live: int,
         sources: list[list[bytes]]) -> tuple[float, float]:
    """(user, system) CPU milliseconds per segment written and, later, removed."""
    waiting: collections.deque[SpilledMedia] = collections.deque()
    before = os.times()
    for index in range(segments):
        media = directory.write(sources[index % len(sources)])
        if media is None:
            raise OSError(f"could not write into {directory.path}")
        waiting.append(media)
        if len(waiting) > live:
            waiting.popleft().remove()
    after = os.times()
    for media in waiting:
        media.remove()
    return ((after.user - before.user) * 1000 / segments,
            (after.system - before.system) * 1000 / segments)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks spillwrite", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=Path("."))
    parser.add_argument("--segments", type=int, default=3000)
    parser.add_argument("--live", type=int, default=1500,
                        help="files kept at once (200 streams x ~7 expired segments: 1400)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-spill-", dir=args.dir) as root:
        directory = SpillDirectory(Path(root))
        hot = [[os.urandom(PART_BYTES) for _ in range(PARTS)]]
        cold = [[os.urandom(PART_BYTES) for _ in range(PARTS)] for _ in range(args.live + 1)]
        for name, sources in (("hot", hot), ("cold", cold)):
            user, system = _run(directory, args.segments, args.live, sources)
            print(f"{name:4}: {user:.3f} ms user + {system:.3f} ms system per "
                  f"{PARTS * PART_BYTES / 1e6:.1f} MB segment written and removed "
                  f"({args.segments} segments, {args.live} files kept at once)")
        directory.close()
    return 0
