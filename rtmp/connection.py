"""ServerConnection: the RTMP server side of one TCP connection, sans-I/O.

Bytes go in with receive_data(), events come out of next_event(), answers go
out through data_to_send(). Parsing is lazy: messages are cut only as events
are pulled, so a PublishRequested pauses the connection (next_event() returns
None) until the owner calls accept_publish() or reject_publish(); the media
that follows a publish is never parsed, nor dropped, before the decision.
"""

from __future__ import annotations

import enum
import struct
from collections import deque
from collections.abc import Callable
from typing import Any

from . import amf0
from .chunk import (
    ACKNOWLEDGEMENT,
    MAX_CHUNK_STREAMS,
    MAX_MESSAGE_SIZE,
    SET_CHUNK_SIZE,
    SET_PEER_BANDWIDTH,
    USER_CONTROL,
    WINDOW_ACK_SIZE,
    ChunkReader,
    ChunkWriter,
    Message,
)
from .errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from .events import (
    AudioData,
    Connected,
    ConnectRejected,
    Event,
    HandshakeComplete,
    MediaReceived,
    Metadata,
    PingResponse,
    PlayRequested,
    PublishRequested,
    UnhandledCommand,
    Unpublished,
    VideoData,
)
from .handshake import HANDSHAKE_SIZE, build_server_response, check_c0, find_client_digest

# Message type ids (RTMP spec 7.1).
MSG_AUDIO = 8
MSG_VIDEO = 9
MSG_DATA_AMF3 = 15
MSG_COMMAND_AMF3 = 17
MSG_DATA_AMF0 = 18
MSG_COMMAND_AMF0 = 20
MSG_AGGREGATE = 22

# User control event types.
UC_STREAM_BEGIN = 0
UC_STREAM_EOF = 1
UC_PING_REQUEST = 6
UC_PING_RESPONSE = 7

# Chunk streams we send on, as FMS/nginx-rtmp/SRS do (the OBS capture shows cs 2, 3, 5).
CS_CONTROL = 2
CS_COMMAND = 3
CS_STREAM_STATUS = 5

# What we announce: acknowledgement window and peer bandwidth, as servers in the field do.
DEFAULT_WINDOW_ACK_SIZE = 5_000_000
# Our outgoing chunk size: big enough that replies go out as one chunk.
DEFAULT_OUT_CHUNK_SIZE = 4096
# createStream calls honoured per connection; encoders use one.
MAX_STREAMS_PER_CONNECTION = 8
# How much of an unknown command's name is echoed in the _error reply: enough to
# read it in a client's log, and a long name cannot make a reply bigger than this.
MAX_ECHOED_NAME = 64
# Media messages in one MediaReceived: a paced encoder sends 10-30 per read, so a
# read is one event; a burst of tiny messages is cut into events of this many so
# that the owner's per-turn budget (counted in messages) still bounds its work.
MAX_MEDIA_PER_EVENT = 64

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_UC_STREAM = struct.Struct(">HI")


class State(enum.Enum):
    AWAIT_C0C1 = "await_c0c1"
    AWAIT_C2 = "await_c2"
    OPEN = "open"
    # We refused a connect or a publish: flush data_to_send(), let the peer say
    # goodbye (what it sends now is read and ignored), then close.
    CLOSING = "closing"
    FAILED = "failed"


# The only connection state changes there are; anything else is a bug on our side.
# A protocol error fails the connection in any state that parses input.
_TRANSITIONS: dict[tuple[State, str], State] = {
    (State.AWAIT_C0C1, "c0c1"): State.AWAIT_C2,
    (State.AWAIT_C2, "c2"): State.OPEN,
    (State.OPEN, "refuse"): State.CLOSING,
    (State.AWAIT_C0C1, "fail"): State.FAILED,
    (State.AWAIT_C2, "fail"): State.FAILED,
    (State.OPEN, "fail"): State.FAILED,
}


class _StreamState(enum.Enum):
    CREATED = "created"
    PUBLISH_PENDING = "publish_pending"
    PUBLISHING = "publishing"


# Per-stream state changes (createStream adds a CREATED stream, deleteStream drops it).
_STREAM_TRANSITIONS: dict[tuple[_StreamState, str], _StreamState] = {
    (_StreamState.CREATED, "publish"): _StreamState.PUBLISH_PENDING,
    (_StreamState.PUBLISH_PENDING, "accept"): _StreamState.PUBLISHING,
    (_StreamState.PUBLISH_PENDING, "reject"): _StreamState.CREATED,
    (_StreamState.PUBLISHING, "unpublish"): _StreamState.CREATED,  # the encoder stopped
    (_StreamState.PUBLISHING, "end"): _StreamState.CREATED,  # we stopped it (kick)
}


class ServerConnection:
    """One RTMP server connection's protocol state."""

    def __init__(
        self,
        *,
        max_message_size: int = MAX_MESSAGE_SIZE,
        max_chunk_streams: int = MAX_CHUNK_STREAMS,
        out_chunk_size: int = DEFAULT_OUT_CHUNK_SIZE,
        window_ack_size: int = DEFAULT_WINDOW_ACK_SIZE,
        app_exists: Callable[[str], bool] | None = None,
        batch_media: bool = False,
    ) -> None:
        """`app_exists` says which applications `connect` may name (None: any).

        `batch_media`: media messages that come back to back are handed out as one
        MediaReceived event instead of an AudioData/VideoData event each.
        """
        self.state = State.AWAIT_C0C1
        self.app: str | None = None
        self.complex_handshake = False
        self._hs = bytearray()
        self._reader = ChunkReader(max_message_size, max_chunk_streams)
        self._writer = ChunkWriter()
        self._out = bytearray()
        self._events: deque[Event] = deque()
        self._streams: dict[int, _StreamState] = {}
        self._next_stream_id = 1
        self._out_chunk_size = out_chunk_size
        self._window_ack_size = window_ack_size
        self._peer_window = 0
        self._bytes_in = 0
        self._last_ack = 0
        self._failure: ProtocolError | None = None
        self._paused_for: int | None = None
        self._app_exists = app_exists
        self._batch_media = batch_media
        # An error met after a run of media was cut: raised once the run is handed out.
        self._deferred: ProtocolError | amf0.AMF0Error | None = None
        self.media_dropped = 0

    # ---- bytes in / out -------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Queue bytes read from the socket; parsing happens in next_event()."""
        if self._failure is not None:
            raise self._failure
        self._bytes_in += len(data)
        if self.state in (State.AWAIT_C0C1, State.AWAIT_C2):
            self._hs += data
        elif self.state is State.OPEN:
            self._reader.feed(data)
        if self._peer_window and self._bytes_in - self._last_ack >= self._peer_window:
            self._last_ack = self._bytes_in
            self._send_control(ACKNOWLEDGEMENT, _U32.pack(self._bytes_in & 0xFFFFFFFF))

    def data_to_send(self) -> bytes:
        """Everything queued for the peer since the last call."""
        if not self._out:
            return b""
        out = bytes(self._out)
        self._out.clear()
        return out

    @property
    def paused(self) -> bool:
        """True while a publish waits for the owner's decision."""
        return self._paused_for is not None

    @property
    def bytes_received(self) -> int:
        return self._bytes_in

    # ---- events ---------------------------------------------------------------------

    def next_event(self) -> Event | None:
        """The next event, or None when more data (or a publish decision) is needed."""
        if self._failure is not None:
            raise self._failure
        try:
            if self._deferred is not None:
                deferred, self._deferred = self._deferred, None
                raise deferred
            return self._next_event()
        except ProtocolError as exc:
            self._fail(exc)
        except amf0.AMF0Error as exc:
            self._fail(RemoteProtocolError(f"malformed AMF0: {exc}"))
        raise AssertionError("unreachable")  # pragma: no cover

    def _next_event(self) -> Event | None:
        while True:
            if self._events:
                return self._events.popleft()
            if self.state is State.AWAIT_C0C1:
                if not self._handshake_c0c1():
                    return None
                continue
            if self.state is State.AWAIT_C2:
                if not self._handshake_c2():
                    return None
                continue
            if self.state is not State.OPEN or self._paused_for is not None:
                return None
            if self._batch_media:
                return self._next_batched()
            msg = self._reader.next_message()
            if msg is None:
                return None
            event = self._handle_message(msg)
            if event is not None:
                return event

    def _next_batched(self) -> Event | None:
        """Like one round of _next_event, with back-to-back media as one MediaReceived.

        A message that yields events ends the run: the run goes out first, then
        those events, in the order the peer sent them. An error met after some
        media is deferred to the next call, so the media before it is not lost.
        """
        pending = self._events
        reader = self._reader
        streams = self._streams
        publishing = _StreamState.PUBLISHING
        frames: list[tuple[int, int, bytes]] = []
        run_stream = -1  # no message stream has this id: no run yet
        while len(frames) < MAX_MEDIA_PER_EVENT:
            try:
                msg = reader.read_media(frames, run_stream, MAX_MEDIA_PER_EVENT)
                if msg is None:
                    break
                type_id = msg.type_id
                if type_id in (MSG_VIDEO, MSG_AUDIO):  # media of a stream other than the run's
                    stream_id = msg.stream_id
                    if streams.get(stream_id) is not publishing:
                        self.media_dropped += 1
                    elif msg.payload:  # empty tags are keep-alives, as in _handle_message
                        if frames:
                            pending.append(MediaReceived(run_stream, frames))
                            frames = []
                        run_stream = stream_id
                        frames.append((type_id, msg.timestamp, msg.payload))  # type: ignore[arg-type]
                    continue
                before = len(pending)
                event = self._handle_message(msg)
            except (ProtocolError, amf0.AMF0Error) as exc:
                if not frames and not pending:
                    raise
                self._deferred = exc
                break
            if event is None and len(pending) == before:
                if streams.get(run_stream) is not publishing:
                    run_stream = -1  # the message ended that stream's publish
                continue
            if frames:
                pending.insert(before, MediaReceived(run_stream, frames))
                frames = []
            if event is not None:
                pending.append(event)
            break
        if frames:
            pending.append(MediaReceived(run_stream, frames))
        return pending.popleft() if pending else None

    def _fail(self, exc: ProtocolError) -> None:
        self._failure = exc
        self._transition("fail")
        raise exc

    def _transition(self, what: str) -> None:
        try:
            self.state = _TRANSITIONS[(self.state, what)]
        except KeyError:
            raise LocalProtocolError(f"cannot {what} in state {self.state.value}") from None

    def _stream_can(self, stream_id: int, what: str) -> bool:
        state = self._streams.get(stream_id)
        return state is not None and (state, what) in _STREAM_TRANSITIONS

    def _stream_transition(self, stream_id: int, what: str) -> None:
        state = self._streams.get(stream_id)
        if state is None or (state, what) not in _STREAM_TRANSITIONS:
            where = "no such stream" if state is None else f"state {state.value}"
            raise LocalProtocolError(f"cannot {what} stream {stream_id} in {where}")
        self._streams[stream_id] = _STREAM_TRANSITIONS[(state, what)]

    # ---- handshake ------------------------------------------------------------------

    def _handshake_c0c1(self) -> bool:
        if not self._hs:
            return False
        check_c0(self._hs[0])
        if len(self._hs) < 1 + HANDSHAKE_SIZE:
            return False
        c1 = bytes(self._hs[1 : 1 + HANDSHAKE_SIZE])
        del self._hs[: 1 + HANDSHAKE_SIZE]
        self.complex_handshake = find_client_digest(c1) is not None
        self._out += build_server_response(c1)
        self._transition("c0c1")
        return True

    def _handshake_c2(self) -> bool:
        if len(self._hs) < HANDSHAKE_SIZE:
            return False
        rest = bytes(self._hs[HANDSHAKE_SIZE:])
        self._hs = bytearray()
        self._transition("c2")
        if rest:
            self._reader.feed(rest)
        self._events.append(HandshakeComplete(self.complex_handshake))
        return True

    # ---- messages -------------------------------------------------------------------

    def _handle_message(self, msg: Message) -> Event | None:
        type_id = msg.type_id
        if type_id in (MSG_VIDEO, MSG_AUDIO):
            if self._streams.get(msg.stream_id) is not _StreamState.PUBLISHING:
                self.media_dropped += 1
                return None
            if not msg.payload:
                return None  # empty tags (some encoders send them as keep-alives)
            if type_id == MSG_VIDEO:
                return VideoData(msg.stream_id, msg.timestamp, msg.payload)
            return AudioData(msg.stream_id, msg.timestamp, msg.payload)
        if type_id == MSG_COMMAND_AMF0:
            return self._handle_command(msg, amf0.decode_all(msg.payload))
        if type_id == MSG_COMMAND_AMF3:
            return self._handle_command(msg, amf0.decode_all(_strip_amf3_prefix(msg.payload)))
        if type_id == MSG_DATA_AMF0:
            return self._handle_data(msg, amf0.decode_all(msg.payload))
        if type_id == MSG_DATA_AMF3:
            return self._handle_data(msg, amf0.decode_all(_strip_amf3_prefix(msg.payload)))
        if type_id == USER_CONTROL:
            return self._handle_user_control(msg.payload)
        if type_id == WINDOW_ACK_SIZE:
            if len(msg.payload) < 4:
                raise RemoteProtocolError("Window Acknowledgement Size shorter than 4 bytes")
            self._peer_window = _U32.unpack_from(msg.payload)[0]
            return None
        if type_id == MSG_AGGREGATE:
            self._split_aggregate(msg)
            return None
        # SetChunkSize/Abort were applied by the reader; acks and peer bandwidth
        # need no answer from a server; unknown types are ignored as the spec allows.
        return None

    def _handle_user_control(self, payload: bytes | bytearray) -> Event | None:
        if len(payload) < 2:
            raise RemoteProtocolError("User Control message shorter than 2 bytes")
        kind = _U16.unpack_from(payload)[0]
        if kind == UC_PING_REQUEST and len(payload) >= 6:
            self._send_control(USER_CONTROL, _U16.pack(UC_PING_RESPONSE) + bytes(payload[2:6]))
        elif kind == UC_PING_RESPONSE and len(payload) >= 6:
            return PingResponse(_U32.unpack_from(payload, 2)[0])
        return None

    def _split_aggregate(self, msg: Message) -> None:
        """Aggregate messages carry FLV tags back to back (header, body, back-pointer)."""
        if self._streams.get(msg.stream_id) is not _StreamState.PUBLISHING:
            self.media_dropped += 1
            return
        data = memoryview(msg.payload)
        pos = 0
        first_ts: int | None = None
        while pos + 11 <= len(data):
            tag_type = data[pos]
            size = int.from_bytes(data[pos + 1 : pos + 4], "big")
            ts = int.from_bytes(data[pos + 4 : pos + 7], "big") | (data[pos + 7] << 24)
            body_end = pos + 11 + size
            if body_end + 4 > len(data):
                raise RemoteProtocolError("aggregate message sub-tag runs past its end")
            if first_ts is None:
                first_ts = ts
            timestamp = (msg.timestamp + ts - first_ts) & 0xFFFFFFFF
            body = bytes(data[pos + 11 : body_end])
            if body and tag_type == MSG_VIDEO:
                self._events.append(VideoData(msg.stream_id, timestamp, body))
            elif body and tag_type == MSG_AUDIO:
                self._events.append(AudioData(msg.stream_id, timestamp, body))
            pos = body_end + 4

    def _handle_data(self, msg: Message, values: list[Any]) -> Event | None:
        if values and values[0] == "@setDataFrame":
            values = values[1:]
        if (
            len(values) >= 2
            and values[0] == "onMetaData"
            and isinstance(values[1], dict)
            and msg.stream_id in self._streams
        ):
            return Metadata(msg.stream_id, dict(values[1]))
        return None

    def _handle_command(self, msg: Message, values: list[Any]) -> Event | None:
        if not values or not isinstance(values[0], str):
            raise RemoteProtocolError("command message without a command name")
        name = values[0]
        txn = values[1] if len(values) > 1 and isinstance(values[1], float | int) else 0.0
        args = values[3:]
        if name == "connect":
            command_object = values[2] if len(values) > 2 else None
            return self._on_connect(txn, command_object if isinstance(command_object, dict) else {})
        if self.app is None:
            raise RemoteProtocolError(f"command {name!r} before connect")
        if name == "createStream":
            return self._on_create_stream(txn)
        if name == "publish":
            return self._on_publish(msg.stream_id, args)
        if name in ("releaseStream", "getStreamLength", "checkBandwidth", "_checkbw"):
            if txn:
                self._send_command(CS_COMMAND, 0, "_result", txn, None, amf0.UNDEFINED)
            return None
        if name == "FCPublish":
            if txn:
                self._send_command(CS_COMMAND, 0, "_result", txn, None, amf0.UNDEFINED)
            self._send_command(
                CS_COMMAND, 0, "onFCPublish", 0, None,
                {"code": "NetStream.Publish.Start", "description": _first_str(args)},
            )
            return None
        if name == "FCUnpublish":
            self._send_command(
                CS_COMMAND, 0, "onFCUnpublish", 0, None,
                {"code": "NetStream.Unpublish.Success", "description": _first_str(args)},
            )
            return self._end_publishing(None, "FCUnpublish")
        if name == "deleteStream":
            stream_id = int(args[0]) if args and isinstance(args[0], float | int) else 0
            event = self._end_publishing(stream_id, "deleteStream")
            self._streams.pop(stream_id, None)
            return event
        if name == "closeStream":
            return self._end_publishing(msg.stream_id, "closeStream")
        if name == "play":
            self._send_status(
                msg.stream_id, "error", "NetStream.Play.Failed",
                "this server does not serve RTMP playback; play the HLS URL instead",
            )
            return PlayRequested(msg.stream_id, _first_str(args))
        if name in ("_result", "_error", "onStatus", "onBWDone", "_checkbw"):
            return None
        if txn:
            self._send_command(
                CS_COMMAND, 0, "_error", txn, None,
                {"level": "error", "code": "NetConnection.Call.Failed",
                 "description": f"unknown command {name[:MAX_ECHOED_NAME]}"},
            )
        return UnhandledCommand(name, msg.stream_id)

    def _on_connect(self, txn: float, command_object: dict[str, Any]) -> Event:
        if self.app is not None:
            raise RemoteProtocolError("second connect on one connection")
        raw_app = command_object.get("app")
        app = raw_app.strip("/") if isinstance(raw_app, str) else ""
        if self._app_exists is not None and not self._app_exists(app):
            # As nginx-rtmp does: refuse at connect, before the encoder creates a stream.
            self._send_command(
                CS_COMMAND, 0, "_error", txn, None,
                {"level": "error", "code": "NetConnection.Connect.Rejected",
                 "description": f"unknown application {app[:MAX_ECHOED_NAME]!r}"},
            )
            self._transition("refuse")
            return ConnectRejected(app)
        self.app = app
        tc_url = command_object.get("tcUrl")
        flash_ver = command_object.get("flashVer") or command_object.get("flashver")
        encoding = command_object.get("objectEncoding", 0)
        self._send_control(WINDOW_ACK_SIZE, _U32.pack(self._window_ack_size))
        self._send_control(SET_PEER_BANDWIDTH, _U32.pack(self._window_ack_size) + b"\x02")
        self._send_control(SET_CHUNK_SIZE, _U32.pack(self._out_chunk_size))
        self._writer.chunk_size = self._out_chunk_size
        self._send_command(
            CS_COMMAND, 0, "_result", txn,
            {"fmsVer": "FMS/3,5,7,7009", "capabilities": 31.0, "mode": 1.0},
            {"level": "status", "code": "NetConnection.Connect.Success",
             "description": "Connection succeeded.",
             "objectEncoding": float(encoding) if isinstance(encoding, float | int) else 0.0},
        )
        return Connected(
            app=self.app,
            tc_url=tc_url if isinstance(tc_url, str) else "",
            flash_ver=flash_ver if isinstance(flash_ver, str) else "",
            properties=command_object,
        )

    def _on_create_stream(self, txn: float) -> None:
        if len(self._streams) >= MAX_STREAMS_PER_CONNECTION:
            self._send_command(
                CS_COMMAND, 0, "_error", txn, None,
                {"level": "error", "code": "NetConnection.Call.Failed",
                 "description": "too many streams on one connection"},
            )
            return None
        stream_id = self._next_stream_id
        self._next_stream_id += 1
        self._streams[stream_id] = _StreamState.CREATED
        self._send_command(CS_COMMAND, 0, "_result", txn, None, float(stream_id))
        return None

    def _on_publish(self, stream_id: int, args: list[Any]) -> Event | None:
        name = args[0] if args and isinstance(args[0], str) else ""
        publish_type = args[1] if len(args) > 1 and isinstance(args[1], str) else "live"
        if not self._stream_can(stream_id, "publish"):
            self._send_status(
                stream_id, "error", "NetStream.Publish.BadName",
                "publish on a stream that was not created or is already publishing",
            )
            return None
        self._stream_transition(stream_id, "publish")
        self._paused_for = stream_id
        return PublishRequested(stream_id, name, publish_type, self.app or "")

    def _end_publishing(self, stream_id: int | None, reason: str) -> Event | None:
        for sid in self._streams:
            if (stream_id is None or sid == stream_id) and self._stream_can(sid, "unpublish"):
                self._stream_transition(sid, "unpublish")
                return Unpublished(sid, reason)
        return None

    # ---- owner decisions ------------------------------------------------------------

    def accept_publish(self, stream_id: int, description: str = "Start publishing") -> None:
        if self._paused_for != stream_id:
            raise LocalProtocolError(f"no publish pending on stream {stream_id}")
        self._paused_for = None
        self._stream_transition(stream_id, "accept")
        self._send_control(USER_CONTROL, _UC_STREAM.pack(UC_STREAM_BEGIN, stream_id))
        self._send_status(stream_id, "status", "NetStream.Publish.Start", description)

    def reject_publish(
        self, stream_id: int, description: str, code: str = "NetStream.Publish.BadName"
    ) -> None:
        """Refuse with an onStatus error; the connection then only wants to be closed."""
        if self._paused_for != stream_id:
            raise LocalProtocolError(f"no publish pending on stream {stream_id}")
        self._paused_for = None
        self._stream_transition(stream_id, "reject")
        self._send_status(stream_id, "error", code, description)
        self._transition("refuse")

    def end_publish(self, stream_id: int, description: str) -> None:
        """Tell the publisher we stopped its stream (kick); the owner closes the socket."""
        if self._stream_can(stream_id, "end"):
            self._stream_transition(stream_id, "end")
            self._send_control(USER_CONTROL, _UC_STREAM.pack(UC_STREAM_EOF, stream_id))
            self._send_status(stream_id, "status", "NetStream.Unpublish.Success", description)

    # ---- output helpers -------------------------------------------------------------

    def _send_control(self, type_id: int, payload: bytes) -> None:
        self._out += self._writer.write(CS_CONTROL, type_id, 0, 0, payload)

    def _send_command(self, csid: int, stream_id: int, *values: Any) -> None:
        self._out += self._writer.write(
            csid, MSG_COMMAND_AMF0, stream_id, 0, amf0.encode_values(*values)
        )

    def _send_status(self, stream_id: int, level: str, code: str, description: str) -> None:
        self._send_command(
            CS_STREAM_STATUS, stream_id, "onStatus", 0.0, None,
            {"level": level, "code": code, "description": description},
        )


def _strip_amf3_prefix(payload: bytes | bytearray) -> memoryview:
    """AMF3 command/data messages carry an AMF0 body after a 0x00 format byte."""
    view = memoryview(payload)
    return view[1:] if view[:1] == b"\x00" else view


def _first_str(args: list[Any]) -> str:
    return args[0] if args and isinstance(args[0], str) else ""
