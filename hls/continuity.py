"""MPEG-TS continuity counters carried across segment files.

Each segment is muxed by its own TsMuxer, so every file's counters start at 0.
Players that read a playlist as one transport stream (ffmpeg's HLS demuxer,
some set-top boxes) see the jump at each boundary as packet loss and flag the
next packet corrupt. Shifting each PID's 4-bit counters so that a segment begins
where the one before it ended makes the segments one continuous stream, while
each file still starts with PAT/PMT and decodes alone.

A fresh muxer numbers each PID's payload packets 0, 1, 2... (adaptation-only
packets repeat the last value), so a segment shifted by ``begin[pid]`` ends at
``begin[pid] + payload_counts[pid]``, which is where the next one begins. Which
segment is shifted from which is hls.tsjit's business: segments are muxed in
whatever order viewers first ask for them.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

TS_PACKET_SIZE = 188
SYNC_BYTE = 0x47
PID_COUNT = 1 << 13
COUNTER_MODULO = 16

# Per PID, a counter value (mod 16); PIDs not named are 0.
Counters = Mapping[int, int]


def _packets(buffer: bytes | bytearray) -> np.ndarray | None:
    """The buffer as rows of TS packets, or None if it is not whole TS packets."""
    if not buffer or len(buffer) % TS_PACKET_SIZE:
        return None
    packets = np.frombuffer(buffer, dtype=np.uint8).reshape(-1, TS_PACKET_SIZE)
    if not (packets[:, 0] == SYNC_BYTE).all():
        return None
    return packets


def _pids(packets: np.ndarray) -> np.ndarray:
    return ((packets[:, 1].astype(np.intp) & 0x1F) << 8) | packets[:, 2]


def payload_counts(buffer: bytes | bytearray) -> dict[int, int]:
    """Payload-carrying packets per PID, mod 16 (how far the segment moves each counter)."""
    packets = _packets(buffer)
    if packets is None:
        return {}
    pids = _pids(packets)[(packets[:, 3] & 0x10) != 0]
    counts = np.bincount(pids, minlength=PID_COUNT)
    return {int(pid): int(counts[pid]) % COUNTER_MODULO for pid in np.flatnonzero(counts)}


def restamp(buffer: bytearray, begin: Counters) -> bytearray:
    """Shift each PID's counters by ``begin[pid]`` in place (a fresh muxer's output).
    Not whole TS packets: left as the muxer made it."""
    packets = _packets(buffer)
    if packets is None or not begin:
        return buffer
    shift = np.zeros(PID_COUNT, dtype=np.uint8)
    for pid, value in begin.items():
        shift[pid] = value % COUNTER_MODULO
    header = packets[:, 3]  # a view of the bytearray: written in place
    header[:] = (header & 0xF0) | ((header + shift[_pids(packets)]) & 0x0F)
    return buffer


def advance(begin: Counters, counts: Counters) -> dict[int, int]:
    """Where the next segment begins, for a segment that began at `begin`."""
    return {pid: (begin.get(pid, 0) + counts.get(pid, 0)) % COUNTER_MODULO
            for pid in begin.keys() | counts.keys()}


def go_back(after: Counters, counts: Counters) -> dict[int, int]:
    """Where a segment must begin so that the one after it begins at `after`."""
    return {pid: (after.get(pid, 0) - counts.get(pid, 0)) % COUNTER_MODULO
            for pid in after.keys() | counts.keys()}
