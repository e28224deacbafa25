"""MediaPackets → MPEG-TS bytes with PyAV; the only module of the package that imports av.

Remux only, never an encoder. FFmpeg does the byte work: its automatic
bitstream filters (h264_mp4toannexb / hevc_mp4toannexb) turn AVCC length
prefixes into Annex B and put SPS/PPS (VPS too for HEVC) in front of every
IDR, and the mpegts muxer writes an ADTS header per AAC frame from the
AudioSpecificConfig. Both need the codec config on the output stream.

PyAV 18 offers no way to put extradata on a codec-less mux stream, and an
``add_stream(name)`` stream would open an encoder. So ``TrackSet`` wraps the
configs in a tiny in-memory FLV (exactly the sequence-header tags an RTMP
publisher sent) and lets FFmpeg's FLV demuxer build streams from them once
per configuration. Those are copied into a never-started "seed" muxer and the
demuxer is closed (it holds ~2 MB); each segment's muxer copies the seed's
streams with ``add_stream_from_template``, whose codec context is never opened.

One ``TsMuxer`` per segment: every segment starts with PAT/PMT and a
self-contained IDR, and a muxer never holds more than one segment.
"""

from __future__ import annotations

import io
import logging
import struct
from collections.abc import Iterator
from fractions import Fraction

import av
import av.logging
from av.container import InputContainer, OutputContainer
from av.stream import Stream

from .aac import AacConfigError, parse_audio_specific_config
from .media import TrackConfig, TrackKind

log = logging.getLogger("hls.muxer")

VIDEO_CODECS = frozenset({"h264", "hevc"})
AUDIO_CODECS = frozenset({"aac"})

MILLISECOND = Fraction(1, 1000)
# Private options of FFmpeg's mpegts muxer, set for every segment:
# - pcr_period: a fixed PCR interval (ms). Without it the muxer guesses one from
#   the audio frame size, which a template stream does not carry, and warns.
# - flush_packets: 0 lets FFmpeg fill its 32 kB I/O buffer before calling into
#   Python (one call per ~6 frames instead of one per frame: 15 % of the HLS
#   path's CPU, measured). LL-HLS parts, byte ranges of the open segment, need
#   the bytes after every packet: ``TsMuxer(flush_each_packet=True)``.
_TS_OPTIONS = {"pcr_period": "40", "flush_packets": "0"}

# FFmpeg's mpegts muxer refuses a shorter AAC frame ("AAC packet too short"), and a
# refused write still advances its last dts, so the next frame is refused as well.
# Such frames (a 3-byte FLV audio tag carries a 1-byte frame) are refused here instead.
MIN_AAC_FRAME_BYTES = 2

_FLV_HEADER_AUDIO = 0x04
_FLV_HEADER_VIDEO = 0x01
_FLV_TAG_AUDIO = 8
_FLV_TAG_VIDEO = 9
# Legacy AVC sequence header: keyframe + codec id 7, AVCPacketType 0, composition time 0.
_FLV_AVC_SEQUENCE_HEADER = bytes((0x17, 0x00, 0x00, 0x00, 0x00))
# Enhanced RTMP: IsExHeader | keyframe | PacketTypeSequenceStart, then the FourCC.
_FLV_HEVC_SEQUENCE_HEADER = bytes((0x90,)) + b"hvc1"
# AAC, 44 kHz / 16 bit / stereo flags (FLV's fixed value for AAC), AACPacketType 0.
_FLV_AAC_SEQUENCE_HEADER = bytes((0xAF, 0x00))


class MuxerError(Exception):
    """FFmpeg refused our track setup (not a bad packet: those are logged and dropped)."""


def enable_libav_warnings() -> None:
    """Route FFmpeg's warnings and errors to `logging` ("libav.*" loggers).

    PyAV silences FFmpeg by default, which hides why a muxer refused a packet.
    A level someone else already chose is left alone.
    """
    if av.logging.get_level() is None:
        av.logging.set_level(av.logging.WARNING)


def _flv_tag(tag_type: int, body: bytes) -> bytes:
    # type, 24-bit size, timestamp 0 (24 + 8 bits), stream id 0 (24 bits)
    header = bytes((tag_type,)) + len(body).to_bytes(3, "big") + bytes(7)
    return header + body + struct.pack(">I", len(header) + len(body))


def _sequence_header_flv(video: TrackConfig | None, audio: TrackConfig | None) -> bytes:
    flags = (_FLV_HEADER_VIDEO if video else 0) | (_FLV_HEADER_AUDIO if audio else 0)
    out = [b"FLV\x01", bytes((flags,)), struct.pack(">II", 9, 0)]
    if video is not None:
        prefix = _FLV_AVC_SEQUENCE_HEADER if video.codec == "h264" else _FLV_HEVC_SEQUENCE_HEADER
        out.append(_flv_tag(_FLV_TAG_VIDEO, prefix + video.extradata))
    if audio is not None:
        out.append(_flv_tag(_FLV_TAG_AUDIO, _FLV_AAC_SEQUENCE_HEADER + audio.extradata))
    return b"".join(out)


def _check_video(config: TrackConfig) -> str | None:
    """Why the muxer cannot carry this video track, or None if it can."""
    if config.kind != TrackKind.VIDEO:
        return f"a {config.kind!r} config was given as the video track"
    if config.codec not in VIDEO_CODECS:
        return f"video codec {config.codec!r} is not supported in HLS/TS here"
    # avcC and hvcC both start with configurationVersion = 1.
    if len(config.extradata) < 7 or config.extradata[0] != 1:
        return f"{config.codec} sequence header is missing or not an avcC/hvcC record"
    return None


def _check_audio(config: TrackConfig) -> str | None:
    """Why the muxer cannot carry this audio track, or None if it can."""
    if config.kind != TrackKind.AUDIO:
        return f"a {config.kind!r} config was given as the audio track"
    if config.codec not in AUDIO_CODECS:
        return f"audio codec {config.codec!r} is not supported in HLS/TS here"
    try:
        parse_audio_specific_config(config.extradata)
    except AacConfigError as exc:
        return f"AAC AudioSpecificConfig is unusable: {exc}"
    return None


class TrackSet:
    """The tracks one configuration declares, with FFmpeg stream templates.

    Unsupported or broken configs are dropped here with a warning, so a publish
    with, say, MP3 audio still gets video-only segments. The templates are built at
    once (FFmpeg's verdict on the configs comes when the publish starts) and may be
    let go (`close`: ~0.14 MB, measured) while no segment is being muxed; they are
    built again (~0.5 ms) when one is.
    """

    __slots__ = ("_seed", "_templates", "audio", "kinds", "nal_length_size", "video")

    def __init__(
        self, video: TrackConfig | None, audio: TrackConfig | None, *, label: str = ""
    ) -> None:
        enable_libav_warnings()
        if video is not None and (reason := _check_video(video)) is not None:
            log.warning("%sskipping video track: %s", _prefix(label), reason)
            video = None
        if audio is not None and (reason := _check_audio(audio)) is not None:
            log.warning("%sskipping audio track: %s", _prefix(label), reason)
            audio = None
        self.video = video
        self.audio = audio
        self.nal_length_size = _nal_length_size(video) if video is not None else 4
        # Declared track kinds, video first (plain strings: compared on every packet).
        self.kinds: tuple[str, ...] = tuple(
            str(config.kind) for config in (video, audio) if config is not None
        )
        self._seed: OutputContainer | None = None
        self._templates: dict[str, Stream] = {}
        if video is not None or audio is not None:
            self._seed = self._build_seed()

    def _build_seed(self) -> OutputContainer:
        video, audio = self.video, self.audio
        flv = _sequence_header_flv(video, audio)
        # Probing a header-only FLV always complains (no frames to measure); that is expected.
        with av.logging.Capture() as probe_logs:
            try:
                probe = av.open(io.BytesIO(flv), format="flv")
            except av.FFmpegError as exc:
                raise MuxerError(f"FFmpeg rejected the track configs: {exc}") from exc
        for _level, name, message in probe_logs:
            log.debug("template probe [%s] %s", name, message.strip())
        try:
            return self._seed_streams(probe, video, audio)
        finally:
            # An open FLV demuxer holds about 2 MB (measured); the seed is ~0.2 MB.
            probe.close()

    def _seed_streams(
        self, probe: InputContainer, video: TrackConfig | None, audio: TrackConfig | None
    ) -> OutputContainer:
        """Copy the probed streams into a never-started muxer whose streams are the templates."""
        probed = {s.type: s for s in probe.streams if s.type in (TrackKind.VIDEO, TrackKind.AUDIO)}
        seed = av.open(_DiscardSink(), "w", format="mpegts")
        assert isinstance(seed, OutputContainer)
        for config in (video, audio):
            if config is None:
                continue
            template = probed.get(config.kind)
            name = template.codec_context.name if template is not None else None
            if template is None or name != config.codec:
                seed.close()
                raise MuxerError(
                    f"FFmpeg read the {config.kind} config as {name}, not {config.codec}"
                )
            self._templates[config.kind] = seed.add_stream_from_template(template, opaque=True)
        return seed

    def refusal(self, kind: str, data: bytes | memoryview) -> str | None:
        """Why FFmpeg would refuse this frame (found by feeding it such frames), or None.
        Asked when a frame arrives: a segment muxed later holds only frames that pass."""
        if kind == TrackKind.AUDIO:
            if len(data) < MIN_AAC_FRAME_BYTES:
                return f"AAC frame of {len(data)} bytes (FFmpeg needs {MIN_AAC_FRAME_BYTES})"
            return None
        return _avcc_problem(data, self.nal_length_size)

    def templates(self) -> Iterator[tuple[TrackConfig, Stream]]:
        """Each track's config and template stream (built again if they were let go)."""
        if self._seed is None and self.kinds:
            self._seed = self._build_seed()
        if self.video is not None:
            yield self.video, self._templates[TrackKind.VIDEO]
        if self.audio is not None:
            yield self.audio, self._templates[TrackKind.AUDIO]

    def close(self) -> None:
        """Let go of the templates (built again if `templates()` is asked for)."""
        if self._seed is not None:
            self._seed.close()
            self._seed = None
        self._templates = {}

    def __del__(self) -> None:
        # Segments muxed just in time keep their TrackSet: the last one let go closes it
        # here (by reference counting), which breaks the seed's cycles with its streams.
        if getattr(self, "_seed", None) is not None:
            self.close()


class _DiscardSink:
    """The output of the seed muxer, which never writes: it only holds template streams."""

    def write(self, data: bytes) -> int:
        return len(data)


class _SegmentSink:
    """Where FFmpeg writes one segment: the chunks it flushes, joined once at the end.

    PyAV hands each flush over as a new bytes object, so keeping the chunks avoids
    the repeated regrow-and-copy a BytesIO does for a segment of a megabyte or more.
    No seek(): the TS muxer never needs one, and PyAV then opens the sink as a stream.
    """

    __slots__ = ("_chunks", "size")

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> int:
        self._chunks.append(data)
        self.size += len(data)
        return len(data)

    def read(self, start: int, end: int | None) -> bytes:
        return b"".join(self._chunks)[start:end]

    def take(self) -> bytearray:
        """Everything written, as one mutable buffer (the caller restamps it in place)."""
        data = bytearray().join(self._chunks)
        self._chunks = []
        return data


class TsMuxer:
    """One MPEG-TS segment being written into memory.

    Timestamps are milliseconds and go through unchanged (the muxer converts
    to 90 kHz); the caller owns the timeline. With ``flush_each_packet`` the
    bytes written so far can be read while the segment is open
    (``bytes_written`` / ``read``): FFmpeg's interleaver holds back at most
    about one frame of the other track. Without it they arrive in 32 kB steps.
    """

    __slots__ = ("_buffer", "_container", "_data", "_label", "_streams", "_tracks", "errors",
                 "packets")

    def __init__(self, tracks: TrackSet, *, label: str = "", flush_each_packet: bool = False
                 ) -> None:
        if not tracks.kinds:
            raise MuxerError("a segment needs at least one track")
        self._label = label
        self._buffer = _SegmentSink()
        self._data: bytearray | None = None
        self.packets = 0
        self.errors = 0
        self._tracks = tracks
        options = dict(_TS_OPTIONS, flush_packets="1" if flush_each_packet else "0")
        container = av.open(self._buffer, "w", format="mpegts", options=options)
        assert isinstance(container, OutputContainer)
        self._container = container
        self._streams: dict[str, Stream] = {}
        try:
            for config, template in tracks.templates():
                stream = container.add_stream_from_template(template, opaque=True)
                stream.time_base = MILLISECOND
                _apply_config(stream, config)
                self._streams[config.kind] = stream
        except (av.FFmpegError, ValueError, MuxerError) as exc:
            container.close()
            raise MuxerError(f"cannot declare tracks: {exc}") from exc

    def write(
        self,
        kind: str,
        dts: int,
        pts: int,
        keyframe: bool,
        data: bytes | memoryview,
        duration: int = 0,
        *,
        checked: bool = False,
    ) -> bool:
        """Mux one frame (ms timestamps). False if FFmpeg refused it; that is logged.
        `checked`: TrackSet.refusal already passed it."""
        stream = self._streams.get(kind)
        if stream is None or self._data is not None:
            return False
        if not checked:
            reason = self._tracks.refusal(kind, data)
            if reason is not None:
                self._refused(kind, dts, reason)
                return False
        packet = av.Packet(data)  # references `data`; the caller hands over immutable bytes
        packet.stream = stream
        packet.time_base = MILLISECOND
        packet.dts = dts
        packet.pts = pts
        if duration > 0:
            packet.duration = duration
        packet.is_keyframe = keyframe
        try:
            self._container.mux_one(packet)
        except av.FFmpegError as exc:
            self._refused(kind, dts, str(exc))
            return False
        self.packets += 1
        return True

    def _refused(self, kind: str, dts: int, reason: str) -> None:
        self.errors += 1
        log_refusal(self._label, kind, dts, reason, first=self.errors == 1)

    @property
    def bytes_written(self) -> int:
        """Bytes of TS output so far (whole TS packets, ending on a frame boundary)."""
        return len(self._data) if self._data is not None else self._buffer.size

    def read(self, start: int = 0, end: int | None = None) -> bytes:
        """A copy of output bytes [start:end), also while the segment is still open."""
        if self._data is not None:
            return bytes(self._data[start:end])
        return self._buffer.read(start, end)

    def close(self) -> bytearray:
        """Flush FFmpeg's queues, write the trailer and return the whole segment."""
        if self._data is None:
            try:
                self._container.close()
            except av.FFmpegError as exc:
                self.errors += 1
                log.warning("%smuxer failed to finish a segment: %s", _prefix(self._label), exc)
            self._data = self._buffer.take()
        return self._data


def log_refusal(label: str, kind: str, dts: int, reason: str, *, first: bool) -> None:
    """One line for a frame FFmpeg refuses (or would): the first of a segment is worth a
    warning; a broken feed repeats it."""
    log.log(logging.WARNING if first else logging.DEBUG,
            "%smuxer refused a packet on the %s track (dts %d ms): %s",
            _prefix(label), kind, dts, reason)


def _apply_config(stream: Stream, config: TrackConfig) -> None:
    """Set what the FLV template could not know (FLV's AAC flags always say 44.1 kHz stereo)."""
    ctx = stream.codec_context
    if config.kind == TrackKind.VIDEO:
        if config.width > 0 and config.height > 0:
            ctx.width = config.width
            ctx.height = config.height
        return
    asc = parse_audio_specific_config(config.extradata)
    ctx.sample_rate = config.sample_rate or asc.sample_rate
    channels = config.channels or asc.channels
    if 0 < channels <= 8:
        ctx.layout = f"{channels}c"  # FFmpeg's default layout for that many channels


def _nal_length_size(config: TrackConfig) -> int:
    """Bytes of each NAL unit's length prefix: lengthSizeMinusOne + 1 from avcC or hvcC."""
    offset = 4 if config.codec == "h264" else 21
    if len(config.extradata) <= offset:
        return 4
    return (config.extradata[offset] & 0x03) + 1


def _avcc_problem(data: bytes | memoryview, length_size: int) -> str | None:
    """Why FFmpeg's mp4toannexb filter would refuse this frame, or None.

    It refuses an empty frame, and length prefixes that do not tile the frame
    (a NAL unit running past the end, or a partial prefix left over).
    """
    size = len(data)
    if size == 0:
        return "empty video frame"
    position = 0
    while position < size:
        if size - position < length_size:
            return f"video frame ends in a partial NAL length prefix at byte {position}"
        nal_size = int.from_bytes(data[position:position + length_size], "big")
        position += length_size + nal_size
        if position > size:
            return f"a NAL unit of {nal_size} bytes runs past the end of a {size}-byte frame"
    return None


def _prefix(label: str) -> str:
    return f"[{label}] " if label else ""
