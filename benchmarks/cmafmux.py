"""`python -m benchmarks cmafmux`: what the LL-HLS fMP4 rendition costs per frame, in-process.

The frames of the benchmark clip, as the segmenter receives them (through the real
`Publisher`), go through:

- `ours`: hls.cmaf's CmafRendition (our fMP4 writer), cut into 0.333 s parts and
  2 s segments exactly as the segmenter cuts them;
- `pyav`: PyAV's mp4 muxer fragmenting by itself (movflags frag_keyframe +
  empty_moov + default_base_moof, frag_duration 0.333 s: PyAV has no call that
  flushes a fragment on demand, so FFmpeg chooses the cuts), one muxer per track
  configuration as a live stream would keep it;
- `ts`: the TS muxer the segmenter uses anyway (one per segment), for scale.

Each variant runs `--passes` times, alternating, and the median CPU time per
frame is printed (process time: other load on the box does not count, its cache
and frequency effects do). `--callgrind` also counts instructions per frame under
valgrind, which the machine's noise does not touch at all.
"""

from __future__ import annotations

import argparse
import io
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av

from hls.cmaf import CmafRendition
from hls.media import MediaPacket, TrackConfig
from hls.muxer import TrackSet, TsMuxer, _apply_config
from mediaserver.publisher import Publisher, ReaderItem, TracksChanged

from .clip import BENCH_CLIP, DEFAULT_CACHE, ensure_clip
from .flvfile import TAG_AUDIO, TAG_VIDEO, read_flv

PART_MS = 333
SEGMENT_MS = 2000
FRAME_MS = {"video": 33, "audio": 21}  # the clip's 30 fps and 48 kHz AAC
VARIANTS = ("ours", "pyav", "ts", "none")
MILLISECOND = Fraction(1, 1000)
_PYAV_OPTIONS = {"movflags": "frag_keyframe+empty_moov+default_base_moof",
                 "frag_duration": str(PART_MS * 1000)}


def clip_frames(path: Path) -> tuple[TrackConfig | None, TrackConfig | None, list[MediaPacket]]:
    """The clip's frames as a publish hands them to the segmenter."""
    items: list[ReaderItem] = []
    publisher = Publisher("bench", "bench", items.append, lambda *args: None)
    for tag in read_flv(path):
        if tag.type_id == TAG_VIDEO:
            publisher.on_video(tag.timestamp, tag.body)
        elif tag.type_id == TAG_AUDIO:
            publisher.on_audio(tag.timestamp, tag.body)
    tracks = next(item for item in items if isinstance(item, TracksChanged))
    packets = [item for item in items if isinstance(item, MediaPacket)]
    return tracks.video, tracks.audio, packets


def _keyframe_cuts(packets: list[MediaPacket]) -> list[bool]:
    """For each frame: does a segment start here (a video keyframe 2 s on)?"""
    cuts, start = [], None
    for packet in packets:
        cut = packet.kind == "video" and packet.keyframe and (
            start is None or packet.dts - start >= SEGMENT_MS - 40)
        if cut:
            start = packet.dts
        cuts.append(cut)
    return cuts


def run_ours(video: TrackConfig | None, audio: TrackConfig | None,
             packets: list[MediaPacket], cuts: list[bool]) -> int:
    rendition = CmafRendition(PART_MS, "")
    rendition.set_tracks(video, audio)
    made, sequence, has_video = 0, 0, False
    for packet, cut in zip(packets, cuts, strict=True):
        if cut:
            if sequence:
                done = rendition.finish(sequence, packet.dts, {"video": packet.dts})
                made += len(done.data) if done else 0
            rendition.begin(packet.dts)
            sequence += 1
            has_video = False
        if not sequence:
            continue
        lead = packet.kind == "video" or not has_video
        has_video |= packet.kind == "video"
        rendition.add(packet.kind, packet.dts, packet.pts, packet.keyframe, packet.data,
                      lead=lead, frame_ms=FRAME_MS[packet.kind])
    return made


def run_pyav(video: TrackConfig | None, audio: TrackConfig | None,
             packets: list[MediaPacket], cuts: list[bool]) -> int:
    tracks = TrackSet(video, audio)
    sink = io.BytesIO()
    container = av.open(sink, "w", format="mp4", options=_PYAV_OPTIONS)
    streams = {}
    for config, template in tracks.templates():
        stream = container.add_stream_from_template(template, opaque=True)
        stream.time_base = MILLISECOND
        _apply_config(stream, config)  # what the TS muxer sets on its streams too
        streams[config.kind] = stream
    started = False
    for packet, cut in zip(packets, cuts, strict=True):
        started |= cut
        if not started:
            continue
        out = av.Packet(packet.data)
        out.stream = streams[packet.kind]
        out.time_base = MILLISECOND
        out.dts, out.pts = packet.dts, packet.pts
        out.duration = FRAME_MS[packet.kind]  # as the segmenter tells the TS muxer
        out.is_keyframe = packet.keyframe
        container.mux_one(out)
    container.close()
    tracks.close()
    return len(sink.getvalue())


def run_ts(video: TrackConfig | None, audio: TrackConfig | None,
           packets: list[MediaPacket], cuts: list[bool]) -> int:
    tracks = TrackSet(video, audio)
    muxer: TsMuxer | None = None
    made = 0
    for packet, cut in zip(packets, cuts, strict=True):
        if cut:
            if muxer is not None:
                made += len(muxer.close())
            muxer = TsMuxer(tracks)
        if muxer is not None:
            muxer.write(packet.kind, packet.dts, packet.pts, packet.keyframe, packet.data,
                        FRAME_MS[packet.kind])
    if muxer is not None:
        made += len(muxer.close())
    tracks.close()
    return made


def run_none(video: TrackConfig | None, audio: TrackConfig | None,
             packets: list[MediaPacket], cuts: list[bool]) -> int:
    """The loop alone: the baseline the callgrind counts subtract."""
    return sum(1 for _ in zip(packets, cuts, strict=True))


RUNNERS: dict[str, Callable[..., int]] = {
    "ours": run_ours, "pyav": run_pyav, "ts": run_ts, "none": run_none}


def measure(path: Path, passes: int, loops: int) -> dict[str, list[float]]:
    """Microseconds of CPU per frame, per pass, for each variant."""
    video, audio, packets = clip_frames(path)
    packets = looped(packets, loops)
    cuts = _keyframe_cuts(packets)
    figures: dict[str, list[float]] = {name: [] for name in VARIANTS[:3]}
    for _ in range(passes):
        for name in figures:
            started = time.process_time()
            RUNNERS[name](video, audio, packets, cuts)
            figures[name].append((time.process_time() - started) * 1e6 / len(packets))
    return figures


def looped(packets: list[MediaPacket], loops: int) -> list[MediaPacket]:
    span = packets[-1].dts - packets[0].dts + 40
    return [MediaPacket(p.kind, p.dts + k * span, p.pts + k * span, p.keyframe, p.data)
            for k in range(loops) for p in packets]


def callgrind(path: Path, loops: int) -> dict[str, float]:
    """Instructions per frame of each variant, less the loop alone, under valgrind."""
    counts = {}
    for name in VARIANTS:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "callgrind.out"
            subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                            sys.executable, "-m", "benchmarks.cmafmux", "--one", name,
                            "--clip", str(path), "--loops", str(loops)],
                           check=True, capture_output=True, timeout=3600)
            text = out.read_text(errors="replace")
        match = re.search(r"^summary:\s+(\d+)", text, re.MULTILINE) or re.search(
            r"^totals:\s+(\d+)", text, re.MULTILINE)
        assert match, "no summary in the callgrind output"
        counts[name] = float(match.group(1))
    _, _, packets = clip_frames(path)
    frames = len(packets) * loops
    return {name: (counts[name] - counts["none"]) / frames for name in VARIANTS[:3]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks cmafmux", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passes", type=int, default=7)
    parser.add_argument("--loops", type=int, default=3, help="times the 20 s clip is muxed")
    parser.add_argument("--callgrind", action="store_true",
                        help="also count instructions per frame under valgrind (slow)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--clip", type=Path, default=None)
    parser.add_argument("--one", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    path = args.clip or ensure_clip(BENCH_CLIP, args.cache)
    av.logging.set_level(av.logging.ERROR)  # the mp4 muxer's notes on template streams
    if args.one:  # a child under callgrind: one pass of one variant
        video, audio, packets = clip_frames(path)
        packets = looped(packets, args.loops)
        RUNNERS[args.one](video, audio, packets, _keyframe_cuts(packets))
        return 0
    figures = measure(path, args.passes, args.loops)
    print(f"CPU per frame, {args.passes} passes of {args.loops} x {path.name} "
          "(microseconds: median, then each pass)")
    for name, values in figures.items():
        print(f"  {name:5} {statistics.median(values):7.2f}   "
              + " ".join(f"{v:.2f}" for v in values))
    if args.callgrind:
        print("instructions per frame (callgrind, one pass, less the bare loop):")
        for name, count in callgrind(path, 1).items():
            print(f"  {name:5} {count:10.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
