"""FLV tag bodies and codec configs: real encoder output, hand-built E-RTMP tags, fuzz."""

from __future__ import annotations

import contextlib
import shutil
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hls.aac import parse_audio_specific_config
from rtmp.amf0 import decode_all
from rtmp.flv import (
    SOUND_RATES,
    AudioPacketType,
    FlvError,
    VideoPacketType,
    coded_frame,
    iter_nal_units,
    parse_audio_tag,
    parse_avc_config,
    parse_hevc_config,
    parse_video_tag,
)
from tests.fixtures import OBS_C2S

FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg CLI not installed")

TAG_AUDIO = 8
TAG_VIDEO = 9

V_START = VideoPacketType.SEQUENCE_START
V_FRAMES = VideoPacketType.CODED_FRAMES
V_END = VideoPacketType.SEQUENCE_END
V_META = VideoPacketType.METADATA
V_OTHER = VideoPacketType.OTHER
A_START = AudioPacketType.SEQUENCE_START
A_FRAMES = AudioPacketType.CODED_FRAMES
A_OTHER = AudioPacketType.OTHER
COLOR_INFO = b"\x02\x00\x09colorInfo"


# --------------------------------------------------------------------------- helpers


@dataclass(frozen=True, slots=True)
class Tag:
    kind: int
    timestamp: int
    body: bytes


def read_flv(path: Path) -> list[Tag]:
    """A minimal FLV file reader: 9-byte header, then tag/PreviousTagSize pairs."""
    data = path.read_bytes()
    assert data[:3] == b"FLV"
    (header_size,) = struct.unpack_from(">I", data, 5)
    pos = header_size + 4  # PreviousTagSize0
    tags = []
    while pos + 11 <= len(data):
        kind = data[pos] & 0x1F
        size = int.from_bytes(data[pos + 1 : pos + 4], "big")
        timestamp = int.from_bytes(data[pos + 4 : pos + 7], "big") | data[pos + 7] << 24
        tags.append(Tag(kind, timestamp, data[pos + 11 : pos + 11 + size]))
        pos += 11 + size + 4
    return tags


class BitWriter:
    """Writes the exp-Golomb syntax of SPS fields, to craft parameter sets."""

    def __init__(self) -> None:
        self.bits: list[int] = []

    def u(self, count: int, value: int) -> BitWriter:
        self.bits.extend((value >> (count - 1 - i)) & 1 for i in range(count))
        return self

    def ue(self, value: int) -> BitWriter:
        code = value + 1
        self.u(code.bit_length() - 1, 0)
        return self.u(code.bit_length(), code)

    def se(self, value: int) -> BitWriter:
        return self.ue(2 * value - 1 if value > 0 else -2 * value)

    def rbsp(self) -> bytes:
        bits = [*self.bits, 1]  # rbsp_stop_one_bit, then align with zeros
        bits += [0] * (-len(bits) % 8)
        return bytes(int("".join(map(str, bits[i : i + 8])), 2) for i in range(0, len(bits), 8))


def escape(rbsp: bytes) -> bytes:
    """Insert emulation-prevention bytes as an encoder does."""
    out = bytearray()
    zeros = 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def avc_sps(
    *,
    profile: int = 66,
    width_mbs: int,
    height_units: int,
    chroma: int = 1,
    separate_planes: int = 0,
    frame_mbs_only: int = 1,
    crop: tuple[int, int, int, int] | None = None,
    scaling_lists: list[list[int] | None] | None = None,
    poc_type: int = 2,
    poc_offset: int = 0,
) -> bytes:
    w = BitWriter().u(8, profile).u(8, 0).u(8, 31).ue(0)
    if profile in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135):
        w.ue(chroma)
        if chroma == 3:
            w.u(1, separate_planes)
        w.ue(0).ue(0).u(1, 0)
        w.u(1, scaling_lists is not None)
        if scaling_lists is not None:
            for deltas in scaling_lists:
                w.u(1, deltas is not None)
                last = 8
                for delta in deltas or ():
                    w.se(delta)
                    last = (last + delta + 256) % 256
                    if not last:  # next_scale 0: the list ends here
                        break
    w.ue(0)  # log2_max_frame_num_minus4
    w.ue(poc_type)
    if poc_type == 0:
        w.ue(2)
    elif poc_type == 1:
        w.u(1, 0).se(poc_offset).se(-1).ue(2).se(5).se(-7)
    w.ue(4).u(1, 0)  # max_num_ref_frames, gaps_in_frame_num_value_allowed_flag
    w.ue(width_mbs - 1).ue(height_units - 1).u(1, frame_mbs_only)
    if not frame_mbs_only:
        w.u(1, 1)
    w.u(1, 1)  # direct_8x8_inference_flag
    w.u(1, crop is not None)
    for offset in crop or ():
        w.ue(offset)
    w.u(1, 0)  # vui_parameters_present_flag
    return b"\x67" + escape(w.rbsp())


def hevc_sps(
    *,
    width: int,
    height: int,
    chroma: int = 1,
    window: tuple[int, int, int, int] | None = None,
    sub_layers: list[tuple[int, int]] = (),  # type: ignore[assignment]
) -> bytes:
    w = BitWriter().u(4, 0).u(3, len(sub_layers)).u(1, 1)
    w.u(2, 0).u(1, 0).u(5, 1).u(32, 0x60000000).u(4, 0b1001).u(44, 0).u(8, 93)
    for profile_present, level_present in sub_layers:
        w.u(1, profile_present).u(1, level_present)
    if sub_layers:
        w.u(2 * (8 - len(sub_layers)), 0)
    for profile_present, level_present in sub_layers:
        if profile_present:
            w.u(88, 0xABCDEF)
        if level_present:
            w.u(8, 90)
    w.ue(0).ue(chroma)
    if chroma == 3:
        w.u(1, 0)
    w.ue(width).ue(height).u(1, window is not None)
    for offset in window or ():
        w.ue(offset)
    w.ue(0).ue(0).ue(4)  # bit depths, log2_max_pic_order_cnt_lsb_minus4: ignored
    return b"\x42\x01" + escape(w.rbsp())


def avcc(sps: list[bytes], pps: list[bytes], *, profile: int = 66, length_size: int = 4) -> bytes:
    out = bytearray([1, profile, 0, 31, 0xFC | (length_size - 1), 0xE0 | len(sps)])
    for unit in sps:
        out += struct.pack(">H", len(unit)) + unit
    out.append(len(pps))
    for unit in pps:
        out += struct.pack(">H", len(unit)) + unit
    return bytes(out)


def hvcc(arrays: dict[int, list[bytes]], *, length_size: int = 4) -> bytes:
    out = bytearray([1, 0x01, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 93, 0xF0, 0, 0xFC, 0xFD])
    out += bytes([0xF8, 0xF8, 0, 0, 0x0C | (length_size - 1), len(arrays)])
    for nal_type, units in arrays.items():
        out += bytes([0x80 | nal_type]) + struct.pack(">H", len(units))
        for unit in units:
            out += struct.pack(">H", len(unit)) + unit
    return bytes(out)


def length_prefixed(units: list[bytes], size: int = 4) -> bytes:
    return b"".join(len(unit).to_bytes(size, "big") + unit for unit in units)


def si24(value: int) -> bytes:
    return (value & 0xFFFFFF).to_bytes(3, "big")


def aac_summary(asc: bytes | memoryview) -> tuple[int, int, int]:
    """What the AAC sequence header a tag hands over says, read by the one ASC parser."""
    config = parse_audio_specific_config(asc)
    return config.object_type, config.sample_rate, config.channels


def obs_message(needle: bytes, header_size: int) -> bytes:
    """A whole OBS media message found by its first bytes (one chunk, fmt 0 or 1)."""
    stream = OBS_C2S.read_bytes()
    start = stream.find(needle)
    assert start > 0
    # fmt 0: ... length(3) type(1) stream id(4); fmt 1: ... length(3) type(1).
    end_of_length = start - (5 if header_size == 12 else 1)
    length = int.from_bytes(stream[end_of_length - 3 : end_of_length], "big")
    return stream[start : start + length]


# --------------------------------------------------------------------------- real OBS bytes


def test_obs_avc_sequence_header() -> None:
    body = obs_message(b"\x17\x00\x00\x00\x00\x01\x64\x00\x1f", 12)
    assert len(body) == 48
    tag = parse_video_tag(body)
    assert (tag.codec, tag.keyframe, tag.packet_type) == (
        "h264",
        True,
        VideoPacketType.SEQUENCE_START,
    )
    assert tag.composition_time == 0
    config = parse_avc_config(tag.data)
    assert (config.profile, config.compatibility, config.level) == (100, 0, 31)
    assert config.nal_length_size == 4
    assert [len(s) for s in config.sps] == [28]
    assert [len(p) for p in config.pps] == [4]
    assert (config.width, config.height) == (1280, 720)
    # OBS's SPS has an emulation-prevention byte (in its VUI).
    assert b"\x00\x00\x03" in config.sps[0]


def test_obs_aac_sequence_header() -> None:
    body = obs_message(b"\xaf\x00\x11\x90\x56\xe5\x00", 12)
    assert body == b"\xaf\x00\x11\x90\x56\xe5\x00"
    tag = parse_audio_tag(body)
    assert (tag.codec, tag.packet_type) == ("aac", AudioPacketType.SEQUENCE_START)
    assert (tag.sound_rate, tag.sound_size, tag.stereo) == (3, 1, True)
    assert SOUND_RATES[tag.sound_rate] == 44100
    assert bytes(tag.data) == bytes.fromhex("119056e500")
    assert aac_summary(tag.data) == (2, 48000, 2)


def test_obs_inter_frame_with_composition_time() -> None:
    body = obs_message(b"\x27\x01\x00\x00\xa6", 8)
    assert len(body) == 47
    tag = parse_video_tag(body)
    assert (tag.keyframe, tag.packet_type, tag.composition_time) == (
        False,
        VideoPacketType.CODED_FRAMES,
        166,
    )
    units = list(iter_nal_units(tag.data, 4))
    assert [len(u) for u in units] == [38]
    assert units[0][0] & 0x1F == 1  # non-IDR slice


# --------------------------------------------------------------------------- real ffmpeg output


@dataclass(frozen=True, slots=True)
class Clip:
    name: str
    args: tuple[str, ...]
    width: int
    height: int
    profile: int
    audio: tuple[str, int, int] | None  # codec, sample rate, channels


CLIPS = (
    Clip(
        "720p_high_aac48k",
        (
            "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
            "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-ac", "2",
        ),
        1280, 720, 100, ("aac", 48000, 2),
    ),
    Clip(
        "854x480_baseline_aac44k_mono",
        (
            "-f", "lavfi", "-i", "testsrc2=size=854x480:rate=30",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
            "-c:v", "libx264", "-profile:v", "baseline", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-ac", "1",
        ),
        854, 480, 66, ("aac", 44100, 1),
    ),
    Clip(
        "1080p_mp3",
        (
            "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
            "-c:a", "libmp3lame", "-ac", "2",
        ),
        1920, 1080, 66, ("mp3", 44100, 2),
    ),
    Clip(
        "444_high_predictive_cropped",
        (
            "-f", "lavfi", "-i", "testsrc2=size=350x198:rate=30",
            "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv444p",
        ),
        350, 198, 244, None,
    ),
    Clip(
        "422_interlaced",
        (
            "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30",
            "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv422p",
            "-flags", "+ildct+ilme", "-x264-params", "interlaced=1",
        ),
        640, 360, 122, None,
    ),
)  # fmt: skip


def run_ffmpeg(*args: str) -> None:
    assert FFMPEG is not None
    subprocess.run(
        [FFMPEG, "-nostdin", "-v", "error", "-y", *args],
        check=True,
        capture_output=True,
        timeout=120,
    )


@pytest.fixture(scope="session")
def clip_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if FFMPEG is None:
        pytest.skip("ffmpeg CLI not installed")
    directory = tmp_path_factory.mktemp("flv")
    paths = {}
    for clip in CLIPS:
        path = directory / f"{clip.name}.flv"
        run_ffmpeg(*clip.args, "-t", "0.5", "-g", "30", "-f", "flv", str(path))
        paths[clip.name] = path
    return paths


@needs_ffmpeg
@pytest.mark.parametrize("clip", CLIPS, ids=lambda clip: clip.name)
def test_ffmpeg_h264_clip(clip: Clip, clip_files: dict[str, Path]) -> None:
    tags = [t for t in read_flv(clip_files[clip.name]) if t.kind == TAG_VIDEO]
    parsed = [parse_video_tag(t.body) for t in tags]
    header = parsed[0]
    assert (header.codec, header.packet_type, header.keyframe) == (
        "h264",
        VideoPacketType.SEQUENCE_START,
        True,
    )
    config = parse_avc_config(header.data)
    assert (config.width, config.height) == (clip.width, clip.height)
    assert config.profile == clip.profile
    assert config.nal_length_size == 4
    assert len(config.sps) == 1
    assert len(config.pps) == 1
    assert config.sps[0][0] & 0x1F == 7
    assert config.pps[0][0] & 0x1F == 8

    frames = [p for p in parsed[1:] if p.packet_type is VideoPacketType.CODED_FRAMES]
    assert len(frames) >= 10
    assert frames[0].keyframe
    for frame in frames:
        units = list(iter_nal_units(frame.data, config.nal_length_size))
        assert sum(len(u) + 4 for u in units) == len(frame.data)
        types = {u[0] & 0x1F for u in units}
        assert (5 in types) == frame.keyframe  # IDR slice exactly in keyframes


@needs_ffmpeg
@pytest.mark.parametrize("clip", CLIPS, ids=lambda clip: clip.name)
def test_composition_times_match_pyav(clip: Clip, clip_files: dict[str, Path]) -> None:
    av = pytest.importorskip("av")
    path = clip_files[clip.name]
    ours = []
    for tag in read_flv(path):
        if tag.kind == TAG_VIDEO:
            video = parse_video_tag(tag.body)
            if video.packet_type is VideoPacketType.CODED_FRAMES:
                ours.append((tag.timestamp, video.composition_time, video.keyframe))
    with av.open(str(path)) as container:
        theirs = [
            (p.dts, p.pts - p.dts, p.is_keyframe)
            for p in container.demux(container.streams.video[0])
            if p.size
        ]
    assert ours == theirs


@needs_ffmpeg
@pytest.mark.parametrize("clip", [c for c in CLIPS if c.audio], ids=lambda clip: clip.name)
def test_ffmpeg_audio(clip: Clip, clip_files: dict[str, Path]) -> None:
    assert clip.audio is not None
    codec, rate, channels = clip.audio
    tags = [parse_audio_tag(t.body) for t in read_flv(clip_files[clip.name]) if t.kind == TAG_AUDIO]
    assert {t.codec for t in tags} == {codec}
    if codec == "aac":
        assert tags[0].packet_type is AudioPacketType.SEQUENCE_START
        assert aac_summary(tags[0].data) == (2, rate, channels)
        # The legacy bits are fixed for AAC whatever the real config is.
        assert {(t.sound_rate, t.sound_size, t.stereo) for t in tags} == {(3, 1, True)}
        coded = tags[1:]
    else:
        assert SOUND_RATES[tags[0].sound_rate] == rate
        assert tags[0].stereo is (channels == 2)
        coded = tags
        assert all(bytes(t.data[:2]) in (b"\xff\xfb", b"\xff\xfa") for t in coded)
    assert len(coded) >= 10
    assert all(t.packet_type is AudioPacketType.CODED_FRAMES for t in coded)


def remux_to_flv(source: Path, target: Path) -> None:
    """Remux with PyAV, whose libavformat writes Enhanced FLV for HEVC/VP9/Opus."""
    av = pytest.importorskip("av")
    with av.open(str(source)) as inp, av.open(str(target), "w", format="flv") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for packet in inp.demux():
            if packet.dts is None:
                continue
            packet.stream = streams[packet.stream.index]
            out.mux(packet)


@pytest.fixture(scope="session")
def enhanced_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if FFMPEG is None:
        pytest.skip("ffmpeg CLI not installed")
    directory = tmp_path_factory.mktemp("eflv")
    sources = {
        "hevc_opus": (
            "-f", "lavfi", "-i", "testsrc2=size=854x480:rate=30",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
            "-c:v", "libx265", "-x265-params", "log-level=error",
            "-c:a", "libopus", "-ac", "2",
        ),
        "vp9": (
            "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30",
            "-c:v", "libvpx-vp9", "-deadline", "realtime",
        ),
    }  # fmt: skip
    paths = {}
    for name, args in sources.items():
        source = directory / f"{name}.mp4"
        run_ffmpeg(*args, "-t", "0.5", str(source))
        paths[name] = directory / f"{name}.flv"
        try:
            remux_to_flv(source, paths[name])
        except Exception as exc:  # an old libavformat has no Enhanced FLV muxer
            pytest.skip(f"PyAV cannot write Enhanced FLV: {exc}")
    return paths


@needs_ffmpeg
def test_enhanced_flv_hevc_and_opus(enhanced_files: dict[str, Path]) -> None:
    tags = read_flv(enhanced_files["hevc_opus"])
    video = [parse_video_tag(t.body) for t in tags if t.kind == TAG_VIDEO]
    assert all(t.body[0] & 0x80 for t in tags if t.kind == TAG_VIDEO)  # really enhanced
    start = next(v for v in video if v.packet_type is VideoPacketType.SEQUENCE_START)
    assert start.codec == "hevc"
    config = parse_hevc_config(start.data)
    assert (config.width, config.height) == (854, 480)
    assert config.nal_length_size == 4
    assert (len(config.vps), len(config.sps), len(config.pps)) == (1, 1, 1)
    assert (config.vps[0][0] >> 1, config.sps[0][0] >> 1, config.pps[0][0] >> 1) == (32, 33, 34)

    for metadata in (v for v in video if v.packet_type is VideoPacketType.METADATA):
        assert metadata.codec == "hevc"
        assert not metadata.keyframe
        assert decode_all(metadata.data)[0] == "colorInfo"

    frames = [v for v in video if v.packet_type is VideoPacketType.CODED_FRAMES]
    assert len(frames) >= 10
    assert frames[0].keyframe
    assert {v.codec for v in video} == {"hevc"}
    assert any(f.composition_time > 0 for f in frames)  # x265 uses B-frames
    for frame in frames:
        units = list(iter_nal_units(frame.data, config.nal_length_size))
        assert units
        irap = any(16 <= (u[0] >> 1) & 0x3F <= 23 for u in units)
        assert irap == frame.keyframe

    audio = [parse_audio_tag(t.body) for t in tags if t.kind == TAG_AUDIO]
    assert {a.codec for a in audio} == {"opus"}
    assert audio[0].packet_type is AudioPacketType.SEQUENCE_START
    assert bytes(audio[0].data[:8]) == b"OpusHead"
    coded = [a for a in audio if a.packet_type is AudioPacketType.CODED_FRAMES]
    assert len(coded) >= 10


@needs_ffmpeg
def test_enhanced_flv_hevc_matches_pyav(enhanced_files: dict[str, Path]) -> None:
    av = pytest.importorskip("av")
    path = enhanced_files["hevc_opus"]
    ours = []
    for tag in read_flv(path):
        if tag.kind == TAG_VIDEO:
            video = parse_video_tag(tag.body)
            if video.packet_type is VideoPacketType.CODED_FRAMES:
                ours.append((tag.timestamp, video.composition_time, video.keyframe))
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (854, 480)
        theirs = [(p.dts, p.pts - p.dts, p.is_keyframe) for p in container.demux(stream) if p.size]
    assert ours == theirs


@needs_ffmpeg
def test_enhanced_flv_vp9(enhanced_files: dict[str, Path]) -> None:
    video = [parse_video_tag(t.body) for t in read_flv(enhanced_files["vp9"]) if t.kind == 9]
    assert {v.codec for v in video} == {"vp9"}
    assert video[0].packet_type is VideoPacketType.SEQUENCE_START
    frames = [v for v in video if v.packet_type is VideoPacketType.CODED_FRAMES]
    assert len(frames) >= 10
    assert frames[0].keyframe
    assert all(f.composition_time == 0 for f in frames)


# --------------------------------------------------------------------------- legacy video tags


def test_video_tag_data_is_a_view_not_a_copy() -> None:
    body = b"\x17\x01\x00\x00\x00" + length_prefixed([b"\x65abc"])
    tag = parse_video_tag(body)
    assert isinstance(tag.data, memoryview)
    assert tag.data.obj is body
    assert bytes(tag.data) == body[5:]
    buffer = bytearray(body)
    view = memoryview(buffer)
    tag = parse_video_tag(view[0:])
    buffer[5] = 0x7F  # a view sees later writes: no copy was made
    assert tag.data[0] == 0x7F


@pytest.mark.parametrize(
    ("cts_bytes", "expected"),
    [
        (b"\x00\x00\x00", 0),
        (b"\x00\x00\x21", 33),
        (b"\xff\xff\xff", -1),
        (b"\xff\xff\xdf", -33),
        (b"\x7f\xff\xff", 0x7FFFFF),
        (b"\x80\x00\x00", -0x800000),
    ],
)
def test_signed_composition_time(cts_bytes: bytes, expected: int) -> None:
    tag = parse_video_tag(b"\x27\x01" + cts_bytes + b"\x00\x00\x00\x01\x41")
    assert tag.composition_time == expected
    assert tag.packet_type is VideoPacketType.CODED_FRAMES


@pytest.mark.parametrize(
    ("body", "codec", "keyframe", "packet_type", "data"),
    [
        (b"\x17\x00\x00\x00\x00\x01\x64", "h264", True, V_START, b"\x01\x64"),
        (b"\x27\x01\x00\x00\x00xy", "h264", False, V_FRAMES, b"xy"),
        (b"\x17\x02\x00\x00\x00", "h264", True, V_END, b""),
        (b"\x17\x02", "h264", True, V_END, b""),
        (b"\x27\x07\x00\x00\x00", "h264", False, V_OTHER, b""),
        (b"\x1c\x00\x00\x00\x00hvcc", "hevc", True, V_START, b"hvcc"),
        (b"\x2c\x01\x00\x00\x10nal", "hevc", False, V_FRAMES, b"nal"),
        (b"\x57\x00", "h264", False, V_OTHER, b"\x00"),  # video info/command
        (b"\x52", "unknown:2", False, V_OTHER, b""),
        (b"\x14\x00abc", "unknown:4", True, V_FRAMES, b"\x00abc"),  # VP6
        (b"\x22frame", "unknown:2", False, V_FRAMES, b"frame"),  # H.263
        (b"\x3d", "unknown:13", False, V_FRAMES, b""),
    ],
)
def test_legacy_video_tags(
    body: bytes, codec: str, keyframe: bool, packet_type: VideoPacketType, data: bytes
) -> None:
    tag = parse_video_tag(body)
    assert (tag.codec, tag.keyframe, tag.packet_type, bytes(tag.data)) == (
        codec,
        keyframe,
        packet_type,
        data,
    )


@pytest.mark.parametrize("body", [b"", b"\x17", b"\x17\x01", b"\x27\x01\x00\x00", b"\x1c\x00"])
def test_short_video_tags(body: bytes) -> None:
    with pytest.raises(FlvError):
        parse_video_tag(body)


# --------------------------------------------------------------------------- enhanced video tags


def ex_video(frame_type: int, packet_type: int) -> bytes:
    return bytes([0x80 | frame_type << 4 | packet_type])


@pytest.mark.parametrize(
    ("body", "codec", "keyframe", "packet_type", "cts", "data"),
    [
        (ex_video(1, 0) + b"hvc1" + b"cfg", "hevc", True, V_START, 0, b"cfg"),
        (ex_video(1, 1) + b"hvc1" + si24(-40) + b"nal", "hevc", True, V_FRAMES, -40, b"nal"),
        (ex_video(2, 1) + b"hvc1" + si24(67) + b"nal", "hevc", False, V_FRAMES, 67, b"nal"),
        (ex_video(2, 3) + b"hvc1" + b"nal", "hevc", False, V_FRAMES, 0, b"nal"),
        (ex_video(1, 2) + b"hvc1", "hevc", True, V_END, 0, b""),
        (ex_video(1, 0) + b"avc1" + b"\x01\x64", "h264", True, V_START, 0, b"\x01\x64"),
        (ex_video(2, 1) + b"avc1" + si24(-1) + b"x", "h264", False, V_FRAMES, -1, b"x"),
        (ex_video(1, 1) + b"av01" + b"obu", "av1", True, V_FRAMES, 0, b"obu"),
        (ex_video(1, 0) + b"av01" + b"av1C", "av1", True, V_START, 0, b"av1C"),
        (ex_video(1, 5) + b"av01" + b"desc", "av1", True, V_OTHER, 0, b"desc"),
        (ex_video(2, 1) + b"vp09" + b"frame", "vp9", False, V_FRAMES, 0, b"frame"),
        (ex_video(1, 1) + b"vp08" + b"frame", "vp8", True, V_FRAMES, 0, b"frame"),
        (ex_video(1, 1) + b"xyz1" + b"???", "unknown:xyz1", True, V_FRAMES, 0, b"???"),
        (ex_video(5, 4) + b"hvc1" + COLOR_INFO, "hevc", False, V_META, 0, COLOR_INFO),
        (ex_video(1, 4) + b"av01" + b"amf", "av1", False, V_META, 0, b"amf"),
        (ex_video(5, 1) + b"\x00", "unknown:command", False, V_OTHER, 0, b"\x00"),
        (ex_video(1, 9) + b"hvc1" + b"??", "hevc", True, V_OTHER, 0, b"??"),
    ],
)
def test_enhanced_video_tags(
    body: bytes,
    codec: str,
    keyframe: bool,
    packet_type: VideoPacketType,
    cts: int,
    data: bytes,
) -> None:
    tag = parse_video_tag(body)
    assert (tag.codec, tag.keyframe, tag.packet_type, tag.composition_time, bytes(tag.data)) == (
        codec,
        keyframe,
        packet_type,
        cts,
        data,
    )
    assert isinstance(tag.data, memoryview)


def test_enhanced_video_mod_ex_is_skipped() -> None:
    # ModEx (7) with a 3-byte TimestampOffsetNano, then the real type: CodedFrames.
    body = ex_video(1, 7) + b"\x02" + b"\x00\x01\x02" + b"\x01" + b"hvc1" + si24(-5) + b"nal"
    tag = parse_video_tag(body)
    assert (tag.codec, tag.packet_type, tag.composition_time, bytes(tag.data)) == (
        "hevc",
        VideoPacketType.CODED_FRAMES,
        -5,
        b"nal",
    )
    # Two chained ModEx blocks, the second with the UI16 size escape (300 bytes).
    long_block = b"\xff" + struct.pack(">H", 299) + bytes(300)
    body = ex_video(1, 7) + b"\x00\x00" + b"\x07" + long_block + b"\x00" + b"av01" + b"cfg"
    tag = parse_video_tag(body)
    assert (tag.codec, tag.packet_type, bytes(tag.data)) == (
        "av1",
        VideoPacketType.SEQUENCE_START,
        b"cfg",
    )


def test_enhanced_video_multitrack_is_reported_not_unpacked() -> None:
    # One track (type 0), CodedFramesX, FourCC, then track id 1 and its frames.
    tag = parse_video_tag(ex_video(2, 6) + b"\x03" + b"hvc1" + b"\x01" + b"nal")
    assert (tag.codec, tag.packet_type, bytes(tag.data)) == (
        "hevc",
        VideoPacketType.OTHER,
        b"\x01nal",
    )
    # Many tracks, many codecs: FourCCs live per track.
    tag = parse_video_tag(ex_video(1, 6) + b"\x21" + b"\x00avc1")
    assert (tag.codec, tag.packet_type) == ("unknown:multitrack", VideoPacketType.OTHER)


@pytest.mark.parametrize(
    "body",
    [
        ex_video(1, 0),
        ex_video(1, 0) + b"hvc",
        ex_video(1, 1) + b"hvc1" + b"\x00\x00",
        ex_video(1, 1) + b"avc1",
        ex_video(1, 7),
        ex_video(1, 7) + b"\x05abc",
        ex_video(1, 7) + b"\xff\x01",
        ex_video(1, 7) + b"\x00\x00",
        ex_video(1, 6),
        ex_video(1, 6) + b"\x00hv",
    ],
)
def test_short_enhanced_video_tags(body: bytes) -> None:
    with pytest.raises(FlvError):
        parse_video_tag(body)


# --------------------------------------------------------------------------- audio tags


@pytest.mark.parametrize(
    ("body", "codec", "packet_type", "data", "bits"),
    [
        (b"\xaf\x00\x12\x10", "aac", A_START, b"\x12\x10", (3, 1, True)),
        (b"\xaf\x01raw", "aac", A_FRAMES, b"raw", (3, 1, True)),
        (b"\xaf\x02", "aac", A_OTHER, b"", (3, 1, True)),
        (b"\x2f\xff\xfb", "mp3", A_FRAMES, b"\xff\xfb", (3, 1, True)),
        (b"\x2a\xff\xfb", "mp3", A_FRAMES, b"\xff\xfb", (2, 1, False)),
        (b"\xe2mp3", "mp3", A_FRAMES, b"mp3", (0, 1, False)),
        (b"\xb6spx", "unknown:11", A_FRAMES, b"spx", (1, 1, False)),
        (b"\x70alaw", "unknown:7", A_FRAMES, b"alaw", (0, 0, False)),
        (b"\x01", "unknown:0", A_FRAMES, b"", (0, 0, True)),
    ],
)
def test_legacy_audio_tags(
    body: bytes,
    codec: str,
    packet_type: AudioPacketType,
    data: bytes,
    bits: tuple[int, int, bool],
) -> None:
    tag = parse_audio_tag(body)
    assert (tag.codec, tag.packet_type, bytes(tag.data)) == (codec, packet_type, data)
    assert (tag.sound_rate, tag.sound_size, tag.stereo) == bits
    assert isinstance(tag.data, memoryview)
    assert tag.data.obj is body


def ex_audio(packet_type: int) -> bytes:
    return bytes([0x90 | packet_type])


@pytest.mark.parametrize(
    ("body", "codec", "packet_type", "data"),
    [
        (ex_audio(0) + b"Opus" + b"OpusHead", "opus", A_START, b"OpusHead"),
        (ex_audio(1) + b"Opus" + b"\xfc\x00", "opus", A_FRAMES, b"\xfc\x00"),
        (ex_audio(0) + b"mp4a" + b"\x11\x90", "aac", A_START, b"\x11\x90"),
        (ex_audio(1) + b"mp4a" + b"raw", "aac", A_FRAMES, b"raw"),
        (ex_audio(1) + b".mp3" + b"\xff\xfb", "mp3", A_FRAMES, b"\xff\xfb"),
        (ex_audio(0) + b"fLaC" + b"fLaC", "flac", A_START, b"fLaC"),
        (ex_audio(1) + b"ac-3" + b"\x0b\x77", "ac3", A_FRAMES, b"\x0b\x77"),
        (ex_audio(1) + b"ec-3" + b"\x0b\x77", "eac3", A_FRAMES, b"\x0b\x77"),
        (ex_audio(2) + b"Opus", "opus", A_OTHER, b""),
        (ex_audio(4) + b"Opus" + b"\x00\x02", "opus", A_OTHER, b"\x00\x02"),
        (ex_audio(1) + b"zzzz" + b"?", "unknown:zzzz", A_FRAMES, b"?"),
        (ex_audio(7) + b"\x00\x00" + b"\x01" + b"Opus" + b"pkt", "opus", A_FRAMES, b"pkt"),
        (ex_audio(5) + b"\x01" + b"Opus" + b"\x01pkt", "opus", A_OTHER, b"\x01pkt"),
        (ex_audio(5) + b"\x21" + b"\x00mp4a", "unknown:multitrack", A_OTHER, b"\x00mp4a"),
    ],
)
def test_enhanced_audio_tags(
    body: bytes, codec: str, packet_type: AudioPacketType, data: bytes
) -> None:
    tag = parse_audio_tag(body)
    assert (tag.codec, tag.packet_type, bytes(tag.data)) == (codec, packet_type, data)
    assert (tag.sound_rate, tag.sound_size, tag.stereo) == (0, 0, False)


def test_enhanced_aac_sequence_start_feeds_the_asc_parser() -> None:
    tag = parse_audio_tag(ex_audio(0) + b"mp4a" + bytes.fromhex("119056e500"))
    assert aac_summary(tag.data) == (2, 48000, 2)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\xaf",
        ex_audio(0),
        ex_audio(1) + b"Opu",
        ex_audio(7),
        ex_audio(7) + b"\x03ab",
        ex_audio(5),
    ],
)
def test_short_audio_tags(body: bytes) -> None:
    with pytest.raises(FlvError):
        parse_audio_tag(body)


# --------------------------------------------------------------------------- avcC and H.264 SPS

PPS = b"\x68\xce\x3c\x80"


@pytest.mark.parametrize(
    ("sps", "size"),
    [
        (avc_sps(width_mbs=80, height_units=45), (1280, 720)),
        (avc_sps(width_mbs=120, height_units=68, crop=(0, 0, 0, 4)), (1920, 1080)),
        (avc_sps(width_mbs=54, height_units=30, crop=(0, 5, 0, 0)), (854, 480)),
        (avc_sps(width_mbs=80, height_units=45, poc_type=0), (1280, 720)),
        (avc_sps(profile=100, width_mbs=120, height_units=68, crop=(0, 0, 0, 4)), (1920, 1080)),
        (
            avc_sps(
                profile=100, width_mbs=40, height_units=12, frame_mbs_only=0, crop=(0, 0, 0, 6)
            ),
            (640, 360),
        ),
        (
            avc_sps(profile=122, chroma=2, width_mbs=40, height_units=23, crop=(0, 0, 0, 8)),
            (640, 360),
        ),
        (
            avc_sps(
                profile=122,
                chroma=2,
                width_mbs=40,
                height_units=12,
                frame_mbs_only=0,
                crop=(0, 0, 0, 12),
            ),
            (640, 360),
        ),
        (
            avc_sps(profile=244, chroma=3, width_mbs=22, height_units=13, crop=(1, 1, 3, 7)),
            (350, 198),
        ),
        (
            avc_sps(
                profile=244,
                chroma=3,
                separate_planes=1,
                width_mbs=22,
                height_units=13,
                crop=(1, 1, 3, 7),
            ),
            (350, 198),
        ),
        (
            avc_sps(profile=100, chroma=0, width_mbs=20, height_units=15, crop=(1, 2, 3, 4)),
            (317, 233),
        ),
        (
            avc_sps(
                profile=100,
                chroma=0,
                width_mbs=20,
                height_units=8,
                frame_mbs_only=0,
                crop=(0, 0, 1, 1),
            ),
            (320, 252),
        ),
    ],
)
def test_avc_picture_size(sps: bytes, size: tuple[int, int]) -> None:
    config = parse_avc_config(avcc([sps], [PPS]))
    assert (config.width, config.height) == size
    assert config.sps == (sps,)
    assert config.pps == (PPS,)


def scaling_deltas(size: int, seed: int) -> list[int]:
    return [((i * seed) % 7) - 3 for i in range(size)]


def test_avc_scaling_lists_are_skipped_exactly() -> None:
    # High profile: 8 lists, some absent, one cut short by a zero next_scale
    # (delta -8 from 8 = "use the default matrix", no further deltas).
    lists: list[list[int] | None] = [
        scaling_deltas(16, 3),
        None,
        [-8],
        scaling_deltas(16, 5),
        None,
        scaling_deltas(16, 2),
        scaling_deltas(64, 3),
        None,
    ]
    sps = avc_sps(
        profile=100, width_mbs=120, height_units=68, crop=(0, 0, 0, 4), scaling_lists=lists
    )
    config = parse_avc_config(avcc([sps], [PPS], profile=100))
    assert (config.width, config.height) == (1920, 1080)
    # 4:4:4 has 12 lists.
    lists12: list[list[int] | None] = [scaling_deltas(16, i) for i in range(6)]
    lists12 += [scaling_deltas(64, i) for i in range(6)]
    sps = avc_sps(
        profile=244,
        chroma=3,
        width_mbs=40,
        height_units=23,
        crop=(0, 0, 0, 8),
        scaling_lists=lists12,
    )
    config = parse_avc_config(avcc([sps], [PPS], profile=244))
    assert (config.width, config.height) == (640, 368 - 8)


def test_avc_emulation_prevention_is_removed() -> None:
    # A large offset_for_non_ref_pic (POC type 1) is a run of 31 zero bits: the
    # escaped SPS must contain 00 00 03 before the picture size.
    sps = avc_sps(width_mbs=80, height_units=45, poc_type=1, poc_offset=-(1 << 30))
    assert b"\x00\x00\x03" in sps
    config = parse_avc_config(avcc([sps], [PPS]))
    assert (config.width, config.height) == (1280, 720)


def test_avc_config_fields() -> None:
    sps = avc_sps(width_mbs=80, height_units=45)
    record = avcc([sps, avc_sps(width_mbs=1, height_units=1)], [PPS, PPS + b"\x01"], length_size=2)
    config = parse_avc_config(memoryview(record))
    assert (config.profile, config.compatibility, config.level) == (66, 0, 31)
    assert config.nal_length_size == 2
    assert len(config.sps) == 2
    assert config.pps == (PPS, PPS + b"\x01")
    assert all(type(unit) is bytes for unit in config.sps + config.pps)
    assert (config.width, config.height) == (1280, 720)  # from the first SPS
    # Trailing bytes (the High profile extension) are ignored.
    assert parse_avc_config(record + b"\xfd\xf8\xf8\x00") == config


def test_avc_config_without_sps_has_no_size() -> None:
    config = parse_avc_config(avcc([], [PPS]))
    assert (config.width, config.height, config.sps) == (0, 0, ())


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (b"", "7"),
        (b"\x01\x64\x00\x1f\xff\xe1", "7"),
        (b"\x00\x00\x00\x01\x67\x64\x00", "version is 0"),
        (b"\x01\x64\x00\x1f\xff\xe1\x00", "SPS length"),
        (b"\x01\x64\x00\x1f\xff\xe1\x00\x10\x67", "SPS"),
        (avcc([avc_sps(width_mbs=8, height_units=8)], [])[:-1], "PPS count"),
        (avcc([avc_sps(width_mbs=8, height_units=8)], [PPS])[:-2], "PPS"),
        (avcc([b"\x68\x00\x00\x00"], [PPS]), "not an SPS"),
        (avcc([b"\x67\x42"], [PPS]), "too short"),
        (avcc([b"\x67\x42\x00\x1f"], [PPS]), "truncated"),
        (avcc([b"\x67\x42\x00\x1f" + b"\x00" * 6 + b"\x80"], [PPS]), "32 bits"),
        (avcc([avc_sps(width_mbs=8, height_units=8, crop=(64, 0, 0, 0))], [PPS]), "crops"),
        (
            avcc([avc_sps(profile=100, chroma=4, width_mbs=8, height_units=8)], [PPS]),
            "chroma_format_idc",
        ),
        (avcc([avc_sps(width_mbs=8, height_units=8, poc_type=3)], [PPS]), "pic_order_cnt_type"),
    ],
)
def test_bad_avc_config(record: bytes, message: str) -> None:
    with pytest.raises(FlvError, match=message):
        parse_avc_config(record)


# --------------------------------------------------------------------------- hvcC and H.265 SPS

VPS = b"\x40\x01\x0c\x01"
HEVC_PPS = b"\x44\x01\xc1\x72"


@pytest.mark.parametrize(
    ("sps", "size"),
    [
        (hevc_sps(width=1280, height=720), (1280, 720)),
        (hevc_sps(width=1920, height=1088, window=(0, 0, 0, 4)), (1920, 1080)),
        (hevc_sps(width=856, height=480, window=(0, 1, 0, 0)), (854, 480)),
        (hevc_sps(width=856, height=480, chroma=2, window=(0, 1, 0, 0)), (854, 480)),
        (hevc_sps(width=856, height=480, chroma=3, window=(1, 1, 2, 0)), (854, 478)),
        (hevc_sps(width=64, height=64, chroma=0, window=(1, 2, 3, 4)), (61, 57)),
        (hevc_sps(width=1280, height=720, sub_layers=[(1, 1), (0, 1), (1, 0)]), (1280, 720)),
        (hevc_sps(width=3840, height=2160, sub_layers=[(0, 0)] * 6), (3840, 2160)),
    ],
)
def test_hevc_picture_size(sps: bytes, size: tuple[int, int]) -> None:
    config = parse_hevc_config(hvcc({32: [VPS], 33: [sps], 34: [HEVC_PPS]}))
    assert (config.width, config.height) == size
    assert (config.vps, config.sps, config.pps) == ((VPS,), (sps,), (HEVC_PPS,))
    assert config.nal_length_size == 4


def test_hevc_config_other_arrays_and_layers() -> None:
    sei = b"\x4e\x01\x05"
    upper_layer_sps = b"\x42\x09" + b"\xff" * 8  # nuh_layer_id 1: not the picture we show
    sps = hevc_sps(width=1280, height=720)
    record = hvcc({32: [VPS], 39: [sei], 33: [upper_layer_sps, sps], 34: [HEVC_PPS]}, length_size=2)
    config = parse_hevc_config(record)
    assert config.sps == (upper_layer_sps, sps)
    assert (config.width, config.height, config.nal_length_size) == (1280, 720, 2)
    assert parse_hevc_config(hvcc({32: [VPS]})).width == 0


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (b"\x01" * 22, "23"),
        (b"\x00\x00\x00\x01\x40\x01" + bytes(20), "Annex B"),
        (b"\x00\x00\x01\x40\x01" + bytes(20), "Annex B"),
        (hvcc({32: [VPS]})[:-1], "truncated"),
        (hvcc({32: [VPS]})[:24], "truncated"),
        (hvcc({32: [VPS], 33: [b"\x40\x01\x00"]}), "not an SPS"),
        (hvcc({33: [b"\x42\x01\x01"]}), "truncated"),
        (hvcc({33: [hevc_sps(width=64, height=64, window=(16, 16, 0, 0))]}), "0x64"),
        (hvcc({33: [hevc_sps(width=64, height=64, chroma=5)]}), "chroma_format_idc"),
        (hvcc({33: [b"\x42\x01" + bytes([0x0E]) + b"\xff" * 20]}), "sub_layers"),
    ],
)
def test_bad_hevc_config(record: bytes, message: str) -> None:
    with pytest.raises(FlvError, match=message):
        parse_hevc_config(record)


def test_hevc_emulation_prevention_is_removed() -> None:
    # A zero general_profile_compatibility word and constraint flags give long zero
    # runs inside profile_tier_level; the writer escapes them.
    w = BitWriter().u(4, 0).u(3, 0).u(1, 1).u(2, 0).u(1, 0).u(5, 1).u(32, 0).u(48, 0).u(8, 0)
    w.ue(0).ue(1).ue(1920).ue(1080).u(1, 0)
    sps = b"\x42\x01" + escape(w.rbsp())
    assert b"\x00\x00\x03" in sps
    config = parse_hevc_config(hvcc({33: [sps]}))
    assert (config.width, config.height) == (1920, 1080)


# --------------------------------------------------------------------------- NAL units


@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_iter_nal_units(size: int) -> None:
    units = [b"\x65" + bytes(200), b"\x41x", b"\x06", bytes(255)]
    data = length_prefixed(units, size)
    split = list(iter_nal_units(data, size))
    assert [bytes(u) for u in split] == units
    assert all(isinstance(u, memoryview) and u.obj is data for u in split)
    assert list(iter_nal_units(memoryview(data), size)) == split


def test_iter_nal_units_skips_empty_units_and_empty_input() -> None:
    data = length_prefixed([b"", b"\x65a", b""])
    assert [bytes(u) for u in iter_nal_units(data, 4)] == [b"\x65a"]
    assert list(iter_nal_units(b"", 4)) == []


def test_iter_nal_units_length_past_end() -> None:
    data = length_prefixed([b"\x65abc"]) + b"\x00\x00\x00\x09\x41"
    units = iter_nal_units(data, 4)
    assert bytes(next(units)) == b"\x65abc"  # what is whole comes out first
    with pytest.raises(FlvError, match="runs past the end"):
        next(units)


def test_iter_nal_units_truncated_prefix() -> None:
    with pytest.raises(FlvError, match="length prefix truncated"):
        list(iter_nal_units(length_prefixed([b"\x65"]) + b"\x00\x00", 4))


@pytest.mark.parametrize("size", [0, 5, -1, 8])
def test_iter_nal_units_bad_length_size_fails_at_once(size: int) -> None:
    with pytest.raises(FlvError, match="NAL length size"):
        iter_nal_units(b"", size)


def test_iter_nal_units_over_obs_keyframe_sizes() -> None:
    # OBS's first keyframe: SEI, SPS, PPS, SEI, IDR (sizes from the decoded capture).
    sizes = [755, 28, 4, 755, 43950]
    units = [bytes([t]) + bytes(n - 1) for t, n in zip((6, 7, 8, 6, 5), sizes, strict=True)]
    body = b"\x17\x01\x00\x00\x42" + length_prefixed(units)
    tag = parse_video_tag(body)
    assert tag.composition_time == 66
    assert [len(u) for u in iter_nal_units(tag.data, 4)] == sizes


# --------------------------------------------------------------------------- fuzz

PARSERS = [
    parse_video_tag,
    parse_audio_tag,
    parse_avc_config,
    parse_hevc_config,
]


def consume_nal_units(data: bytes) -> None:
    for size in (1, 2, 3, 4):
        for _ in iter_nal_units(data, size):
            pass


@given(st.sampled_from([*PARSERS, consume_nal_units]), st.binary(max_size=300))
@settings(max_examples=3000)
def test_fuzz_random_bytes_raise_only_flv_error(parser: object, data: bytes) -> None:
    with contextlib.suppress(FlvError):
        parser(data)  # type: ignore[operator]


@given(st.sampled_from(range(256)), st.binary(max_size=40))
@settings(max_examples=2000)
def test_fuzz_every_first_byte(first: int, rest: bytes) -> None:
    for parser in (parse_video_tag, parse_audio_tag):
        with contextlib.suppress(FlvError):
            parser(bytes([first]) + rest)


def iter_seeds() -> Iterator[bytes]:
    yield avcc([avc_sps(profile=100, width_mbs=120, height_units=68, crop=(0, 0, 0, 4))], [PPS])
    yield avcc(
        [
            avc_sps(
                profile=244,
                chroma=3,
                width_mbs=40,
                height_units=23,
                scaling_lists=[[1] * 16] * 6 + [[1] * 64] * 6,
            )
        ],
        [PPS],
    )
    yield hvcc(
        {32: [VPS], 33: [hevc_sps(width=856, height=480, window=(0, 1, 0, 0), sub_layers=[(1, 1)])]}
    )


SEEDS = list(iter_seeds())


@given(st.data())
@settings(max_examples=2000)
def test_fuzz_mutated_configs_raise_only_flv_error(data: st.DataObject) -> None:
    seed = bytearray(data.draw(st.sampled_from(SEEDS)))
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        index = data.draw(st.integers(min_value=6, max_value=len(seed) - 1))
        seed[index] = data.draw(st.integers(min_value=0, max_value=255))
    cut = data.draw(st.integers(min_value=0, max_value=len(seed)))
    for parser in (parse_avc_config, parse_hevc_config):
        with contextlib.suppress(FlvError):
            parser(bytes(seed[:cut]))


# --------------------------------------------------------------------------- coded_frame


def _obs_media_bodies() -> list[tuple[int, bytes]]:
    from rtmp.events import AudioData, VideoData
    from tests.unit.test_connection_obs import run_connection

    events, _ = run_connection([OBS_C2S.read_bytes()])
    return [(TAG_VIDEO if isinstance(e, VideoData) else TAG_AUDIO, bytes(e.payload))
            for e in events if isinstance(e, AudioData | VideoData)]


def _agrees_with_the_full_parsers(type_id: int, body: bytes) -> None:
    """coded_frame answers only for plain coded AVC/HEVC/AAC frames, and then as the
    full parsers do; for every other body it says None."""
    fast = coded_frame(type_id, body)
    try:
        tag = parse_video_tag(body) if type_id == 9 else parse_audio_tag(body)
    except FlvError:
        assert fast is None
        return
    if type_id == 9:
        plain = (tag.packet_type is VideoPacketType.CODED_FRAMES  # type: ignore[union-attr]
                 and tag.codec in ("h264", "hevc") and not body[0] & 0x80)
        expected = (tag.keyframe, tag.composition_time, bytes(tag.data))  # type: ignore[union-attr]
    else:
        plain = tag.packet_type is AudioPacketType.CODED_FRAMES and tag.codec == "aac"
        expected = (True, 0, bytes(tag.data))
    if fast is None:
        assert not plain or body[0] >> 4 not in (1, 2, 3, 4)  # reserved frame types: full path
        return
    assert plain
    assert (fast[0], fast[1], bytes(fast[2])) == expected


def test_coded_frame_agrees_with_the_full_parsers_on_the_obs_capture() -> None:
    answered = 0
    for type_id, body in _obs_media_bodies():
        _agrees_with_the_full_parsers(type_id, body)
        answered += coded_frame(type_id, body) is not None
    assert answered > 0


@settings(max_examples=2000, deadline=None)
@given(st.sampled_from([8, 9]), st.one_of(
    st.binary(max_size=12),
    st.tuples(st.sampled_from([0x17, 0x27, 0x37, 0x47, 0x57, 0x1C, 0x2C, 0x12, 0x97, 0xAF,
                               0xAE, 0x2F, 0x90, 0x07, 0x67]),
              st.sampled_from([0, 1, 2, 3]), st.binary(max_size=8)).map(
        lambda t: bytes([t[0], t[1]]) + t[2])))
def test_coded_frame_agrees_with_the_full_parsers(type_id: int, body: bytes) -> None:
    _agrees_with_the_full_parsers(type_id, body)
