"""The source clip: made once with the ffmpeg CLI, cached, never committed.

testsrc2 plus temporal noise gives x264 real work per frame, so the bitrate is
what a camera-like feed costs rather than what a static test card compresses to.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CACHE = Path(__file__).resolve().parent / "results" / "cache"
ENCODE_TIMEOUT = 300


@dataclass(frozen=True, slots=True)
class ClipSpec:
    seconds: int = 20
    size: str = "1280x720"
    fps: int = 30
    video_kbps: int = 3000  # + 160 kbit/s audio: ~3.2 Mbit/s on the wire
    audio_kbps: int = 160
    gop_seconds: float = 2.0

    @property
    def filename(self) -> str:
        return (f"clip-{self.size}-{self.fps}fps-{self.seconds}s-{self.video_kbps}k"
                f"-gop{self.gop_seconds:g}.flv")


BENCH_CLIP = ClipSpec()
SMOKE_CLIP = ClipSpec(seconds=6, size="640x360", video_kbps=800, audio_kbps=96, gop_seconds=1.0)


def ensure_clip(spec: ClipSpec, cache: Path = DEFAULT_CACHE) -> Path:
    """The cached clip for spec, encoding it first if needed."""
    gop = round(spec.gop_seconds * spec.fps)
    return encode_cached(cache / spec.filename, [
        "-f", "lavfi", "-i", f"testsrc2=size={spec.size}:rate={spec.fps}",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-t", str(spec.seconds), "-vf", "noise=alls=12:allf=t",
        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
        "-b:v", f"{spec.video_kbps}k", "-maxrate", f"{spec.video_kbps}k",
        "-bufsize", f"{spec.video_kbps}k",
        "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0",
        "-c:a", "aac", "-b:a", f"{spec.audio_kbps}k", "-ac", "2", "-f", "flv",
    ])


def encode_cached(path: Path, ffmpeg_args: list[str]) -> Path:
    """`path`, encoded by ffmpeg with these arguments unless a finished copy is cached.

    The encoder writes to a partial file renamed at the end, so an interrupted
    encode never leaves a truncated clip that later runs would take as finished.
    """
    if path.exists() and path.stat().st_size > 0:
        return path
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RuntimeError("ffmpeg not found: apt-get install -y ffmpeg")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial" + path.suffix)
    cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", *ffmpeg_args, str(partial)]
    subprocess.run(cmd, check=True, timeout=ENCODE_TIMEOUT)
    partial.replace(path)
    return path
