"""What a TS segment muxed just in time costs the request that asks for it first.

A segmenter (LL-HLS on, the server's defaults) is fed the benchmark clip, a 2 s,
3.2 Mbit/s segment at a time; nobody asks for TS while it is fed. Then, on the loop
as a request would be, it times `Segmenter.segment(name)`:

- cold: the first TS request of a channel nobody watched (the muxer's templates are
  built again, then the segment is muxed and its counters placed);
- next: the request for the segment after it (muxed, counters from the one before);
- cached: any later request for a segment already muxed;
- gap: a request `--gap` segments past the newest muxed one (the segments between
  are muxed first, for continuity: the worst first request, after a channel went cold).

    python -m benchmarks tsjit [--passes 7]

Medians of the passes, in milliseconds, and per frame.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from hls.segmenter import Segmenter

from .clip import BENCH_CLIP, DEFAULT_CACHE, ensure_clip
from .cmafmux import clip_frames, looped

PART_DURATION = 0.333  # the server's default --part-duration
WINDOW = 12  # enough listed segments for the gap case


def _fed(path: Path) -> tuple[Segmenter, list[str]]:
    video, audio, packets = clip_frames(path)
    segmenter = Segmenter(window=WINDOW, part_duration=PART_DURATION, name_token="")
    segmenter.configure(video, audio)
    for packet in looped(packets, 2):
        segmenter.push(packet)
    names = [entry.uri for entry in segmenter.playlist.segments]
    return segmenter, names


def _timed(segmenter: Segmenter, name: str) -> float:
    started = time.perf_counter()
    data = segmenter.segment(name)
    elapsed = time.perf_counter() - started
    if data is None:
        raise RuntimeError(f"{name} was not there to mux")
    return elapsed * 1000


def measure(path: Path, passes: int, gap: int) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {"cold": [], "next": [], "cached": [], "gap": []}
    for _ in range(passes):
        segmenter, names = _fed(path)
        figures["cold"].append(_timed(segmenter, names[1]))
        figures["next"].append(_timed(segmenter, names[2]))
        figures["cached"].append(_timed(segmenter, names[2]))
        figures["gap"].append(_timed(segmenter, names[2 + gap]))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks tsjit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passes", type=int, default=7)
    parser.add_argument("--gap", type=int, default=5, help="segments past the muxed run")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--clip", type=Path, default=None)
    args = parser.parse_args(argv)
    path = args.clip or ensure_clip(BENCH_CLIP, args.cache)
    figures = measure(path, args.passes, args.gap)
    segmenter, names = _fed(path)
    listed = [form for form in segmenter._store.ts_forms() if form.key in names]
    frames = sum(len(form.frames) for form in listed) / len(listed)
    print(f"TS segment muxed for a request, {args.passes} passes, {path.name} "
          f"(~{frames:.0f} frames a segment): median ms, then each pass")
    for what, values in figures.items():
        median = statistics.median(values)
        count = args.gap if what == "gap" else 1
        per_frame = median * 1000 / (frames * count) if what != "cached" else 0.0
        print(f"  {what:6} {median:7.3f} ms   "
              + (f"({per_frame:.2f} us a frame)   " if per_frame else "")
              + " ".join(f"{v:.3f}" for v in values))
    return 0
