"""Real test media for the hls tests: ffmpeg-encoded clips turned into MediaPackets.

The clips go through FLV (or MP4 for HEVC, which ffmpeg 5's FLV muxer cannot
carry) and come back through PyAV's demuxer, so packets and configs look
exactly like what an RTMP publisher sends: AVCC/HVCC length-prefixed NAL
units, the avcC/hvcC record, raw AAC frames and the AudioSpecificConfig.
Clips are encoded once per test process and cached.
"""

from __future__ import annotations

import functools
import io
import itertools
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import av

from hls.media import MediaPacket, TrackConfig


@dataclass(frozen=True)
class Media:
    """A clip as the segmenter receives it."""

    video: TrackConfig | None
    audio: TrackConfig | None
    packets: tuple[MediaPacket, ...]

    def only(self, kind: str) -> Media:
        """The same clip with one track left out (as a video-only or audio-only publish)."""
        return Media(
            self.video if kind == "video" else None,
            self.audio if kind == "audio" else None,
            tuple(p for p in self.packets if p.kind == kind),
        )

    def shifted(self, ms: int) -> Media:
        """Every timestamp moved by `ms` (a publisher whose clock starts elsewhere)."""
        moved = tuple(replace(p, dts=p.dts + ms, pts=p.pts + ms) for p in self.packets)
        return Media(self.video, self.audio, moved)

    def keyframe_dts(self) -> list[int]:
        return [p.dts for p in self.packets if p.kind == "video" and p.keyframe]

    def span_ms(self, kind: str) -> int:
        """First to last dts of a track, plus one frame."""
        dts = [p.dts for p in self.packets if p.kind == kind]
        step = min(b - a for a, b in itertools.pairwise(dts) if b > a)
        return dts[-1] - dts[0] + step


def ffmpeg_has_encoder(name: str) -> bool:
    if shutil.which("ffmpeg") is None:
        return False
    out = subprocess.run(
        ["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True, check=False
    ).stdout
    return any(line.split()[1:2] == [name] for line in out.splitlines() if line.strip())


def encode(
    path: Path,
    *,
    seconds: float = 7,
    fps: int = 30,
    gop: int = 60,
    size: str = "1280x720",
    bframes: int = 2,
    video_codec: str = "libx264",
    audio: bool = True,
    fmt: str = "flv",
) -> None:
    """Encode a test-pattern clip with a 440 Hz tone and a fixed keyframe interval."""
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}"]
    if audio:
        cmd += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
    if video_codec == "libx265":
        params = f"log-level=error:keyint={gop}:min-keyint={gop}:scenecut=0:bframes={bframes}"
        cmd += ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", params]
    else:
        cmd += ["-c:v", video_codec, "-preset", "ultrafast", "-g", str(gop)]
        cmd += ["-keyint_min", str(gop), "-sc_threshold", "0", "-bf", str(bframes)]
    cmd += ["-pix_fmt", "yuv420p"]
    if audio:
        cmd += ["-c:a", "aac", "-ac", "2", "-b:a", "128k"]
    cmd += ["-t", str(seconds), "-f", fmt, str(path)]
    subprocess.run(cmd, check=True, capture_output=True)


def load(path: Path) -> Media:
    """Demux a clip into FLV-shaped configs and millisecond packets."""
    video: TrackConfig | None = None
    audio: TrackConfig | None = None
    packets: list[MediaPacket] = []
    with av.open(str(path)) as container:
        for stream in container.streams:
            ctx = stream.codec_context
            if stream.type == "video":
                video = TrackConfig(
                    "video", ctx.name, bytes(ctx.extradata or b""), ctx.width, ctx.height
                )
            elif stream.type == "audio":
                audio = TrackConfig(
                    "audio",
                    ctx.name,
                    bytes(ctx.extradata or b""),
                    sample_rate=ctx.sample_rate,
                    channels=ctx.channels,
                )
        for packet in container.demux():
            if packet.size == 0 or packet.dts is None or packet.time_base is None:
                continue
            to_ms = packet.time_base * 1000
            dts = round(packet.dts * to_ms)
            pts = round((packet.pts if packet.pts is not None else packet.dts) * to_ms)
            kind = packet.stream.type
            keyframe = packet.is_keyframe if kind == "video" else True
            packets.append(MediaPacket(kind, dts, pts, keyframe, bytes(packet)))
    return Media(video, audio, tuple(packets))


def _encoded(**options: object) -> Media:
    with tempfile.TemporaryDirectory(prefix="hls-media-") as tmp:
        fmt = str(options.get("fmt", "flv"))
        path = Path(tmp) / f"clip.{'mp4' if fmt == 'mp4' else fmt}"
        encode(path, **options)  # type: ignore[arg-type]
        return load(path)


@functools.cache
def av_clip() -> Media:
    """7 s of 1280x720 30 fps H.264 (2 s GOP, B-frames) + 48 kHz stereo AAC, via FLV."""
    return _encoded()


@functools.cache
def long_gop_clip() -> Media:
    """16 s of small H.264 with a 5 s GOP + AAC, via FLV."""
    return _encoded(seconds=16, gop=150, size="320x240")


@functools.cache
def hevc_clip() -> Media:
    """5 s of small HEVC (2 s GOP, B-frames) + AAC, via MP4 (hvcC + length-prefixed NALs)."""
    return _encoded(seconds=5, fps=25, gop=50, size="320x240", video_codec="libx265", fmt="mp4")


# ---- reading segments back ----------------------------------------------------------------


@dataclass(frozen=True)
class SegmentProbe:
    """What PyAV sees in one segment opened on its own."""

    codecs: dict[str, str]  # kind → codec name
    width: int
    height: int
    first_video_pts: float | None  # seconds, decode order's first packet
    first_video_dts: float | None
    last_video_dts: float | None
    first_audio_pts: float | None
    video_starts_with_parameter_sets: bool  # Annex B start codes, SPS+PPS before the IDR
    audio_has_adts: bool
    first_frame_decoded: bool
    video_packets: int
    audio_packets: int


def _nal_types(data: bytes, codec: str) -> list[int]:
    types = []
    pos = data.find(b"\x00\x00\x01")
    while pos != -1 and pos + 3 < len(data):
        header = data[pos + 3]
        types.append((header >> 1) & 0x3F if codec == "hevc" else header & 0x1F)
        pos = data.find(b"\x00\x00\x01", pos + 3)
    return types


def probe_segment(data: bytes) -> SegmentProbe:
    codecs: dict[str, str] = {}
    width = height = 0
    first_v_pts = first_v_dts = last_v_dts = first_a_pts = None
    parameter_sets = adts = decoded = False
    counts = {"video": 0, "audio": 0}
    with av.open(io.BytesIO(data), format="mpegts") as container:
        for stream in container.streams:
            if stream.type in ("video", "audio"):
                codecs[stream.type] = stream.codec_context.name
            if stream.type == "video":
                width, height = stream.codec_context.width, stream.codec_context.height
        video = container.streams.video[0] if container.streams.video else None
        for packet in container.demux():
            if packet.size == 0:
                continue
            kind = packet.stream.type
            counts[kind] = counts.get(kind, 0) + 1
            if kind == "video":
                tb = packet.time_base
                last_v_dts = float(packet.dts * tb)
                if counts["video"] == 1:
                    first_v_pts, first_v_dts = float(packet.pts * tb), float(packet.dts * tb)
                    payload = bytes(packet)
                    types = _nal_types(payload, codecs["video"])
                    wanted = {32, 33, 34} if codecs["video"] == "hevc" else {7, 8}
                    parameter_sets = payload.startswith((b"\0\0\0\1", b"\0\0\1")) and wanted <= set(
                        types
                    )
            elif kind == "audio" and counts["audio"] == 1:
                first_a_pts = float(packet.pts * packet.time_base)
                payload = bytes(packet)
                adts = len(payload) > 7 and payload[0] == 0xFF and payload[1] & 0xF0 == 0xF0
    if video is not None:
        with av.open(io.BytesIO(data), format="mpegts") as container:
            for _frame in container.decode(video=0):
                decoded = True
                break
    return SegmentProbe(
        codecs,
        width,
        height,
        first_v_pts,
        first_v_dts,
        last_v_dts,
        first_a_pts,
        parameter_sets,
        adts,
        decoded,
        counts["video"],
        counts.get("audio", 0),
    )


def playlist_entries(text: str) -> list[tuple[float, str, bool]]:
    """(EXTINF duration, URI, preceded by DISCONTINUITY) for each segment of a playlist."""
    entries = []
    duration = 0.0
    discontinuity = False
    for line in text.splitlines():
        if line.startswith("#EXTINF:"):
            duration = float(line[len("#EXTINF:") :].split(",")[0])
        elif line == "#EXT-X-DISCONTINUITY":
            discontinuity = True
        elif line and not line.startswith("#"):
            entries.append((duration, line, discontinuity))
            discontinuity = False
    return entries


def playlist_tag(text: str, name: str) -> str | None:
    """The value of a single-valued tag such as EXT-X-MEDIA-SEQUENCE."""
    for line in text.splitlines():
        if line.startswith(f"#{name}:"):
            return line.split(":", 1)[1]
    return None
