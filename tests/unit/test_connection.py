"""ServerConnection behaviour beyond the OBS capture: handshakes, commands, refusals, fuzz."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtmp import amf0
from rtmp.chunk import ChunkReader, ChunkWriter
from rtmp.connection import ServerConnection, State
from rtmp.errors import LocalProtocolError, RemoteProtocolError
from rtmp.events import (
    AudioData,
    Connected,
    ConnectRejected,
    HandshakeComplete,
    PingResponse,
    PublishRequested,
    Unpublished,
    VideoData,
)
from rtmp.handshake import HANDSHAKE_SIZE, build_client_c0c1

# The FP9 keys written out here, independently of rtmp/handshake.py, as clients
# (ffmpeg's rtmpproto.c, librtmp) hold them: "Genuine Adobe Flash Media Server 001"
# (36 bytes) signs S1; the 68-byte key with the shared tail derives S2's key.
_TAIL = bytes([
    0xF0, 0xEE, 0xC2, 0x4A, 0x80, 0x68, 0xBE, 0xE8, 0x2E, 0x00, 0xD0, 0xD1, 0x02, 0x9E, 0x7E, 0x57,
    0x6E, 0xEC, 0x5D, 0x2D, 0x29, 0x80, 0x6F, 0xAB, 0x93, 0xB8, 0xE6, 0x36, 0xCF, 0xEB, 0x31, 0xAE,
])
_FMS_KEY = b"Genuine Adobe Flash Media Server 001" + _TAIL
_FP_KEY = b"Genuine Adobe Flash Player 001" + _TAIL


def _hmac256(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def _digest_at(block: bytes, base: int, key: bytes) -> bytes | None:
    """The digest of an FP9 block at the layout starting at `base` (8 or 772), if it verifies."""
    pos = sum(block[base : base + 4]) % 728 + base + 4
    expected = _hmac256(key, block[:pos] + block[pos + 32 :])
    return expected if block[pos : pos + 32] == expected else None


class Client:
    """A minimal scripted RTMP client over a ServerConnection (no sockets)."""

    def __init__(self, complex_digest: bool = False, **options: Any) -> None:
        self.conn = ServerConnection(**options)
        self.writer = ChunkWriter()
        self.reader = ChunkReader()
        c0c1 = build_client_c0c1(complex_digest=complex_digest)
        self.conn.receive_data(c0c1)
        assert self.conn.next_event() is None
        reply = self.conn.data_to_send()
        assert len(reply) == 1 + 2 * HANDSHAKE_SIZE
        self.c1 = c0c1[1:]
        self.s1 = reply[1 : 1 + HANDSHAKE_SIZE]
        self.s2 = reply[1 + HANDSHAKE_SIZE :]
        self.conn.receive_data(b"\x00" * HANDSHAKE_SIZE)  # C2 is not checked
        self.events = [self.conn.next_event()]

    def send(self, csid: int, type_id: int, msid: int, ts: int, payload: bytes) -> None:
        self.conn.receive_data(self.writer.write(csid, type_id, msid, ts, payload))

    def command(self, *values, msid: int = 0) -> None:
        self.send(3 if msid == 0 else 4, 20, msid, 0, amf0.encode_values(*values))

    def pump(self) -> list:
        out = []
        while (event := self.conn.next_event()) is not None:
            out.append(event)
        return out

    def replies(self) -> list:
        self.reader.feed(self.conn.data_to_send())
        msgs = []
        while (msg := self.reader.next_message()) is not None:
            msgs.append((msg, amf0.decode_all(msg.payload) if msg.type_id == 20 else None))
        return msgs

    def connect_and_publish(self, key: str = "secret") -> PublishRequested:
        self.command("connect", 1, {"app": "live", "tcUrl": "rtmp://h/live"})
        self.command("createStream", 2, None)
        self.command("publish", 3, None, key, "live", msid=1)
        events = self.pump()
        assert isinstance(events[0], Connected)
        assert isinstance(events[-1], PublishRequested)
        return events[-1]


def test_complex_handshake_answered_with_digests() -> None:
    client = Client(complex_digest=True)
    assert client.events == [HandshakeComplete(True)]
    # What a verifying client (ffmpeg's RTMP reader) checks: S1 signed with the FMS key...
    assert client.s1[4] >= 3
    assert any(_digest_at(client.s1, base, _FMS_KEY[:36]) for base in (8, 772))
    # ...and S2 signed with a key derived from the full FMS key over C1's digest.
    c1_digest = _digest_at(client.c1, 8, _FP_KEY[:30])
    assert c1_digest is not None
    s2_key = _hmac256(_FMS_KEY, c1_digest)
    assert client.s2[-32:] == _hmac256(s2_key, client.s2[:-32])


def test_simple_handshake() -> None:
    client = Client()
    assert client.events == [HandshakeComplete(False)]
    assert client.s1[4:8] == b"\x00\x00\x00\x00"


def test_bad_c0_version_is_refused() -> None:
    conn = ServerConnection()
    conn.receive_data(b"\x06" + b"\x00" * 1536)
    with pytest.raises(RemoteProtocolError, match="RTMPE"):
        conn.next_event()
    assert conn.state is State.FAILED
    with pytest.raises(RemoteProtocolError):  # stays failed
        conn.next_event()


def test_publish_pauses_until_accepted_then_media_flows() -> None:
    client = Client()
    request = client.connect_and_publish()
    client.send(6, 9, 1, 0, b"\x17\x00\x00\x00\x00avcc")
    assert client.pump() == [] and client.conn.paused
    client.conn.accept_publish(request.stream_id)
    events = client.pump()
    assert events == [VideoData(1, 0, b"\x17\x00\x00\x00\x00avcc")]
    client.send(6, 8, 1, 23, b"\xaf\x01raw")
    assert client.pump() == [AudioData(1, 23, b"\xaf\x01raw")]
    codes = [v[3]["code"] for m, v in client.replies() if v and v[0] == "onStatus"]
    assert codes == ["NetStream.Publish.Start"]
    client.command("FCUnpublish", 5, None, "secret")
    client.command("deleteStream", 6, None, 1)
    assert client.pump() == [Unpublished(1, "FCUnpublish")]


def test_reject_sends_badname_and_closes() -> None:
    client = Client()
    request = client.connect_and_publish("wrong")
    client.conn.reject_publish(request.stream_id, "unknown stream key")
    statuses = [v[3] for m, v in client.replies() if v and v[0] == "onStatus"]
    assert statuses == [{"level": "error", "code": "NetStream.Publish.BadName",
                         "description": "unknown stream key"}]
    assert client.conn.state is State.CLOSING
    with pytest.raises(LocalProtocolError):
        client.conn.accept_publish(request.stream_id)


def test_unknown_app_is_rejected_at_connect_and_the_rest_ignored() -> None:
    client = Client(app_exists=lambda app: app == "live")
    client.command("connect", 1, {"app": "nope/"})
    assert client.pump() == [ConnectRejected("nope")]
    [(_msg, reply)] = client.replies()
    assert reply[:2] == ["_error", 1]
    assert reply[3]["code"] == "NetConnection.Connect.Rejected"
    assert client.conn.state is State.CLOSING
    # What the peer says on its way out (librtmp: FCUnpublish, deleteStream) is ignored.
    client.command("FCUnpublish", 2, None, "key")
    client.command("deleteStream", 3, None, 1.0)
    assert client.pump() == []
    assert client.replies() == []


def test_a_stream_goes_only_where_the_table_says() -> None:
    client = Client()
    request = client.connect_and_publish()
    client.conn.accept_publish(request.stream_id)
    with pytest.raises(LocalProtocolError):
        client.conn.accept_publish(request.stream_id)  # not pending any more
    client.command("FCUnpublish", 5, None, "secret")
    assert client.pump() == [Unpublished(request.stream_id, "FCUnpublish")]
    client.conn.end_publish(request.stream_id, "kicked")  # not publishing: nothing to end
    client.command("publish", 6, None, "secret", "live", msid=request.stream_id)
    assert isinstance(client.pump()[-1], PublishRequested)  # unpublished, so publishable


def test_media_before_publish_is_dropped() -> None:
    client = Client()
    client.command("connect", 1, {"app": "live"})
    client.send(6, 9, 1, 0, b"\x17\x01")
    assert [type(e) for e in client.pump()] == [Connected]
    assert client.conn.media_dropped == 1


def test_ping_request_answered_and_acks_sent() -> None:
    client = Client()
    client.command("connect", 1, {"app": "live"})
    client.pump()
    client.replies()
    client.send(2, 4, 0, 0, b"\x00\x06\x00\x00\x12\x34")  # PingRequest
    client.send(2, 5, 0, 0, (1000).to_bytes(4, "big"))  # our window: ack every 1000 bytes
    client.pump()
    client.send(2, 4, 0, 0, b"\x00\x07\x00\x00\x00\x09")  # PingResponse from the client
    assert client.pump() == [PingResponse(9)]
    client.send(6, 18, 0, 0, b"\x05" * 1200)  # more than a window's worth
    client.pump()
    kinds = [(m.type_id, bytes(m.payload)) for m, _ in client.replies()]
    assert (4, b"\x00\x07\x00\x00\x12\x34") in kinds
    assert any(t == 3 for t, _ in kinds)


def test_command_before_connect_is_a_protocol_error() -> None:
    client = Client()
    client.command("createStream", 2, None)
    with pytest.raises(RemoteProtocolError, match="before connect"):
        client.pump()


def test_amf3_command_and_aggregate_message() -> None:
    client = Client()
    client.send(3, 17, 0, 0, b"\x00" + amf0.encode_values("connect", 1, {"app": "live"}))
    client.command("createStream", 2, None)
    client.command("publish", 3, None, "k", "live", msid=1)
    request = client.pump()[-1]
    client.conn.accept_publish(request.stream_id)
    tag = lambda t, ts, body: (  # noqa: E731
        bytes([t]) + len(body).to_bytes(3, "big") + ts.to_bytes(3, "big") + b"\x00\x00\x00\x00"
        + body + (11 + len(body)).to_bytes(4, "big")
    )
    client.send(6, 22, 1, 1000, tag(9, 500, b"\x27\x01v") + tag(8, 520, b"\xaf\x01a"))
    assert client.pump() == [VideoData(1, 1000, b"\x27\x01v"), AudioData(1, 1020, b"\xaf\x01a")]


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=4000))
def test_fuzz_after_handshake_only_remote_protocol_errors(data: bytes) -> None:
    client = Client()
    try:
        client.conn.receive_data(data)
        for _ in range(5000):
            event = client.conn.next_event()
            if event is None:
                if client.conn.paused:
                    client.conn.accept_publish(client.conn._paused_for)  # type: ignore[arg-type]
                    continue
                break
    except RemoteProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([3, 4, 6]), st.sampled_from([8, 9, 15, 17, 18, 20, 22]),
                          st.binary(max_size=300)), max_size=20))
def test_fuzz_wellformed_chunks_with_garbage_bodies(msgs) -> None:
    client = Client()
    client.command("connect", 1, {"app": "live"})
    try:
        for csid, type_id, body in msgs:
            client.send(csid, type_id, 1, 0, body)
        client.pump()
    except RemoteProtocolError:
        pass
