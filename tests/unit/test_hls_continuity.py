"""Continuity counters continue across segment files, per PID, as one stream would."""

from __future__ import annotations

from hls.continuity import TS_PACKET_SIZE, advance, go_back, payload_counts, restamp


def ts_packet(pid: int, counter: int, payload: bool = True) -> bytes:
    control = 0x10 if payload else 0x20
    header = bytes([0x47, (pid >> 8) & 0x1F, pid & 0xFF, control | (counter & 0xF)])
    return header + b"\xff" * (TS_PACKET_SIZE - 4)


def counters_of(data: bytes | bytearray) -> list[tuple[int, int]]:
    out = []
    for i in range(0, len(data), TS_PACKET_SIZE):
        pid = ((data[i + 1] & 0x1F) << 8) | data[i + 2]
        out.append((pid, data[i + 3] & 0xF))
    return out


# What a fresh muxer writes: each PID's payload packets numbered from 0; the
# adaptation-only packet repeats the last value.
SEGMENT = b"".join([ts_packet(0, 0), ts_packet(0x100, 0), ts_packet(0x100, 1),
                    ts_packet(0x100, 1, payload=False), ts_packet(0x101, 0)])


def test_payload_packets_are_counted_per_pid() -> None:
    assert payload_counts(SEGMENT) == {0: 1, 0x100: 2, 0x101: 1}
    assert payload_counts(SEGMENT * 9) == {0: 9, 0x100: 18 % 16, 0x101: 9}


def test_a_segment_begins_where_the_one_before_ended() -> None:
    first = restamp(bytearray(SEGMENT), {})
    assert counters_of(first) == [(0, 0), (0x100, 0), (0x100, 1), (0x100, 1), (0x101, 0)]
    begin = advance({}, payload_counts(SEGMENT))
    second = restamp(bytearray(SEGMENT), begin)
    assert counters_of(second) == [(0, 1), (0x100, 2), (0x100, 3), (0x100, 3), (0x101, 1)]
    for _ in range(6):
        begin = advance(begin, payload_counts(SEGMENT))
    # Eight segments in: 16 payload packets on 0x100 wrap it to 0.
    assert counters_of(restamp(bytearray(SEGMENT), begin))[1] == (0x100, (2 * 7) % 16)


def test_going_back_from_the_next_segment_meets_it_exactly() -> None:
    after = {0: 5, 0x100: 1, 0x101: 15, 0x1000: 3}
    begin = go_back(after, payload_counts(SEGMENT))
    assert advance(begin, payload_counts(SEGMENT)) == after
    # A PID the segment after it never saw continues from 0 there.
    assert go_back({}, {0x100: 2})[0x100] == 14


def test_other_bits_untouched_and_non_ts_left_alone() -> None:
    packet = bytearray(ts_packet(0x100, 5))
    packet[1] |= 0x40  # payload_unit_start_indicator
    out = restamp(bytearray(packet), {0x100: 3})
    assert out[1] & 0x40 and out[4:] == packet[4:] and out[3] == 0x10 | 8
    assert restamp(bytearray(b"not a transport stream"), {0: 1}) == b"not a transport stream"
    assert payload_counts(b"not a transport stream") == {}
