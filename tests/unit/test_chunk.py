"""ChunkWriter -> ChunkReader round trips, limits, and the fuzz rule."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtmp.chunk import (
    EXTENDED_TIMESTAMP,
    SET_CHUNK_SIZE,
    ChunkReader,
    ChunkWriter,
)
from rtmp.errors import RemoteProtocolError

messages = st.lists(
    st.tuples(
        st.sampled_from([3, 4, 5, 6, 63, 64, 65, 319, 320, 321, 65599]),  # all csid sizes
        st.sampled_from([8, 9, 18, 20]),
        st.integers(0, 3),  # message stream id
        st.one_of(
            st.integers(0, 2000),
            st.integers(EXTENDED_TIMESTAMP - 50, EXTENDED_TIMESTAMP + 50),
            st.integers(0xFFFFFFF0, 0xFFFFFFFF),
        ),
        st.binary(min_size=0, max_size=700),
    ),
    min_size=1,
    max_size=25,
)


def read_all(reader: ChunkReader, data: bytes, piece: int) -> list:
    out = []
    for i in range(0, len(data), piece):
        reader.feed(data[i : i + piece])
        while (msg := reader.next_message()) is not None:
            out.append(msg)
    return out


@settings(max_examples=300, deadline=None)
@given(messages, st.sampled_from([1, 2, 64, 128, 1000, 4096]), st.integers(1, 997),
       st.booleans())
def test_round_trip(msgs, chunk_size, piece, monotonic) -> None:
    writer = ChunkWriter()
    stream = bytearray()
    if chunk_size != 128:
        stream += writer.write(2, SET_CHUNK_SIZE, 0, 0, chunk_size.to_bytes(4, "big"))
        writer.chunk_size = chunk_size
    clock = 0
    expected = []
    for csid, type_id, msid, ts, payload in msgs:
        if monotonic:  # deltas (fmt 1/2/3 headers), crossing 0xFFFFFF too
            clock += ts
            ts = clock & 0xFFFFFFFF
        stream += writer.write(csid, type_id, msid, ts, payload)
        expected.append((csid, type_id, msid, ts, payload))
    reader = ChunkReader()
    got = read_all(reader, bytes(stream), piece)
    if chunk_size != 128:
        assert got[0].type_id == SET_CHUNK_SIZE
        got = got[1:]
        assert reader.chunk_size == chunk_size
    got_tuples = [(m.csid, m.type_id, m.stream_id, m.timestamp, bytes(m.payload)) for m in got]
    assert got_tuples == expected


@pytest.mark.parametrize("fmt_sequence", [(0, 3, 3, 3), (0, 1, 3, 2, 3), (0, 2, 3)])
def test_forced_formats_reuse_deltas(fmt_sequence) -> None:
    """fmt 3 on a new message reuses the previous delta (after fmt 0, its timestamp)."""
    writer = ChunkWriter()
    data = bytearray()
    ts, delta, expected = 0, 40, []
    for i, fmt in enumerate(fmt_sequence):
        if fmt == 0:
            ts = 40
        elif fmt in (1, 2):
            delta = 33 + i
            ts += delta
        else:
            ts += 40 if i == 1 and fmt_sequence[0] == 0 else delta
        data += writer.write(4, 9, 1, ts, b"x" * 10, fmt=fmt)
        expected.append(ts)
    assert [m.timestamp for m in read_all(ChunkReader(), bytes(data), 5)] == expected


def test_extended_timestamp_on_continuation_chunks_both_styles() -> None:
    """Continuation chunks may repeat the extended timestamp or omit it."""
    ts = 0x01000000 + 5
    payload = bytes(range(256)) * 2  # 512 bytes: 4 chunks of 128
    header = bytes([0x04]) + b"\xff\xff\xff" + len(payload).to_bytes(3, "big") + b"\x09"
    header += (1).to_bytes(4, "little") + ts.to_bytes(4, "big")
    with_ext = header + payload[:128]
    without_ext = header + payload[:128]
    for i in range(128, 512, 128):
        with_ext += b"\xc4" + ts.to_bytes(4, "big") + payload[i : i + 128]
        without_ext += b"\xc4" + payload[i : i + 128]
    for data in (with_ext, without_ext):
        (msg,) = read_all(ChunkReader(), data, 7)
        assert msg.timestamp == ts and bytes(msg.payload) == payload


def test_set_chunk_size_applies_mid_packet() -> None:
    """OBS sends SetChunkSize and connect in one TCP segment; the next chunk uses the new size."""
    writer = ChunkWriter()
    data = writer.write(2, SET_CHUNK_SIZE, 0, 0, (4096).to_bytes(4, "big"))
    writer.chunk_size = 4096
    data += writer.write(3, 20, 0, 0, b"c" * 3000)
    reader = ChunkReader()
    reader.feed(data)
    first, second = reader.next_message(), reader.next_message()
    assert first is not None and first.type_id == SET_CHUNK_SIZE
    assert second is not None and len(second.payload) == 3000


def test_abort_discards_partial_message() -> None:
    writer = ChunkWriter()
    partial = writer.write(4, 9, 1, 0, b"v" * 300)[: 1 + 11 + 128]  # first chunk only
    abort = writer.write(2, 2, 0, 0, (4).to_bytes(4, "big"))
    writer.forget(4)
    after = writer.write(4, 9, 1, 10, b"w" * 50)
    msgs = read_all(ChunkReader(), partial + abort + after, 1000)
    assert [(m.type_id, len(m.payload)) for m in msgs] == [(2, 4), (9, 50)]


def test_limits() -> None:
    reader = ChunkReader(max_message_size=1000)
    reader.feed(ChunkWriter().write(3, 9, 1, 0, b"x" * 1001))
    with pytest.raises(RemoteProtocolError, match="exceeds the limit"):
        reader.next_message()
    reader = ChunkReader(max_chunk_streams=3)
    writer = ChunkWriter()
    reader.feed(b"".join(writer.write(c, 9, 1, 0, b"x") for c in (3, 4, 5, 6)))
    with pytest.raises(RemoteProtocolError, match="chunk streams"):
        read_all(reader, b"", 1)
        while reader.next_message():
            pass
    reader = ChunkReader()
    reader.feed(b"\x43" + b"\x00" * 10)  # fmt 1 on a fresh chunk stream
    with pytest.raises(RemoteProtocolError, match="starts with a type 1"):
        reader.next_message()
    reader = ChunkReader()
    reader.feed(ChunkWriter().write(2, SET_CHUNK_SIZE, 0, 0, b"\x00\x00\x00\x00"))
    with pytest.raises(RemoteProtocolError, match="Set Chunk Size of 0"):
        reader.next_message()


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=3000))
def test_fuzz_only_remote_protocol_errors(data: bytes) -> None:
    reader = ChunkReader(max_message_size=100_000)
    reader.feed(data)
    try:
        for _ in range(10_000):
            if reader.next_message() is None:
                break
    except RemoteProtocolError:
        pass
