"""The input contract of the HLS package: what a publish hands the segmenter.

Timestamps are FLV's milliseconds so the ingest side never converts; the
segmenter decides the output timeline. Kinds and codecs are plain strings
(``TrackKind`` members compare equal to them) so callers need no import
beyond these two classes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class TrackKind(enum.StrEnum):
    """The two kinds of track a publish can carry."""

    VIDEO = "video"
    AUDIO = "audio"


@dataclass(frozen=True, slots=True)
class TrackConfig:
    """One track's codec setup, from its FLV sequence header."""

    kind: str  # 'video' | 'audio'
    codec: str  # 'h264' | 'hevc' | 'aac'; others are skipped with a warning
    extradata: bytes  # avcC / hvcC record, or the AAC AudioSpecificConfig, as FLV carries it
    width: int = 0
    height: int = 0
    sample_rate: int = 0
    channels: int = 0


@dataclass(frozen=True, slots=True)
class MediaPacket:
    """One coded frame as FLV carries it (AVCC NAL units, or one raw AAC frame)."""

    kind: str  # 'video' | 'audio'
    dts: int  # milliseconds, monotonic per track (the caller unwraps RTMP's 32-bit clock)
    pts: int  # milliseconds, dts + composition time
    keyframe: bool  # video IDR; always True for audio
    data: bytes | memoryview
