"""Fragmented MP4 (CMAF) for LL-HLS: an init section from the track configs, then
one movie fragment (moof + mdat) per part. Pure bytes work, no av.

Why our own writer and not PyAV's mp4 muxer: a part must be cut exactly where the
segmenter says (at the TS rendition's keyframe cuts and every part target), and
every frame of every stream pays for the muxer on the hot path. Here a frame
costs a few list appends (FLV already carries AVCC length-prefixed NAL units and
raw AAC frames, which is exactly what an mp4 sample is, so payloads go into the
mdat as they are), and a part costs a few struct.pack calls and one join.
benchmarks/cmafmux.py measures both (see benchmarks/README.md).

The boxes written (ISO/IEC 14496-12, -14, -15), as RFC 8216bis 3.1.2 asks:
- init: ftyp (compatible with iso6), moov with mvhd, one trak per track (tkhd and
  mdhd durations zero, empty sample tables) and mvex/trex.
- fragment: moof (mfhd, then per track traf: tfhd with default-base-is-moof,
  tfdt, trun with data offsets relative to the moof) and one mdat holding each
  track's samples in turn.

Timescales: video 90 kHz, audio its sample rate. Timestamps come in as output
milliseconds (the segmenter's timeline). AAC frames get the nominal frame
duration while their millisecond stamps agree with it, so audio plays without
the +-1 ms jitter that millisecond rounding puts into FLV timestamps.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Sequence

from .aac import parse_audio_specific_config
from .extensions import extensions_wanted
from .media import TrackConfig, TrackKind

VIDEO_TIMESCALE = 90_000
# Sample flags (ISO/IEC 14496-12 8.8.3.1): a sync sample depends on no other
# (sample_depends_on = 2); any other video sample depends on others (1) and is
# not a sync sample.
SYNC_SAMPLE_FLAGS = 0x0200_0000
NON_SYNC_SAMPLE_FLAGS = 0x0101_0000
# tfhd flags: default-sample-flags-present | default-base-is-moof.
_TFHD_DEFAULT_FLAGS = 0x00_0020
_TFHD_BASE_IS_MOOF = 0x02_0000
# trun flags: data-offset | duration | size (| flags | composition offset for video).
_TRUN_AUDIO = 0x000001 | 0x000100 | 0x000200
_TRUN_VIDEO = _TRUN_AUDIO | 0x000400 | 0x000800
# An AAC frame whose millisecond stamp is within this of where the previous frame
# ended (nominally) is placed there: the stamps are the frame clock rounded to ms.
AUDIO_SNAP_MS = 2.0
_UNITY_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
_LANGUAGE_UND = 0x55C4  # ISO 639-2 "und", packed as three 5-bit letters


def box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I4s", 8 + len(body), kind) + body


def full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return box(kind, struct.pack(">I", (version << 24) | flags), *payload)


class Fmp4Error(ValueError):
    """A track config the writer cannot describe (the TS rendition may still carry it)."""


class _Track:
    """One track's timescale and the samples of the fragment being built.

    A frame costs one tuple append here (it is on every stream's hot path); the
    conversion to ticks, the AAC clock and the durations are done once per fragment.
    """

    __slots__ = ("frame_ticks", "is_video", "last_dts", "last_duration", "next_tick",
                 "payload_bytes", "samples", "scale", "snap", "track_id")

    def __init__(self, track_id: int, timescale: int, is_video: bool, frame_ticks: int) -> None:
        self.track_id = track_id
        self.scale = timescale / 1000  # ticks per millisecond
        self.is_video = is_video
        # Nominal sample duration (ticks): the last sample's duration when the next
        # sample is not known yet, and the audio clock's step.
        self.frame_ticks = frame_ticks
        self.snap = AUDIO_SNAP_MS * self.scale
        self.last_duration = frame_ticks
        self.next_tick: int | None = None  # audio: where the previous frame ended
        self.last_dts: int | None = None  # video: the previous sample's decode time
        self.samples: list[tuple[float, float, bool, bytes | memoryview]] = []
        self.payload_bytes = 0

    def decode_times(self) -> list[int]:
        """The samples' decode times in ticks: video strictly increasing; audio on the
        AAC frame clock while the millisecond stamps agree with it (see AUDIO_SNAP_MS)."""
        scale = self.scale
        ticks = [round(dts * scale) for dts, _, _, _ in self.samples]
        if self.is_video:
            last = self.last_dts
            for index, tick in enumerate(ticks):
                if last is not None and tick <= last:
                    ticks[index] = tick = last + 1
                last = tick
            self.last_dts = last
            return ticks
        expected, snap, step = self.next_tick, self.snap, self.frame_ticks
        for index, tick in enumerate(ticks):
            if expected is not None and abs(tick - expected) <= snap:
                ticks[index] = tick = expected
            expected = tick + step
        self.next_tick = expected
        return ticks


class FragmentWriter:
    """The CMAF form of one track configuration: init bytes, then fragments on demand.

    `add()` remembers a sample; `fragment()` turns what was added since the last
    call into one moof + mdat. Durations come from the next sample's timestamp;
    the last sample of a track in a fragment gets `next_dts` when the caller
    knows it (the frame that made it cut), else the previous duration.
    """

    __slots__ = ("_sequence", "_tracks", "init", "pending_bytes")

    def __init__(self, video: TrackConfig | None, audio: TrackConfig | None) -> None:
        if video is None and audio is None:
            raise Fmp4Error("a fragment needs at least one track")
        self._tracks: dict[str, _Track] = {}
        traks: list[bytes] = []
        trexs: list[bytes] = []
        for config in (video, audio):
            if config is None:
                continue
            track_id = len(self._tracks) + 1
            if config.kind == TrackKind.VIDEO:
                track = _Track(track_id, VIDEO_TIMESCALE, True, VIDEO_TIMESCALE // 30)
                trak = _video_trak(track_id, config)
            else:
                asc = parse_audio_specific_config(config.extradata)
                rate = config.sample_rate or asc.sample_rate
                frame = asc.frame_length * rate // asc.core_sample_rate
                track = _Track(track_id, rate, False, frame)
                trak = _audio_trak(track_id, config, rate, asc.channels or config.channels)
            self._tracks[str(config.kind)] = track
            traks.append(trak)
            # Defaults: sample description 1, no default duration/size/flags.
            trexs.append(full_box(b"trex", 0, 0, struct.pack(">5I", track_id, 1, 0, 0, 0)))
        ftyp = box(b"ftyp", b"iso6", struct.pack(">I", 0), b"iso6mp41")
        mvhd = full_box(
            b"mvhd", 0, 0,
            struct.pack(">4I", 0, 0, 1000, 0),  # created, modified, timescale, duration 0
            struct.pack(">IH10x", 0x00010000, 0x0100),  # rate 1.0, volume 1.0, reserved
            _UNITY_MATRIX, bytes(24),  # pre_defined
            struct.pack(">I", len(self._tracks) + 1),  # next_track_ID
        )
        self.init = ftyp + box(b"moov", mvhd, *traks, box(b"mvex", *trexs))
        self._sequence = 0
        self.pending_bytes = 0  # payload added since the last fragment (read per frame)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self._tracks)

    @property
    def pending(self) -> bool:
        return any(track.samples for track in self._tracks.values())

    def add(self, kind: str, dts: float, pts: float, keyframe: bool,
            data: bytes | memoryview) -> None:
        """Remember one frame (output milliseconds, pts >= dts) for the next fragment."""
        track = self._tracks[kind]
        track.samples.append((dts, pts, keyframe, data))
        size = len(data)
        track.payload_bytes += size
        self.pending_bytes += size

    def fragment(self, next_dts: dict[str, float] | None = None) -> bytes | None:
        """One moof + mdat of everything added since the last fragment (None if nothing).

        `next_dts` maps a track kind to the decode time (ms) of its next sample,
        which ends the last sample of that track here.
        """
        tracks = [track for track in self._tracks.values() if track.samples]
        if not tracks:
            return None
        self._sequence += 1
        ends = {self._tracks[k].track_id: round(ms * self._tracks[k].scale)
                for k, ms in (next_dts or {}).items() if k in self._tracks}
        self.pending_bytes = 0
        return build_fragment(self._sequence, tracks, ends)


def pure_build_fragment(sequence: int, tracks: list[_Track], ends: dict[int, int]) -> bytes:
    """moof (sequence number `sequence`) + mdat of the samples of `tracks` (each with
    some), which are taken; `ends`: track id -> the tick its last sample ends at, where
    known. hls._fmp4 is its compiled twin."""
    # The moof's size depends only on sample counts; data offsets need it first.
    moof_size = 8 + 16 + sum(_traf_size(track) for track in tracks)
    offset = moof_size + 8
    trafs = []
    payloads: list[bytes | memoryview] = []
    for track in tracks:
        trafs.append(_traf(track, offset, ends.get(track.track_id)))
        offset += track.payload_bytes
        payloads.extend(sample[3] for sample in track.samples)
        track.samples = []
        track.payload_bytes = 0
    mfhd = full_box(b"mfhd", 0, 0, struct.pack(">I", sequence))
    moof = box(b"moof", mfhd, *trafs)
    mdat_header = struct.pack(">I4s", 8 + offset - moof_size - 8, b"mdat")
    return b"".join((moof, mdat_header, *payloads))


def _traf(track: _Track, data_offset: int, end: int | None) -> bytes:
    dts = track.decode_times()
    count = len(dts)
    durations = [b - a for a, b in itertools.pairwise(dts)]
    if end is not None and end > dts[-1]:
        track.last_duration = end - dts[-1]
    elif durations:
        track.last_duration = durations[-1]
    durations.append(track.last_duration)
    samples = track.samples
    if track.is_video:
        tfhd = full_box(b"tfhd", 0, _TFHD_BASE_IS_MOOF, struct.pack(">I", track.track_id))
        scale = track.scale
        flat: list[int] = []
        for duration, tick, (_, pts, sync, data) in zip(durations, dts, samples, strict=True):
            flat += (duration, len(data),
                     SYNC_SAMPLE_FLAGS if sync else NON_SYNC_SAMPLE_FLAGS,
                     max(round(pts * scale) - tick, 0))
        trun = full_box(b"trun", 0, _TRUN_VIDEO, struct.pack(">Ii", count, data_offset),
                        struct.pack(f">{4 * count}I", *flat))
    else:
        tfhd = full_box(b"tfhd", 0, _TFHD_BASE_IS_MOOF | _TFHD_DEFAULT_FLAGS,
                        struct.pack(">II", track.track_id, SYNC_SAMPLE_FLAGS))
        flat = []
        for duration, sample in zip(durations, samples, strict=True):
            flat += (duration, len(sample[3]))
        trun = full_box(b"trun", 0, _TRUN_AUDIO, struct.pack(">Ii", count, data_offset),
                        struct.pack(f">{2 * count}I", *flat))
    tfdt = full_box(b"tfdt", 1, 0, struct.pack(">Q", dts[0]))
    return box(b"traf", tfhd, tfdt, trun)


def _traf_size(track: _Track) -> int:
    count = len(track.samples)
    tfhd = 16 if track.is_video else 20
    tfdt = 20
    trun = 20 + count * (16 if track.is_video else 8)
    return 8 + tfhd + tfdt + trun


def _video_trak(track_id: int, config: TrackConfig) -> bytes:
    if config.codec == "h264":
        entry = _visual_entry(b"avc1", config, box(b"avcC", config.extradata))
    elif config.codec == "hevc":
        entry = _visual_entry(b"hvc1", config, box(b"hvcC", config.extradata))
    else:
        raise Fmp4Error(f"no fMP4 sample entry for video codec {config.codec!r}")
    vmhd = full_box(b"vmhd", 0, 1, bytes(8))
    return _trak(track_id, VIDEO_TIMESCALE, b"vide", b"VideoHandler", vmhd, entry,
                 width=config.width, height=config.height, volume=0)


def _audio_trak(track_id: int, config: TrackConfig, rate: int, channels: int) -> bytes:
    if config.codec != "aac":
        raise Fmp4Error(f"no fMP4 sample entry for audio codec {config.codec!r}")
    smhd = full_box(b"smhd", 0, 0, bytes(4))
    entry = box(
        b"mp4a",
        bytes(6), struct.pack(">H", 1),  # reserved, data_reference_index
        bytes(8), struct.pack(">HH", min(max(channels, 1), 0xFFFF), 16),  # channels, 16 bit
        bytes(4),  # pre_defined, reserved
        struct.pack(">I", (rate << 16) if rate < 0x10000 else 0),  # 16.16 (0: too high to say)
        _esds(config.extradata),
    )
    return _trak(track_id, rate, b"soun", b"SoundHandler", smhd, entry, volume=0x0100)


def _visual_entry(kind: bytes, config: TrackConfig, codec_box: bytes) -> bytes:
    return box(
        kind,
        bytes(6), struct.pack(">H", 1),  # reserved, data_reference_index
        bytes(16),  # pre_defined, reserved
        struct.pack(">HH", config.width & 0xFFFF, config.height & 0xFFFF),
        struct.pack(">II", 0x00480000, 0x00480000),  # 72 dpi
        bytes(4), struct.pack(">H", 1),  # reserved, frame_count
        bytes(32),  # compressorname
        struct.pack(">Hh", 0x0018, -1),  # depth, pre_defined
        codec_box,
    )


def _trak(track_id: int, timescale: int, handler: bytes, name: bytes, media_header: bytes,
          sample_entry: bytes, *, width: int = 0, height: int = 0, volume: int) -> bytes:
    tkhd = full_box(
        b"tkhd", 0, 0x3,  # enabled, in movie
        struct.pack(">5I", 0, 0, track_id, 0, 0),  # created, modified, id, reserved, duration 0
        bytes(8), struct.pack(">hhH2x", 0, 0, volume),  # layer, alternate group, volume
        _UNITY_MATRIX, struct.pack(">II", (width & 0xFFFF) << 16, (height & 0xFFFF) << 16),
    )
    mdhd = full_box(b"mdhd", 0, 0, struct.pack(">4IHH", 0, 0, timescale, 0, _LANGUAGE_UND, 0))
    hdlr = full_box(b"hdlr", 0, 0, struct.pack(">I4s12x", 0, handler), name + b"\0")
    dinf = box(b"dinf", full_box(b"dref", 0, 0, struct.pack(">I", 1), full_box(b"url ", 0, 1)))
    stbl = box(
        b"stbl",
        full_box(b"stsd", 0, 0, struct.pack(">I", 1), sample_entry),
        full_box(b"stts", 0, 0, bytes(4)),
        full_box(b"stsc", 0, 0, bytes(4)),
        full_box(b"stsz", 0, 0, bytes(8)),
        full_box(b"stco", 0, 0, bytes(4)),
    )
    minf = box(b"minf", media_header, dinf, stbl)
    return box(b"trak", tkhd, box(b"mdia", mdhd, hdlr, minf))


def _esds(audio_specific_config: bytes) -> bytes:
    """ES descriptor for MPEG-4 audio (object type 0x40) carrying the AudioSpecificConfig."""
    decoder_specific = _descriptor(0x05, audio_specific_config)
    # objectTypeIndication 0x40 (MPEG-4 audio), streamType 5 (audio) << 2 | 1, buffer, rates.
    decoder_config = _descriptor(0x04, struct.pack(">BB3sII", 0x40, 0x15, bytes(3), 0, 0),
                                 decoder_specific)
    sl_config = _descriptor(0x06, b"\x02")
    es = _descriptor(0x03, struct.pack(">HB", 0, 0), decoder_config, sl_config)
    return full_box(b"esds", 0, 0, es)


def _descriptor(tag: int, *payload: bytes) -> bytes:
    body = b"".join(payload)
    size = len(body)
    if size < 0x80:
        return bytes((tag, size)) + body
    # Expandable size: 7 bits per byte, high bit set on all but the last.
    encoded = bytes(((size >> 21) & 0x7F | 0x80, (size >> 14) & 0x7F | 0x80,
                     (size >> 7) & 0x7F | 0x80, size & 0x7F))
    return bytes((tag,)) + encoded + body


def boxes(data: bytes | memoryview) -> Sequence[tuple[bytes, int, int]]:
    """(type, offset, size) of each top-level box: for checks and tests."""
    view = memoryview(data)
    out = []
    position = 0
    while position + 8 <= len(view):
        size, kind = struct.unpack_from(">I4s", view, position)
        if size < 8 or position + size > len(view):
            raise ValueError(f"bad box size {size} at {position}")
        out.append((kind, position, size))
        position += size
    if position != len(view):
        raise ValueError(f"{len(view) - position} trailing bytes")
    return out


build_fragment = pure_build_fragment
COMPILED_FRAGMENTS = False
if extensions_wanted():
    try:
        from ._fmp4 import build_fragment  # type: ignore[no-redef]
    except ImportError:
        pass
    else:
        COMPILED_FRAGMENTS = True
