"""The real OBS 29 capture through ServerConnection, whole and in random pieces."""

from __future__ import annotations

import random

import pytest

from rtmp import amf0
from rtmp.connection import ServerConnection
from rtmp.events import (
    AudioData,
    Connected,
    Event,
    HandshakeComplete,
    Metadata,
    PublishRequested,
    VideoData,
)
from tests.fixtures import OBS_C2S, OBS_KEY

DATA = OBS_C2S.read_bytes()


def run_connection(pieces: list[bytes], conn: ServerConnection | None = None
                   ) -> tuple[list[Event], bytes]:
    """Feed pieces, accept the publish when asked, collect every event and the answers."""
    conn = conn or ServerConnection()
    events: list[Event] = []
    for piece in pieces:
        conn.receive_data(piece)
        while True:
            event = conn.next_event()
            if event is None:
                if conn.paused:
                    conn.accept_publish(events[-1].stream_id)  # type: ignore[attr-defined]
                    continue
                break
            events.append(event)
    return events, conn.data_to_send()


def split_randomly(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    pieces, pos = [], 0
    while pos < len(data):
        size = rng.choice([1, 2, 3, 7, 100, 1000, 5000, 20000])
        pieces.append(data[pos : pos + size])
        pos += size
    return pieces


def check_obs_events(events: list[Event]) -> None:
    assert isinstance(events[0], HandshakeComplete)
    assert events[0].complex_digest is False  # OBS uses the simple handshake
    connected = events[1]
    assert isinstance(connected, Connected) and connected.app == "live"
    assert connected.tc_url == "rtmp://127.0.0.1:19350/live"
    publish = events[2]
    assert isinstance(publish, PublishRequested)
    assert publish.stream_name == OBS_KEY and publish.publish_type == "live"
    assert OBS_KEY not in repr(publish)
    metadata = events[3]
    assert isinstance(metadata, Metadata)
    assert metadata.values["width"] == 1280 and metadata.values["height"] == 720
    assert metadata.values["framerate"] == 30
    media = events[4:]
    assert all(isinstance(e, AudioData | VideoData) for e in media)
    audio = [e for e in media if isinstance(e, AudioData)]
    video = [e for e in media if isinstance(e, VideoData)]
    # The decoded capture lists 189 audio and 123 video messages; the capture ends
    # mid-message, so the last video message is incomplete and never surfaces.
    assert len(audio) == 189
    assert len(video) in (122, 123)
    # Sequence headers first: the 5-byte AudioSpecificConfig and the avcC.
    assert bytes(audio[0].payload) == bytes.fromhex("af00119056e500")
    assert video[0].payload[0] == 0x17 and video[0].payload[1] == 0x00
    keyframes = [e.timestamp for e in video if e.payload[0] >> 4 == 1 and e.payload[1] == 1]
    assert keyframes == [0, 1999, 3999]
    # Timestamps are in order per track.
    for track in (audio, video):
        stamps = [e.timestamp for e in track]
        assert stamps == sorted(stamps)
    assert audio[-1].timestamp <= 4055


def test_obs_capture_whole() -> None:
    events, answers = run_connection([DATA])
    check_obs_events(events)
    # S0 + S1 + S2, then the control messages, _results and onStatus.
    assert answers[0] == 3
    assert b"NetConnection.Connect.Success" in answers
    assert b"NetStream.Publish.Start" in answers


@pytest.mark.parametrize("seed", range(8))
def test_obs_capture_random_pieces(seed: int) -> None:
    events, _ = run_connection(split_randomly(DATA, seed))
    check_obs_events(events)


def test_obs_capture_byte_by_byte_through_publish() -> None:
    # Byte by byte through the whole command phase (the first ~2 KB after the handshake).
    head = DATA[: 3073 + 4000]
    events, _ = run_connection([head[i : i + 1] for i in range(len(head))])
    kinds = [type(e) for e in events[:4]]
    assert kinds == [HandshakeComplete, Connected, PublishRequested, Metadata]


def test_answers_decode_as_obs_expects() -> None:
    """Our replies, parsed by a reader, carry the results OBS waits for."""
    from rtmp.chunk import ChunkReader

    _, answers = run_connection([DATA])
    reader = ChunkReader()
    reader.feed(answers[1 + 1536 * 2 :])
    names = []
    while (msg := reader.next_message()) is not None:
        if msg.type_id == 20:
            values = amf0.decode_all(msg.payload)
            names.append(values[0])
            if values[0] == "onStatus":
                assert values[3]["code"] == "NetStream.Publish.Start"
                assert msg.stream_id == 1
    assert names[0] == "_result"
    assert "onStatus" in names
