"""Continuity counters continue across segment files, per PID, as one stream would."""

from __future__ import annotations

from hls.continuity import TS_PACKET_SIZE, ContinuityCounters


def ts_packet(pid: int, counter: int, payload: bool = True) -> bytes:
    control = 0x10 if payload else 0x20
    header = bytes([0x47, (pid >> 8) & 0x1F, pid & 0xFF, control | (counter & 0xF)])
    return header + b"\xff" * (TS_PACKET_SIZE - 4)


def counters_of(data: bytes) -> list[tuple[int, int]]:
    out = []
    for i in range(0, len(data), TS_PACKET_SIZE):
        pid = ((data[i + 1] & 0x1F) << 8) | data[i + 2]
        out.append((pid, data[i + 3] & 0xF))
    return out


def test_counters_continue_across_segments_per_pid() -> None:
    stamper = ContinuityCounters()
    # Each "segment" restarts at 0, as a fresh muxer writes it.
    segment = b"".join([ts_packet(0, 0), ts_packet(0x100, 0), ts_packet(0x100, 1),
                        ts_packet(0x100, 1, payload=False), ts_packet(0x101, 0)])
    first = stamper.restamp(segment)
    assert counters_of(first) == [(0, 0), (0x100, 0), (0x100, 1), (0x100, 1), (0x101, 0)]
    second = stamper.restamp(segment)
    assert counters_of(second) == [(0, 1), (0x100, 2), (0x100, 3), (0x100, 3), (0x101, 1)]
    for _ in range(6):
        stamper.restamp(segment)
    assert counters_of(stamper.restamp(segment))[1] == (0x100, (2 * 8) % 16)


def test_other_bits_untouched_and_non_ts_left_alone() -> None:
    stamper = ContinuityCounters()
    packet = bytearray(ts_packet(0x100, 5))
    packet[1] |= 0x40  # payload_unit_start_indicator
    out = stamper.restamp(bytes(packet))
    assert out[1] & 0x40 and out[4:] == packet[4:] and out[3] & 0xF0 == 0x10
    assert stamper.restamp(b"not a transport stream") == b"not a transport stream"
