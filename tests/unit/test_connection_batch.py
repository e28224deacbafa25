"""A batching ServerConnection hands out the same media as the plain one, in runs.

With ``batch_media=True`` back-to-back media messages come as one MediaReceived
event; spread out again, the events must equal the plain connection's, for the
OBS capture and for sessions built here (commands mid-run, errors mid-run,
several streams), whole and in pieces.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtmp import amf0
from rtmp.chunk import ChunkWriter
from rtmp.connection import MAX_MEDIA_PER_EVENT, ServerConnection
from rtmp.errors import RemoteProtocolError
from rtmp.events import AudioData, Event, MediaReceived, PublishRequested, Unpublished, VideoData
from rtmp.handshake import HANDSHAKE_SIZE, build_client_c0c1
from tests.fixtures import OBS_C2S
from tests.unit.test_connection_obs import run_connection, split_randomly

MEDIA_CSID = 4


def run(pieces: list[bytes], batch: bool) -> tuple[list[Event], type[Exception] | None]:
    """Every event (runs spread out into AudioData/VideoData) and the error that ended it."""
    events: list[Event] = []
    error = None
    try:
        run_connection(pieces, _Recording(events, batch_media=batch))
    except RemoteProtocolError as exc:
        error = type(exc)
    spread: list[Event] = []
    for event in events:
        if isinstance(event, MediaReceived):
            assert batch and 0 < len(event.frames) <= MAX_MEDIA_PER_EVENT
            spread.extend(_spread(event))
        else:
            spread.append(event)
    return spread, error


class _Recording(ServerConnection):
    """A connection that also keeps what it handed out (run_connection's list is lost
    when an error ends the feed)."""

    def __init__(self, seen: list[Event], **options: bool) -> None:
        super().__init__(**options)
        self._seen = seen

    def next_event(self) -> Event | None:
        event = super().next_event()
        if event is not None:
            self._seen.append(event)
        return event


def events_of(data: bytes) -> tuple[list[Event], ServerConnection]:
    """What a batching connection hands out for data fed whole, and the connection."""
    events: list[Event] = []
    conn = _Recording(events, batch_media=True)
    run_connection([data], conn)
    return events, conn


def _spread(event: MediaReceived) -> list[Event]:
    return [VideoData(event.stream_id, ts, payload) if type_id == 9 else
            AudioData(event.stream_id, ts, payload) for type_id, ts, payload in event.frames]


def session(*messages: tuple[int, int, int, int, bytes]) -> bytes:
    """Handshake, connect, two createStreams and a publish on stream 1, then
    (csid, type_id, stream_id, timestamp, payload) messages."""
    writer = ChunkWriter()
    out = bytearray(build_client_c0c1()) + bytes(HANDSHAKE_SIZE)
    out += writer.write(3, 20, 0, 0, amf0.encode_values("connect", 1.0, {"app": "live"}))
    out += writer.write(3, 20, 0, 0, amf0.encode_values("createStream", 2.0, None))
    out += writer.write(3, 20, 0, 0, amf0.encode_values("createStream", 3.0, None))
    out += writer.write(MEDIA_CSID, 20, 1, 0, amf0.encode_values("publish", 4.0, None, "k"))
    for csid, type_id, stream_id, timestamp, payload in messages:
        out += writer.write(csid, type_id, stream_id, timestamp, payload)
    return bytes(out)


def media(count: int, start: int = 0, stream_id: int = 1) -> list[tuple[int, int, int, int, bytes]]:
    return [(MEDIA_CSID, 9 if i % 3 == 0 else 8, stream_id, start + i * 20,
             bytes([i % 256]) * (1 + i * 37 % 300)) for i in range(count)]


def command(*values: object, stream_id: int = 0) -> tuple[int, int, int, int, bytes]:
    return (3, 20, stream_id, 0, amf0.encode_values(*values))


def assert_same(data: bytes) -> None:
    plain = run([data], batch=False)
    assert run([data], batch=True) == plain
    for seed in range(3):
        assert run(split_randomly(data, seed), batch=True) == plain
    assert run([data[i : i + 1] for i in range(len(data))], batch=True) == plain


def test_the_obs_capture_comes_out_the_same() -> None:
    data = OBS_C2S.read_bytes()
    plain, error = run([data], batch=False)
    assert error is None and any(isinstance(e, VideoData) for e in plain)
    assert_same(data)


def test_a_read_of_media_is_one_event_and_a_command_ends_the_run() -> None:
    data = session(*media(10), command("FCUnpublish", 5.0, None, "k"), *media(3, 1000))
    events, conn = events_of(data)
    kinds = [type(event).__name__ for event in events]
    # The media after the unpublish is not the stream's any more: dropped, as unbatched.
    assert kinds[-2:] == ["MediaReceived", "Unpublished"]
    assert conn.media_dropped == 3
    assert_same(data)


def test_a_burst_is_cut_into_runs_of_the_limit() -> None:
    data = session(*media(MAX_MEDIA_PER_EVENT * 2 + 5))
    events, _ = events_of(data)
    sizes = [len(event.frames) for event in events if isinstance(event, MediaReceived)]
    assert sizes == [MAX_MEDIA_PER_EVENT, MAX_MEDIA_PER_EVENT, 5]
    assert_same(data)


def test_media_before_an_error_is_handed_out_then_the_error() -> None:
    broken = (3, 20, 0, 0, b"\x02\x00\x10abc")  # a command whose name string runs short
    data = session(*media(8), broken, *media(2, 500))
    events, error = run([data], batch=True)
    assert error is RemoteProtocolError
    assert sum(isinstance(e, AudioData | VideoData) for e in events) == 8
    assert_same(data)


def test_media_of_two_streams_and_of_a_stream_not_publishing() -> None:
    second_publish = command("publish", 6.0, None, "k2", stream_id=2)
    data = session(*media(4), *media(2, stream_id=2), *media(3, 100), (MEDIA_CSID, 9, 1, 200, b""),
                   second_publish, *media(3, 300, stream_id=2), *media(2, 400))
    events, _ = run([data], batch=True)
    assert sum(isinstance(e, PublishRequested) for e in events) == 2
    assert {e.stream_id for e in events if isinstance(e, VideoData | AudioData)} == {1, 2}
    assert_same(data)


def test_an_unpublish_by_delete_stream_mid_read() -> None:
    data = session(*media(5), command("deleteStream", 7.0, None, 1.0), *media(5, 200))
    events, _ = run([data], batch=True)
    assert isinstance(events[-1], Unpublished)
    assert_same(data)


_message = st.one_of(
    st.tuples(st.just(MEDIA_CSID), st.sampled_from([8, 9]), st.sampled_from([0, 1, 1, 1, 2]),
              st.integers(0, 0xFFFFFFFF), st.binary(max_size=300)),
    st.tuples(st.just(3), st.just(20), st.sampled_from([0, 1]), st.just(0),
              st.sampled_from([amf0.encode_values("FCUnpublish", 0.0, None, "k"),
                               amf0.encode_values("releaseStream", 9.0, None, "k"),
                               amf0.encode_values("publish", 0.0, None, "k"),
                               b"\x02\x00\x05ab"])),
    st.tuples(st.just(2), st.sampled_from([1, 4, 5]), st.just(0), st.just(0),
              st.sampled_from([b"\x00\x00\x10\x00", b"\x00\x06\x00\x00\x00\x01", b"\x00"])),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_message, max_size=40), st.integers(0, 1000))
def test_random_sessions_come_out_the_same_batched_or_not(messages, seed) -> None:
    data = session(*messages)
    plain = run([data], batch=False)
    assert run([data], batch=True) == plain
    assert run(split_randomly(data, seed), batch=True) == plain


@pytest.mark.parametrize("seed", range(3))
def test_random_bytes_after_publish_raise_only_the_protocol_error(seed: int) -> None:
    rng = random.Random(seed)
    data = session(*media(4)) + rng.randbytes(5000)
    plain = run([data], batch=False)
    assert run(split_randomly(data, seed), batch=True) == plain
