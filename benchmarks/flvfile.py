"""Read an FLV file into tags: the media the load publishers replay.

Parsing is done once per run (a 20 s clip is ~1500 tags), so plain struct
calls are enough; what matters is that the result is shared by every publisher.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

TAG_AUDIO = 8
TAG_VIDEO = 9
TAG_SCRIPT = 18

_FILE_HEADER = struct.Struct(">3sBBI")
_TAG_HEADER = struct.Struct(">B3s3sB3s")
_PREVIOUS_TAG_SIZE = 4


class FlvFileError(ValueError):
    """The file is not an FLV file we can replay."""


@dataclass(frozen=True, slots=True)
class FlvTag:
    type_id: int  # 8 audio, 9 video, 18 script data: also the RTMP message type
    timestamp: int  # milliseconds (decoding time)
    body: bytes

    @property
    def is_sequence_header(self) -> bool:
        """AVC/HEVC decoder config or AAC AudioSpecificConfig: sent once, never looped."""
        if len(self.body) < 2:
            return False
        if self.type_id == TAG_VIDEO:
            return self._avc_packet_type() == 0
        if self.type_id == TAG_AUDIO:
            return self.body[0] >> 4 == 10 and self.body[1] == 0
        return False

    @property
    def is_sequence_end(self) -> bool:
        """AVC/HEVC end of sequence: ffmpeg writes one at the end of a file; never looped."""
        return self.type_id == TAG_VIDEO and self._avc_packet_type() == 2

    def _avc_packet_type(self) -> int | None:
        """0 config, 1 frames, 2 end of sequence (AVC/HEVC, legacy or Enhanced RTMP)."""
        if len(self.body) < 2:
            return None
        if self.body[0] & 0x80:  # Enhanced RTMP: packet type in the low nibble
            return self.body[0] & 0x0F
        if self.body[0] & 0x0F in (7, 12):  # AVC, and HEVC as some encoders send it
            return self.body[1]
        return None

    @property
    def is_keyframe(self) -> bool:
        return self.type_id == TAG_VIDEO and bool(self.body) and (self.body[0] >> 4) & 0x7 == 1


def read_flv(path: Path) -> list[FlvTag]:
    """Every tag of the file in file order."""
    data = path.read_bytes()
    if len(data) < _FILE_HEADER.size:
        raise FlvFileError(f"{path}: too short for an FLV header")
    signature, _version, _flags, header_size = _FILE_HEADER.unpack_from(data)
    if signature != b"FLV":
        raise FlvFileError(f"{path}: not an FLV file")
    pos = header_size + _PREVIOUS_TAG_SIZE
    tags: list[FlvTag] = []
    end = len(data)
    while pos + _TAG_HEADER.size <= end:
        type_id, size, ts_low, ts_high, _stream = _TAG_HEADER.unpack_from(data, pos)
        size = int.from_bytes(size, "big")
        body_start = pos + _TAG_HEADER.size
        if body_start + size > end:
            break  # truncated last tag (a file still being written): ignore it
        timestamp = int.from_bytes(ts_low, "big") | (ts_high << 24)
        tags.append(FlvTag(type_id & 0x1F, timestamp, data[body_start : body_start + size]))
        pos = body_start + size + _PREVIOUS_TAG_SIZE
    if not tags:
        raise FlvFileError(f"{path}: no tags")
    return tags
