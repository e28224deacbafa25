"""MPEG-TS continuity counters carried across segment files.

Each segment is muxed by its own TsMuxer, so every file's counters start at 0.
Players that read a playlist as one transport stream (ffmpeg's HLS demuxer,
some set-top boxes) see the jump at each boundary as packet loss and flag the
next packet corrupt. Rewriting the 4-bit counters so each PID continues where
the previous segment left off makes the segments one continuous stream, while
each file still starts with PAT/PMT and decodes alone.
"""

from __future__ import annotations

import numpy as np

TS_PACKET_SIZE = 188
SYNC_BYTE = 0x47


class ContinuityCounters:
    """Last counter used per PID, across the segments of one channel."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[int, int] = {}

    def restamp(self, data: bytes) -> bytes:
        """`data` with each PID's counters continuing from the previous call's."""
        if not data or len(data) % TS_PACKET_SIZE:
            return data  # not whole TS packets: leave it as the muxer made it
        packets = np.frombuffer(bytearray(data), dtype=np.uint8).reshape(-1, TS_PACKET_SIZE)
        if not (packets[:, 0] == SYNC_BYTE).all():
            return data
        pids = ((packets[:, 1].astype(np.uint16) & 0x1F) << 8) | packets[:, 2]
        # The counter advances only on packets that carry payload (adaptation_field_control
        # bit 0x10); adaptation-only packets repeat the previous value.
        advances = (packets[:, 3] & 0x10) != 0
        header = packets[:, 3]
        for pid in np.unique(pids):
            rows = pids == pid
            start = self._last.get(int(pid), 0xF)  # 0xF so the first payload packet gets 0
            counters = (start + np.cumsum(advances[rows], dtype=np.int64)) & 0xF
            header[rows] = (header[rows] & 0xF0) | counters.astype(np.uint8)
            self._last[int(pid)] = int(counters[-1])
        return packets.tobytes()
