"""Instructions per stream-second of the in-process pipeline, counted by callgrind.

CPU time on a shared machine moves by 10-15 % from run to run; the number of
instructions executed does not (it repeats within a fraction of a percent), so
small changes to the per-frame code can be compared on a busy box. Startup
(the interpreter, imports, the clip) is left out by counting a run of one pass
and a run of two and taking the difference. `--ingest-only` stops each reader
at its queue (the segmenters never run): what the bytes -> readers part costs.

    python -m benchmarks.instructions --streams 10 [--ingest-only] [--ll-hls off] [--ts-fetch all]

Needs valgrind (`apt-get install -y valgrind`); about a minute per run.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

_TOTALS = re.compile(r"^(?:summary|totals):\s+(\d+)", re.MULTILINE)


def _worker(streams: int, passes: int, loops: int, ingest_only: bool, ll_hls: bool,
            ts_fetch: bool) -> None:
    from mediaserver.hub import HubSettings, SegmenterFeed

    from . import pipeline
    from .chunked import ChunkedClip
    from .clip import BENCH_CLIP, ensure_clip
    from .flvfile import read_flv

    if ingest_only:
        SegmenterFeed.handle = lambda self, item: None  # type: ignore[method-assign]
    clip = ChunkedClip.build(read_flv(ensure_clip(BENCH_CLIP)))
    setup, slices = pipeline.publisher_bytes(clip, loops, 100)
    settings = HubSettings() if ll_hls else HubSettings(part_duration=None)

    async def run() -> None:
        for _ in range(passes):
            await pipeline._one_pass(clip, streams, setup, slices, settings, ts_fetch)

    asyncio.run(run())


def count(streams: int, passes: int, loops: int, ingest_only: bool, ll_hls: bool = True,
          ts_fetch: bool = False) -> int:
    """Instructions executed by a worker process running `passes` passes."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("valgrind not found: apt-get install -y valgrind")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        cmd = [valgrind, "--tool=callgrind", f"--callgrind-out-file={out}",
               sys.executable, "-m", "benchmarks.instructions", "--worker",
               "--streams", str(streams), "--passes", str(passes), "--loops", str(loops)]
        if ingest_only:
            cmd.append("--ingest-only")
        cmd += ["--ll-hls", "on" if ll_hls else "off", "--ts-fetch", "all" if ts_fetch else "none"]
        subprocess.run(cmd, check=True, capture_output=True)
        match = _TOTALS.search(out.read_text(errors="replace"))
        if match is None:
            raise SystemExit("no instruction total in callgrind's output")
        return int(match.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.instructions",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=10)
    parser.add_argument("--loops", type=int, default=1)
    parser.add_argument("--ingest-only", action="store_true")
    parser.add_argument("--ll-hls", choices=("on", "off"), default="on",
                        help="the LL-HLS rendition (the server's default: on)")
    parser.add_argument("--ts-fetch", choices=("none", "all"), default="none",
                        help="ask for every TS segment once (else none is muxed)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--passes", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    ll_hls, ts_fetch = args.ll_hls == "on", args.ts_fetch == "all"
    if args.worker:
        _worker(args.streams, args.passes, args.loops, args.ingest_only, ll_hls, ts_fetch)
        return 0
    one = count(args.streams, 1, args.loops, args.ingest_only, ll_hls, ts_fetch)
    two = count(args.streams, 2, args.loops, args.ingest_only, ll_hls, ts_fetch)
    from .chunked import ChunkedClip
    from .clip import BENCH_CLIP, ensure_clip
    from .flvfile import read_flv

    clip = ChunkedClip.build(read_flv(ensure_clip(BENCH_CLIP)))
    stream_seconds = args.streams * args.loops * clip.loop_seconds
    per_pass = two - one
    what = "ingest only (bytes -> readers' queues)" if args.ingest_only else "whole pipeline"
    what += f", LL-HLS {args.ll_hls}, TS segments fetched: {args.ts_fetch}"
    print(f"{what}: {per_pass:,} instructions per pass of {args.streams} streams x "
          f"{args.loops * clip.loop_seconds:g} s; {per_pass / stream_seconds / 1e6:.2f} M "
          f"instructions per stream-second")
    return 0


if __name__ == "__main__":
    sys.exit(main())
