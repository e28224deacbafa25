"""Memory per stream on the wall clock, in one process: what each stream holds, and where.

N streams go through real `RtmpSession`s, the real hub, publishers and segmenters (the
in-process pipeline's stand-ins: benchmarks.pipeline), each fed the benchmark clip's
bytes one read (100 ms of media) at a time **in real time**, so that segments leave the
playlist and expire as in a server (the `pipeline` benchmark replays faster than real
time and never expires any: its memory says nothing). After `--warmup` seconds (the
window and the expired segments kept after it are full by ~30 s with the defaults) it
prints, per stream: what the segmenters say they hold (`bytes_held`, the figure the
memory cap applies to; the mean over the next 4 s), and the process's RSS less what it
was before the publishers;
with `--trace`, where the Python heap's bytes are, by file and line (tracemalloc). With
`--ts-fetch all`, every TS segment is asked for once, as one viewer per stream would.

    python -m benchmarks memory --streams 20 [--ll-hls off] [--ts-fetch all] [--trace]
                                             [--expired-segments memory]

Expired segments go to files in a temporary directory, as the server's option of that
name has them by default (their page cache is not in RSS); `--expired-segments memory`
keeps them in memory.

What it leaves out: sockets and their kernel buffers, the HTTP server, request handlers.
`python -m benchmarks run` measures the whole server (its "RSS / stream" column).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

from hls.spill import SpillDirectory
from mediaserver.hub import HubSettings, StreamHub
from mediaserver.memory import release_free_memory
from rtmp.server import RtmpServer

from .chunked import ChunkedClip
from .clip import BENCH_CLIP, DEFAULT_CACHE, ensure_clip
from .flvfile import read_flv
from .pipeline import _feed, _HubPolicy, fetch_every_ts_segment, publisher_bytes, start_publishing

READ_MS = 100  # media per read, as the server's default --read-interval paces them
# What the segmenters hold is averaged over this long after the warm-up (one read a
# sample): two segments' worth, so where the open segment stands does not matter.
SAMPLE_SECONDS = 4.0
MB = 1024 * 1024


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


async def run(streams: int, warmup: float, ll_hls: bool, ts_fetch: bool, trace: bool,
              clip: ChunkedClip, spill: SpillDirectory | None) -> dict[str, float]:
    loops = math.ceil((warmup + SAMPLE_SECONDS + 1) * 1000 / clip.loop_ms)
    setup, slices = publisher_bytes(clip, loops, READ_MS)
    settings = HubSettings() if ll_hls else HubSettings(part_duration=None)
    hub = StreamHub(settings)
    hub.spill = spill
    if ts_fetch:
        fetch_every_ts_segment(hub)
    server = RtmpServer(_HubPolicy(hub), read_interval=0)
    gc.collect()
    release_free_memory()  # RSS then counts what is held, not what glibc keeps for reuse
    before = rss_bytes()
    if trace:
        tracemalloc.start()
    sessions = await start_publishing(server, streams, setup)
    started = time.monotonic()
    index = 0
    samples: list[int] = []
    while index < len(slices) and time.monotonic() - started < warmup + SAMPLE_SECONDS:
        for session in sessions:
            _feed(session, server, slices[index])
        index += 1
        await asyncio.sleep(max(0.0, started + index * READ_MS / 1000 - time.monotonic()))
        if time.monotonic() - started >= warmup:
            samples.append(sum(live.segmenter.bytes_held for live in hub.channels.values()))
    held = statistics.mean(samples)
    gc.collect()
    release_free_memory()
    after = rss_bytes()
    figures = {"held": held / streams, "rss": (after - before) / streams,
               "media_seconds": index * READ_MS / 1000}
    if trace:
        snapshot = tracemalloc.take_snapshot()
        tracemalloc.stop()
        print(f"Python heap by line, per stream (tracemalloc, {streams} streams):")
        for stat in snapshot.statistics("lineno")[:15]:
            frame = stat.traceback[0]
            where = f"{Path(frame.filename).parent.name}/{Path(frame.filename).name}"
            print(f"  {stat.size / streams / MB:7.3f} MB  {stat.count / streams:8.0f} blocks  "
                  f"{where}:{frame.lineno}")
    for session in sessions:
        session.close("done")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks memory", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--warmup", type=float, default=40.0,
                        help="seconds of real-time publishing before measuring")
    parser.add_argument("--ll-hls", choices=("on", "off"), default="on")
    parser.add_argument("--ts-fetch", choices=("none", "all"), default="none")
    parser.add_argument("--trace", action="store_true", help="where the Python heap is")
    parser.add_argument("--expired-segments", choices=("memory", "disk"), default="disk")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--clip", type=Path, default=None)
    args = parser.parse_args(argv)
    clip = ChunkedClip.build(read_flv(args.clip or ensure_clip(BENCH_CLIP, args.cache)))
    with tempfile.TemporaryDirectory(prefix="bench-expired-") as directory:
        spill = SpillDirectory(Path(directory)) if args.expired_segments == "disk" else None
        figures = asyncio.run(run(args.streams, args.warmup, args.ll_hls == "on",
                                  args.ts_fetch == "all", args.trace, clip, spill))
    print(f"{args.streams} streams, LL-HLS {args.ll_hls}, TS segments fetched: "
          f"{args.ts_fetch}, expired segments in {args.expired_segments}, "
          f"{figures['media_seconds']:.0f} s of media each in real time: "
          f"held {figures['held'] / MB:.2f} MB per stream (segmenters' bytes_held), "
          f"RSS {figures['rss'] / MB:.2f} MB per stream")
    return 0
