"""An HEVC + AAC feed as Enhanced RTMP FLV tags, for encoders we do not have.

ffmpeg before 6 cannot put HEVC in FLV, so an HEVC publish is made here: libx265
encodes a short clip into MP4 (cached), PyAV demuxes it (HVCC length-prefixed
frames and the hvcC record, the layout FLV carries too), and each packet becomes
the tag an Enhanced RTMP encoder (OBS 29+, ffmpeg 6+) sends: FourCC `hvc1`,
SequenceStart with the hvcC, CodedFrames with a composition time. Audio is plain
AAC. The tags replay through `ChunkedClip` like any FLV file.
"""

from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path

from rtmp.amf0 import encode_values

from .clip import DEFAULT_CACHE, encode_cached
from .flvfile import TAG_AUDIO, TAG_SCRIPT, TAG_VIDEO, FlvTag

HEVC_FOURCC = b"hvc1"
_EX_HEADER = 0x80
_KEY, _INTER = 0x10, 0x20  # frame type (bits 6-4) 1 and 2
_SEQUENCE_START, _CODED_FRAMES = 0, 1
_AAC_HEADER = 0xAF  # AAC, 44 kHz, 16 bit, stereo: what every encoder writes for AAC
_MS = Fraction(1, 1000)


def ensure_hevc_clip(cache: Path = DEFAULT_CACHE, seconds: int = 6) -> Path:
    """A cached 640x360 HEVC (libx265, 1 s GOP) + AAC MP4."""
    return encode_cached(cache / f"clip-hevc-640x360-30fps-{seconds}s.mp4", [
        "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-t", str(seconds), "-c:v", "libx265", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
        "-x265-params", "keyint=30:min-keyint=30:scenecut=0:log-level=error",
        "-tag:v", "hvc1", "-c:a", "aac", "-b:a", "96k", "-ac", "2",
    ])


def hevc_flv_tags(path: Path) -> list[FlvTag]:
    """The clip as the FLV tags an Enhanced RTMP encoder would send, in decoding order."""
    import av

    tags: list[FlvTag] = []
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0]
        hvcc = bytes(video.codec_context.extradata or b"")
        asc = bytes(audio.codec_context.extradata or b"")
        if not hvcc or not asc:
            raise ValueError(f"{path}: no hvcC or AudioSpecificConfig")
        meta = {"width": float(video.width), "height": float(video.height),
                "framerate": 30.0, "videocodecid": float(int.from_bytes(HEVC_FOURCC, "big")),
                "audiocodecid": 10.0, "audiosamplerate": float(audio.sample_rate)}
        tags.append(FlvTag(TAG_SCRIPT, 0, encode_values("onMetaData", meta)))
        tags.append(FlvTag(TAG_VIDEO, 0, bytes([_EX_HEADER | _KEY | _SEQUENCE_START])
                           + HEVC_FOURCC + hvcc))
        tags.append(FlvTag(TAG_AUDIO, 0, bytes([_AAC_HEADER, 0]) + asc))
        for packet in container.demux(video, audio):
            if packet.dts is None or packet.size == 0:
                continue
            dts = round(packet.dts * packet.time_base / _MS)
            if packet.stream is video:
                pts = round((packet.pts if packet.pts is not None else packet.dts)
                            * packet.time_base / _MS)
                first = _EX_HEADER | (_KEY if packet.is_keyframe else _INTER) | _CODED_FRAMES
                cts = struct.pack(">i", pts - dts)[1:]  # SI24
                tags.append(FlvTag(TAG_VIDEO, dts, bytes([first]) + HEVC_FOURCC + cts
                                   + bytes(packet)))
            else:
                tags.append(FlvTag(TAG_AUDIO, dts, bytes([_AAC_HEADER, 1]) + bytes(packet)))
    # B-frames give MP4 negative decoding times at the start; FLV's clock starts at 0.
    base = min(t.timestamp for t in tags[3:])
    media = sorted((FlvTag(t.type_id, t.timestamp - base, t.body) for t in tags[3:]),
                   key=lambda t: t.timestamp)
    return tags[:3] + media
