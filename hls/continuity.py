"""MPEG-TS continuity counters carried across segment files.

Each segment is muxed by its own TsMuxer, so every file's counters start at 0.
Players that read a playlist as one transport stream (ffmpeg's HLS demuxer,
some set-top boxes) see the jump at each boundary as packet loss and flag the
next packet corrupt. Shifting each PID's 4-bit counters by the number of
payload packets earlier segments carried on that PID makes the segments one
continuous stream, while each file still starts with PAT/PMT and decodes alone.
"""

from __future__ import annotations

import numpy as np

TS_PACKET_SIZE = 188
SYNC_BYTE = 0x47
PID_COUNT = 1 << 13


class ContinuityCounters:
    """Payload packets sent so far per PID, across the segments of one channel."""

    __slots__ = ("_sent",)

    def __init__(self) -> None:
        self._sent = np.zeros(PID_COUNT, dtype=np.int64)

    def restamp(self, data: bytes | bytearray) -> bytearray:
        """Rewrite the counters of one fresh muxer's output, in place when given a bytearray.

        A fresh muxer numbers each PID's payload packets 0, 1, 2… (adaptation-only
        packets repeat the last value), so adding the count of payload packets sent
        on that PID before this segment continues the sequence exactly.
        """
        buffer = data if isinstance(data, bytearray) else bytearray(data)
        if not buffer or len(buffer) % TS_PACKET_SIZE:
            return buffer  # not whole TS packets: leave it as the muxer made it
        packets = np.frombuffer(buffer, dtype=np.uint8).reshape(-1, TS_PACKET_SIZE)
        if not (packets[:, 0] == SYNC_BYTE).all():
            return buffer
        pids = ((packets[:, 1].astype(np.intp) & 0x1F) << 8) | packets[:, 2]
        header = packets[:, 3]
        carries_payload = (header & 0x10) != 0
        shifted = (header.astype(np.int64) + self._sent[pids]) & 0x0F
        header[:] = (header & 0xF0) | shifted.astype(np.uint8)
        self._sent += np.bincount(pids[carries_payload], minlength=PID_COUNT)
        return buffer
