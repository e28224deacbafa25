"""FLV audio and video tag bodies: the payload of RTMP message types 8 and 9.

Legacy FLV (codec id / sound format nibbles) and Enhanced RTMP (an ``IsExHeader``
flag followed by a FourCC, veovera E-RTMP v1/v2) are both understood. The tag parsers
run for every media message, so they read a few header bytes with ``struct`` and hand
the payload back as a ``memoryview`` slice of the body, never a copy.

The codec configuration parsers (avcC, hvcC) run once per sequence header; they
copy parameter sets out and decode picture size from the SPS. An AAC sequence
header is only handed over (``AudioTag.data``): ``hls.aac`` is the one reader of
AudioSpecificConfig, for the stream report and the segmenter alike.
Everything here raises :class:`FlvError` on malformed input and nothing else.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

__all__ = [
    "SOUND_RATES",
    "AudioPacketType",
    "AudioTag",
    "AvcConfig",
    "FlvError",
    "HevcConfig",
    "VideoPacketType",
    "VideoTag",
    "coded_frame",
    "iter_nal_units",
    "parse_audio_tag",
    "parse_avc_config",
    "parse_hevc_config",
    "parse_video_tag",
]


class FlvError(ValueError):
    """A tag body or codec configuration is malformed or truncated."""


class VideoPacketType(enum.Enum):
    """What a video tag carries, folded across legacy and enhanced signalling."""

    SEQUENCE_START = "sequence_start"  # codec configuration (avcC, hvcC, av1C, vpcC)
    CODED_FRAMES = "coded_frames"
    SEQUENCE_END = "sequence_end"
    METADATA = "metadata"  # enhanced: AMF-encoded metadata such as colorInfo
    OTHER = "other"  # command frames, multitrack, MPEG-2 TS sequence start, unknown


class AudioPacketType(enum.Enum):
    """What an audio tag carries."""

    SEQUENCE_START = "sequence_start"  # AAC AudioSpecificConfig, Opus/FLAC headers
    CODED_FRAMES = "coded_frames"
    OTHER = "other"  # sequence end, multichannel config, multitrack, unknown


@dataclass(frozen=True, slots=True)
class VideoTag:
    """One parsed video tag body; ``data`` is a view into the body."""

    codec: str  # 'h264', 'hevc', 'av1', 'vp9', 'vp8' or 'unknown:<id or fourcc>'
    keyframe: bool
    packet_type: VideoPacketType
    composition_time: int  # signed milliseconds, pts - dts; 0 where the format has none
    data: bytes | memoryview


@dataclass(frozen=True, slots=True)
class AudioTag:
    """One parsed audio tag body; ``data`` is a view into the body.

    ``sound_rate`` (0-3, index into :data:`SOUND_RATES`), ``sound_size`` (0 = 8 bit,
    1 = 16 bit) and ``stereo`` are the raw legacy header bits; AAC always sets them to
    44 kHz/16 bit/stereo whatever the real config is, and enhanced tags have none (0).
    """

    codec: str  # 'aac', 'mp3', 'opus', 'flac', 'ac3', 'eac3' or 'unknown:<id or fourcc>'
    packet_type: AudioPacketType
    data: bytes | memoryview
    sound_rate: int
    sound_size: int
    stereo: bool


@dataclass(frozen=True, slots=True)
class AvcConfig:
    """An AVCDecoderConfigurationRecord with the picture size of its first SPS."""

    profile: int
    compatibility: int
    level: int
    nal_length_size: int
    sps: tuple[bytes, ...]
    pps: tuple[bytes, ...]
    width: int  # 0 when the record carries no SPS
    height: int


@dataclass(frozen=True, slots=True)
class HevcConfig:
    """An HEVCDecoderConfigurationRecord with the picture size of its first SPS."""

    nal_length_size: int
    vps: tuple[bytes, ...]
    sps: tuple[bytes, ...]
    pps: tuple[bytes, ...]
    width: int  # 0 when the record carries no base-layer SPS
    height: int


# Legacy AudioTagHeader SoundRate values, in Hz (5.5 kHz is really 5512.5).
SOUND_RATES: Final = (5512, 11025, 22050, 44100)

_U16: Final = struct.Struct(">H")
_U32: Final = struct.Struct(">I")
_U8_U16: Final = struct.Struct(">BH")

_SEQUENCE_START_V: Final = VideoPacketType.SEQUENCE_START
_CODED_FRAMES_V: Final = VideoPacketType.CODED_FRAMES
_SEQUENCE_END_V: Final = VideoPacketType.SEQUENCE_END
_METADATA_V: Final = VideoPacketType.METADATA
_OTHER_V: Final = VideoPacketType.OTHER
_SEQUENCE_START_A: Final = AudioPacketType.SEQUENCE_START
_CODED_FRAMES_A: Final = AudioPacketType.CODED_FRAMES
_OTHER_A: Final = AudioPacketType.OTHER

# Legacy VideoCodecId: 7 is AVC; 12 is the HEVC id Chinese encoders and CDNs use.
_LEGACY_AVC: Final = 7
_LEGACY_HEVC: Final = 12
_LEGACY_VIDEO: Final = tuple(
    {_LEGACY_AVC: "h264", _LEGACY_HEVC: "hevc"}.get(i, f"unknown:{i}") for i in range(16)
)
# Legacy AVCPacketType (shared by the id-12 HEVC variant).
_AVC_PACKET_TYPES: Final = {0: _SEQUENCE_START_V, 1: _CODED_FRAMES_V, 2: _SEQUENCE_END_V}

_FRAME_KEY: Final = 1
_FRAME_COMMAND: Final = 5

# Enhanced VideoPacketType values.
_EX_SEQUENCE_START: Final = 0
_EX_CODED_FRAMES: Final = 1
_EX_SEQUENCE_END: Final = 2
_EX_CODED_FRAMES_X: Final = 3
_EX_METADATA: Final = 4
_EX_VIDEO_MULTITRACK: Final = 6
_EX_MOD_EX: Final = 7
# Enhanced AudioPacketType values that differ from video.
_EX_AUDIO_MULTITRACK: Final = 5
_MANY_TRACKS_MANY_CODECS: Final = 2


def _fourcc(text: str) -> int:
    return int.from_bytes(text.encode("ascii"), "big")


_VIDEO_FOURCCS: Final = {
    _fourcc("avc1"): "h264",
    _fourcc("hvc1"): "hevc",
    _fourcc("av01"): "av1",
    _fourcc("vp09"): "vp9",
    _fourcc("vp08"): "vp8",
}
# Only these carry an SI24 composition time in CodedFrames.
_CTS_CODECS: Final = frozenset(("h264", "hevc"))

_AUDIO_FOURCCS: Final = {
    _fourcc("mp4a"): "aac",
    _fourcc("Opus"): "opus",
    _fourcc(".mp3"): "mp3",
    _fourcc("fLaC"): "flac",
    _fourcc("ac-3"): "ac3",
    _fourcc("ec-3"): "eac3",
}

# Legacy SoundFormat: 2 is MP3, 14 is "MP3 8 kHz", 10 is AAC (the only one with a
# packet-type byte), 9 switches to the enhanced header.
_SOUND_AAC: Final = 10
_SOUND_EX_HEADER: Final = 9
_LEGACY_AUDIO: Final = tuple(
    {2: "mp3", 14: "mp3", _SOUND_AAC: "aac"}.get(i, f"unknown:{i}") for i in range(16)
)


def _view(data: bytes | memoryview) -> memoryview:
    view = data if isinstance(data, memoryview) else memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


def _unknown_fourcc(value: int) -> str:
    return "unknown:" + value.to_bytes(4, "big").decode("latin-1")


# --------------------------------------------------------------------------- video tags


def parse_video_tag(body: bytes | memoryview) -> VideoTag:
    """Parse a video message body (legacy or Enhanced RTMP) without copying its payload."""
    view = body if isinstance(body, memoryview) else memoryview(body)
    size = len(view)
    if size < 1:
        raise FlvError("video tag body is empty")
    first = view[0]
    if first & 0x80:
        return _parse_ex_video(view, first)
    frame_type = first >> 4
    codec_id = first & 0x0F
    codec = _LEGACY_VIDEO[codec_id]
    if frame_type == _FRAME_COMMAND:
        # Video info/command frame: a command byte, no picture.
        return VideoTag(codec, False, _OTHER_V, 0, view[1:])
    keyframe = frame_type == _FRAME_KEY
    if codec_id != _LEGACY_AVC and codec_id != _LEGACY_HEVC:
        return VideoTag(codec, keyframe, _CODED_FRAMES_V, 0, view[1:])
    if size < 5:
        # Some encoders end the sequence with a bare packet-type byte.
        if size >= 2 and view[1] == 2:
            return VideoTag(codec, keyframe, _SEQUENCE_END_V, 0, view[size:])
        raise FlvError(f"{codec} video tag needs a 5-byte header, body has {size} bytes")
    (word,) = _U32.unpack_from(view, 1)
    packet_type = _AVC_PACKET_TYPES.get(word >> 24, _OTHER_V)
    # CompositionTime is SI24: sign-extend the low 24 bits.
    composition_time = ((word & 0xFFFFFF) ^ 0x800000) - 0x800000
    return VideoTag(codec, keyframe, packet_type, composition_time, view[5:])


def _multitrack_codec(
    view: memoryview, pos: int, what: str, fourccs: dict[int, str]
) -> tuple[str, int]:
    """The codec of an Enhanced RTMP multitrack tag, and where its track data starts.

    One FourCC follows the multitrack type byte unless every track may have its own.
    """
    size = len(view)
    if pos >= size:
        raise FlvError(f"enhanced {what} multitrack tag truncated")
    many_codecs = view[pos] >> 4 == _MANY_TRACKS_MANY_CODECS
    pos += 1
    if many_codecs:
        return "unknown:multitrack", pos
    if pos + 4 > size:
        raise FlvError(f"enhanced {what} multitrack tag truncated in its FourCC")
    (fourcc,) = _U32.unpack_from(view, pos)
    return fourccs.get(fourcc) or _unknown_fourcc(fourcc), pos + 4


def _skip_mod_ex(view: memoryview, pos: int, what: str) -> tuple[int, int]:
    """Skip E-RTMP v2 ModEx blocks; return the real packet type and the new offset."""
    size = len(view)
    packet_type = _EX_MOD_EX
    # Each round consumes at least two bytes, so the loop ends with the body.
    while packet_type == _EX_MOD_EX:
        if pos >= size:
            raise FlvError(f"enhanced {what} tag truncated in a ModEx size")
        data_size = view[pos] + 1
        pos += 1
        if data_size == 256:
            if pos + 2 > size:
                raise FlvError(f"enhanced {what} tag truncated in a ModEx size")
            data_size = _U16.unpack_from(view, pos)[0] + 1
            pos += 2
        pos += data_size
        if pos >= size:
            raise FlvError(f"enhanced {what} tag truncated in a ModEx block")
        packet_type = view[pos] & 0x0F
        pos += 1
    return packet_type, pos


def _parse_ex_video(view: memoryview, first: int) -> VideoTag:
    size = len(view)
    frame_type = (first >> 4) & 0x07
    packet_type = first & 0x0F
    pos = 1
    if packet_type == _EX_MOD_EX:
        packet_type, pos = _skip_mod_ex(view, pos, "video")
    keyframe = frame_type == _FRAME_KEY
    if frame_type == _FRAME_COMMAND and packet_type != _EX_METADATA:
        # A command frame carries one command byte and neither FourCC nor picture.
        return VideoTag("unknown:command", False, _OTHER_V, 0, view[pos:])
    if packet_type == _EX_VIDEO_MULTITRACK:
        # Extra renditions; the default track comes as a plain message (OBS does so).
        codec, pos = _multitrack_codec(view, pos, "video", _VIDEO_FOURCCS)
        return VideoTag(codec, keyframe, _OTHER_V, 0, view[pos:])
    if pos + 4 > size:
        raise FlvError(f"enhanced video tag needs a FourCC, body has {size} bytes")
    (fourcc,) = _U32.unpack_from(view, pos)
    codec = _VIDEO_FOURCCS.get(fourcc) or _unknown_fourcc(fourcc)
    pos += 4
    if packet_type == _EX_CODED_FRAMES:
        composition_time = 0
        if codec in _CTS_CODECS:
            if pos + 3 > size:
                raise FlvError(f"enhanced {codec} coded frames truncated in composition time")
            # Reads the FourCC's last byte too; the mask drops it.
            (word,) = _U32.unpack_from(view, pos - 1)
            composition_time = ((word & 0xFFFFFF) ^ 0x800000) - 0x800000
            pos += 3
        return VideoTag(codec, keyframe, _CODED_FRAMES_V, composition_time, view[pos:])
    if packet_type == _EX_CODED_FRAMES_X:
        return VideoTag(codec, keyframe, _CODED_FRAMES_V, 0, view[pos:])
    if packet_type == _EX_SEQUENCE_START:
        return VideoTag(codec, keyframe, _SEQUENCE_START_V, 0, view[pos:])
    if packet_type == _EX_SEQUENCE_END:
        return VideoTag(codec, keyframe, _SEQUENCE_END_V, 0, view[pos:])
    if packet_type == _EX_METADATA:
        # The frame type bits mean nothing on metadata.
        return VideoTag(codec, False, _METADATA_V, 0, view[pos:])
    return VideoTag(codec, keyframe, _OTHER_V, 0, view[pos:])


# --------------------------------------------------------------------------- the common case


# What a legacy AVC/HEVC coded frame's first byte may be (key, inter, disposable or
# generated frame; codec 7 or 12), and whether it says keyframe.
_LEGACY_CODED_VIDEO: Final = {
    (frame_type << 4) | codec_id: frame_type == _FRAME_KEY
    for frame_type in (1, 2, 3, 4) for codec_id in (_LEGACY_AVC, _LEGACY_HEVC)
}
_AAC_CODED: Final = 1
_TAG_AUDIO: Final = 8


def coded_frame(type_id: int, body: bytes) -> tuple[bool, int, memoryview] | None:
    """``(keyframe, composition_time, data)`` of a plain coded frame, else None.

    The one kind of tag an encoder sends all stream long (a legacy AVC/HEVC coded
    video frame, or a raw AAC frame: codecs HLS carries; ``type_id`` 8 audio, 9 video) in one step,
    with no tag object; None for every other body, which parse_video_tag or
    parse_audio_tag then reads (and judges). Agrees with them wherever it answers.
    """
    if type_id == _TAG_AUDIO:
        if len(body) >= 2 and body[0] >> 4 == _SOUND_AAC and body[1] == _AAC_CODED:
            return True, 0, memoryview(body)[2:]
        return None
    if len(body) < 5 or body[1] != 1:
        return None
    keyframe = _LEGACY_CODED_VIDEO.get(body[0])
    if keyframe is None:
        return None
    word = (body[2] << 16) | (body[3] << 8) | body[4]
    return keyframe, (word ^ 0x800000) - 0x800000, memoryview(body)[5:]


# --------------------------------------------------------------------------- audio tags


def parse_audio_tag(body: bytes | memoryview) -> AudioTag:
    """Parse an audio message body (legacy or Enhanced RTMP) without copying its payload."""
    view = body if isinstance(body, memoryview) else memoryview(body)
    if len(view) < 1:
        raise FlvError("audio tag body is empty")
    first = view[0]
    sound_format = first >> 4
    if sound_format == _SOUND_EX_HEADER:
        return _parse_ex_audio(view, first)
    rate = (first >> 2) & 0x03
    sample_size = (first >> 1) & 0x01
    stereo = bool(first & 0x01)
    if sound_format == _SOUND_AAC:
        if len(view) < 2:
            raise FlvError("AAC audio tag needs a packet-type byte, body has 1 byte")
        aac_type = view[1]
        packet_type = (
            _SEQUENCE_START_A if aac_type == 0 else _CODED_FRAMES_A if aac_type == 1 else _OTHER_A
        )
        return AudioTag("aac", packet_type, view[2:], rate, sample_size, stereo)
    return AudioTag(
        _LEGACY_AUDIO[sound_format], _CODED_FRAMES_A, view[1:], rate, sample_size, stereo
    )


def _parse_ex_audio(view: memoryview, first: int) -> AudioTag:
    size = len(view)
    packet_type = first & 0x0F
    pos = 1
    if packet_type == _EX_MOD_EX:
        packet_type, pos = _skip_mod_ex(view, pos, "audio")
    if packet_type == _EX_AUDIO_MULTITRACK:
        codec, pos = _multitrack_codec(view, pos, "audio", _AUDIO_FOURCCS)
        return AudioTag(codec, _OTHER_A, view[pos:], 0, 0, False)
    if pos + 4 > size:
        raise FlvError(f"enhanced audio tag needs a FourCC, body has {size} bytes")
    (fourcc,) = _U32.unpack_from(view, pos)
    codec = _AUDIO_FOURCCS.get(fourcc) or _unknown_fourcc(fourcc)
    pos += 4
    if packet_type == _EX_SEQUENCE_START:
        kind = _SEQUENCE_START_A
    elif packet_type == _EX_CODED_FRAMES:
        kind = _CODED_FRAMES_A
    else:
        kind = _OTHER_A
    return AudioTag(codec, kind, view[pos:], 0, 0, False)


# --------------------------------------------------------------------------- NAL units


def iter_nal_units(data: bytes | memoryview, nal_length_size: int) -> Iterator[memoryview]:
    """Split length-prefixed NAL units (AVCC/HVCC layout) into views.

    Empty units are skipped: they carry nothing and would become bare start codes.
    A length running past the end raises FlvError when iteration reaches it.
    """
    if nal_length_size not in (1, 2, 3, 4):
        raise FlvError(f"NAL length size must be 1, 2, 3 or 4, not {nal_length_size}")
    return _iter_nal_units(_view(data), nal_length_size)


def _iter_nal_units(view: memoryview, length_size: int) -> Iterator[memoryview]:
    end = len(view)
    pos = 0
    reader = {1: struct.Struct(">B"), 2: _U16, 4: _U32}.get(length_size)
    while pos < end:
        if pos + length_size > end:
            raise FlvError(f"NAL unit length prefix truncated at offset {pos}")
        if reader is not None:
            (size,) = reader.unpack_from(view, pos)
        else:
            high, low = _U8_U16.unpack_from(view, pos)
            size = (high << 16) | low
        pos += length_size
        if pos + size > end:
            raise FlvError(
                f"NAL unit of {size} bytes at offset {pos} runs past the end ({end} bytes)"
            )
        if size:
            yield view[pos : pos + size]
        pos += size


# --------------------------------------------------------------------------- bit reading


class _BitReader:
    """MSB-first bit reader over a small RBSP, for SPS fields."""

    __slots__ = ("_bits", "_pos", "_value")

    def __init__(self, data: bytes) -> None:
        self._value = int.from_bytes(data, "big")
        self._bits = len(data) * 8
        self._pos = 0

    def u(self, count: int) -> int:
        end = self._pos + count
        if end > self._bits:
            raise FlvError("bitstream truncated")
        self._pos = end
        return (self._value >> (self._bits - end)) & ((1 << count) - 1)

    def skip(self, count: int) -> None:
        end = self._pos + count
        if end > self._bits:
            raise FlvError("bitstream truncated")
        self._pos = end

    def ue(self) -> int:
        """Unsigned exp-Golomb: N zero bits, a one, then N bits."""
        rest = self._bits - self._pos
        tail = self._value & ((1 << rest) - 1) if rest > 0 else 0
        if not tail:
            raise FlvError("bitstream truncated in an exp-Golomb code")
        zeros = rest - tail.bit_length()
        # Every syntax element we read fits in 32 bits.
        if zeros > 31:
            raise FlvError("exp-Golomb code longer than 32 bits")
        self._pos += zeros
        return self.u(zeros + 1) - 1

    def se(self) -> int:
        """Signed exp-Golomb: 1, -1, 2, -2, ... mapped from 1, 2, 3, 4, ..."""
        code = self.ue()
        return (code + 1) >> 1 if code & 1 else -(code >> 1)


def _rbsp(nal: bytes) -> bytes:
    """Drop emulation-prevention bytes: every 00 00 03 becomes 00 00."""
    # replace() scans left to right without overlap, which is exactly the rule: the
    # zero count restarts after each removed 03.
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


def _crop_units(chroma_format_idc: int, separate_planes: bool) -> tuple[int, int]:
    """SubWidthC and SubHeightC for a chroma format (1, 1 for monochrome or 4:4:4)."""
    if separate_planes or chroma_format_idc in (0, 3):
        return 1, 1
    if chroma_format_idc == 2:
        return 2, 1
    return 2, 2


# --------------------------------------------------------------------------- AVC


# profile_idc values whose SPS carries chroma format, bit depths and scaling lists.
_AVC_HIGH_PROFILES: Final = frozenset(
    (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135)
)


def parse_avc_config(avcc: bytes | memoryview) -> AvcConfig:
    """Parse an AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1)."""
    view = _view(avcc)
    size = len(view)
    if size < 7:
        raise FlvError(f"avcC is {size} bytes, the fixed part alone is 7")
    version, profile, compatibility, level, length_byte, sps_count = view[0:6]
    if version != 1:
        raise FlvError(f"avcC configuration version is {version}, expected 1")
    pos = 6
    sps, pos = _parameter_sets(view, pos, sps_count & 0x1F, "SPS")
    if pos >= size:
        raise FlvError("avcC truncated before the PPS count")
    pps, pos = _parameter_sets(view, pos + 1, view[pos], "PPS")
    width = height = 0
    if sps:
        width, height = _avc_picture_size(sps[0])
    return AvcConfig(
        profile=profile,
        compatibility=compatibility,
        level=level,
        nal_length_size=(length_byte & 0x03) + 1,
        sps=sps,
        pps=pps,
        width=width,
        height=height,
    )


def _parameter_sets(
    view: memoryview, pos: int, count: int, what: str
) -> tuple[tuple[bytes, ...], int]:
    """Read ``count`` u16-length-prefixed NAL units starting at ``pos``."""
    size = len(view)
    units = []
    for _ in range(count):
        if pos + 2 > size:
            raise FlvError(f"configuration record truncated in a {what} length")
        (length,) = _U16.unpack_from(view, pos)
        pos += 2
        if pos + length > size:
            raise FlvError(f"configuration record truncated in a {length}-byte {what}")
        units.append(bytes(view[pos : pos + length]))
        pos += length
    return tuple(units), pos


def _skip_scaling_list(reader: _BitReader, size: int) -> None:
    last = next_scale = 8
    for _ in range(size):
        if next_scale:
            next_scale = (last + reader.se() + 256) % 256
            last = next_scale or last


def _avc_picture_size(sps: bytes) -> tuple[int, int]:
    """Display width and height from an H.264 SPS (ITU-T H.264 7.3.2.1.1)."""
    if len(sps) < 4 or sps[0] & 0x1F != 7:
        raise FlvError("AVC SPS is too short or not an SPS NAL unit")
    reader = _BitReader(_rbsp(sps[1:]))
    profile_idc = reader.u(8)
    reader.skip(16)  # constraint flags, level_idc
    reader.ue()  # seq_parameter_set_id
    chroma_format_idc = 1
    separate_planes = False
    if profile_idc in _AVC_HIGH_PROFILES:
        chroma_format_idc = reader.ue()
        if chroma_format_idc > 3:
            raise FlvError(f"AVC SPS chroma_format_idc {chroma_format_idc} is invalid")
        if chroma_format_idc == 3:
            separate_planes = bool(reader.u(1))
        reader.ue()  # bit_depth_luma_minus8
        reader.ue()  # bit_depth_chroma_minus8
        reader.skip(1)  # qpprime_y_zero_transform_bypass_flag
        if reader.u(1):  # seq_scaling_matrix_present_flag
            for index in range(12 if chroma_format_idc == 3 else 8):
                if reader.u(1):
                    _skip_scaling_list(reader, 16 if index < 6 else 64)
    reader.ue()  # log2_max_frame_num_minus4
    poc_type = reader.ue()
    if poc_type == 0:
        reader.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif poc_type == 1:
        reader.skip(1)  # delta_pic_order_always_zero_flag
        reader.se()  # offset_for_non_ref_pic
        reader.se()  # offset_for_top_to_bottom_field
        cycle = reader.ue()
        if cycle > 255:
            raise FlvError(f"AVC SPS has {cycle} POC cycle entries, at most 255 are valid")
        for _ in range(cycle):
            reader.se()
    elif poc_type != 2:
        raise FlvError(f"AVC SPS pic_order_cnt_type {poc_type} is invalid")
    reader.ue()  # max_num_ref_frames
    reader.skip(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs = reader.ue() + 1
    height_units = reader.ue() + 1
    frame_mbs_only = reader.u(1)
    if not frame_mbs_only:
        reader.skip(1)  # mb_adaptive_frame_field_flag
    reader.skip(1)  # direct_8x8_inference_flag
    width = width_mbs * 16
    height = (2 - frame_mbs_only) * height_units * 16
    if reader.u(1):  # frame_cropping_flag
        left, right, top, bottom = reader.ue(), reader.ue(), reader.ue(), reader.ue()
        sub_width, sub_height = _crop_units(chroma_format_idc, separate_planes)
        width -= sub_width * (left + right)
        height -= sub_height * (2 - frame_mbs_only) * (top + bottom)
    if width <= 0 or height <= 0:
        raise FlvError(f"AVC SPS crops the picture to {width}x{height}")
    return width, height


# --------------------------------------------------------------------------- HEVC

_HEVC_VPS: Final = 32
_HEVC_SPS: Final = 33
_HEVC_PPS: Final = 34


def parse_hevc_config(hvcc: bytes | memoryview) -> HevcConfig:
    """Parse an HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 8.3.3.1)."""
    view = _view(hvcc)
    size = len(view)
    if size < 23:
        raise FlvError(f"hvcC is {size} bytes, the fixed part alone is 23")
    if view[0] == 0 and view[1] == 0 and view[2] <= 1:
        raise FlvError("HEVC configuration is an Annex B byte stream, not an hvcC record")
    nal_length_size = (view[21] & 0x03) + 1
    arrays = view[22]
    pos = 23
    found: dict[int, list[bytes]] = {_HEVC_VPS: [], _HEVC_SPS: [], _HEVC_PPS: []}
    for _ in range(arrays):
        if pos + 3 > size:
            raise FlvError("hvcC truncated in a NAL unit array header")
        nal_type = view[pos] & 0x3F
        (count,) = _U16.unpack_from(view, pos + 1)
        units, pos = _parameter_sets(view, pos + 3, count, f"NAL type {nal_type}")
        if nal_type in found:
            found[nal_type].extend(units)
    width = height = 0
    for sps in found[_HEVC_SPS]:
        # The base layer (nuh_layer_id 0) defines the picture a player shows.
        if len(sps) >= 2 and ((sps[0] & 0x01) << 5 | sps[1] >> 3) == 0:
            width, height = _hevc_picture_size(sps)
            break
    return HevcConfig(
        nal_length_size=nal_length_size,
        vps=tuple(found[_HEVC_VPS]),
        sps=tuple(found[_HEVC_SPS]),
        pps=tuple(found[_HEVC_PPS]),
        width=width,
        height=height,
    )


def _hevc_picture_size(sps: bytes) -> tuple[int, int]:
    """Display width and height from an H.265 SPS (ITU-T H.265 7.3.2.2.1)."""
    if len(sps) < 3 or (sps[0] >> 1) & 0x3F != _HEVC_SPS:
        raise FlvError("HEVC SPS is too short or not an SPS NAL unit")
    reader = _BitReader(_rbsp(sps[2:]))
    reader.skip(4)  # sps_video_parameter_set_id
    sub_layers = reader.u(3)  # sps_max_sub_layers_minus1
    if sub_layers > 6:
        raise FlvError(f"HEVC SPS sps_max_sub_layers_minus1 {sub_layers} is invalid")
    reader.skip(1)  # sps_temporal_id_nesting_flag
    # profile_tier_level: general profile (88 bits) and level (8 bits).
    reader.skip(96)
    present = [(reader.u(1), reader.u(1)) for _ in range(sub_layers)]
    if sub_layers:
        reader.skip(2 * (8 - sub_layers))  # reserved_zero_2bits
    for profile_present, level_present in present:
        reader.skip(88 * profile_present + 8 * level_present)
    reader.ue()  # sps_seq_parameter_set_id
    chroma_format_idc = reader.ue()
    if chroma_format_idc > 3:
        raise FlvError(f"HEVC SPS chroma_format_idc {chroma_format_idc} is invalid")
    separate_planes = bool(reader.u(1)) if chroma_format_idc == 3 else False
    width = reader.ue()
    height = reader.ue()
    if reader.u(1):  # conformance_window_flag
        left, right, top, bottom = reader.ue(), reader.ue(), reader.ue(), reader.ue()
        sub_width, sub_height = _crop_units(chroma_format_idc, separate_planes)
        width -= sub_width * (left + right)
        height -= sub_height * (top + bottom)
    if width <= 0 or height <= 0:
        raise FlvError(f"HEVC SPS describes a {width}x{height} picture")
    return width, height
