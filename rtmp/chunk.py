"""RTMP chunk stream: reassembling messages from chunks, and chunking messages.

Sans-I/O: `ChunkReader.feed()` takes bytes, `next_message()` hands back whole
messages. Set Chunk Size and Abort are applied inside the reader the moment
their message completes, because the very next chunk (often in the same TCP
segment, as OBS sends SetChunkSize together with `connect`) is already cut
with the new size.
"""

from __future__ import annotations

import struct

from .errors import RemoteProtocolError
from .extensions import extensions_wanted

DEFAULT_CHUNK_SIZE = 128

# Largest message we reassemble. A 4K keyframe at high bitrate stays under 4 MiB;
# anything bigger from an encoder is a bug or an attack, and each pending message
# is buffered whole in memory.
MAX_MESSAGE_SIZE = 8 * 1024 * 1024

# Encoders use 3-6 chunk streams (control, command, audio, video, data). A peer
# opening hundreds is probing for per-stream state exhaustion.
MAX_CHUNK_STREAMS = 64

# Bytes held across all partially received messages of one connection: bounds the
# memory one connection can pin, whatever it does with chunk interleaving.
MAX_PENDING_BYTES = 16 * 1024 * 1024

# Largest chunk size the spec allows (31 bits).
MAX_CHUNK_SIZE = 0x7FFFFFFF

EXTENDED_TIMESTAMP = 0xFFFFFF
TIMESTAMP_MASK = 0xFFFFFFFF

# Protocol control message types (chunk stream 2, message stream 0).
SET_CHUNK_SIZE = 1
ABORT = 2
ACKNOWLEDGEMENT = 3
USER_CONTROL = 4
WINDOW_ACK_SIZE = 5
SET_PEER_BANDWIDTH = 6
# Media message types (what read_media gathers).
AUDIO = 8
VIDEO = 9

_MESSAGE_HEADER_SIZE = (11, 7, 3, 0)
_U32 = struct.Struct(">I")
_U32LE = struct.Struct("<I")


class Message:
    """One reassembled RTMP message."""

    __slots__ = ("csid", "payload", "stream_id", "timestamp", "type_id")

    def __init__(
        self, csid: int, type_id: int, stream_id: int, timestamp: int, payload: bytes | bytearray
    ) -> None:
        self.csid = csid
        self.type_id = type_id
        self.stream_id = stream_id
        self.timestamp = timestamp
        self.payload = payload

    def __repr__(self) -> str:
        return (
            f"Message(csid={self.csid}, type={self.type_id}, msid={self.stream_id}, "
            f"ts={self.timestamp}, len={len(self.payload)})"
        )


class _ChunkStreamState:
    """What the previous chunk on one chunk stream id left for the next to reuse."""

    __slots__ = (
        "delta",
        "ext_field",
        "extended",
        "length",
        "parts",
        "received",
        "stream_id",
        "timestamp",
        "type_id",
    )

    def __init__(self) -> None:
        self.timestamp = 0
        self.delta = 0
        self.length = 0
        self.type_id = 0
        self.stream_id = 0
        self.extended = False
        self.ext_field = 0
        self.parts: list[bytearray] | None = None  # the chunks of a message not yet complete
        self.received = 0


class ChunkReader:
    """Reassembles messages; raises RemoteProtocolError on anything malformed."""

    def __init__(
        self,
        max_message_size: int = MAX_MESSAGE_SIZE,
        max_chunk_streams: int = MAX_CHUNK_STREAMS,
        max_pending_bytes: int = MAX_PENDING_BYTES,
    ) -> None:
        self.chunk_size = DEFAULT_CHUNK_SIZE
        self.max_message_size = max_message_size
        self.max_chunk_streams = max_chunk_streams
        self.max_pending_bytes = max_pending_bytes
        self.bytes_received = 0
        self._buf = bytearray()
        self._pos = 0
        self._streams: dict[int, _ChunkStreamState] = {}
        self._pending_bytes = 0

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        self.bytes_received += len(data)
        buf = self._buf
        if self._pos:
            if self._pos >= len(buf):
                buf.clear()
            else:
                del buf[: self._pos]
            self._pos = 0
        buf += data

    def next_message(self) -> Message | None:
        """The next complete message, or None if more bytes are needed."""
        buf = self._buf
        n = len(buf)
        pos = self._pos
        streams = self._streams
        while pos < n:
            b0 = buf[pos]
            fmt = b0 >> 6
            csid = b0 & 0x3F
            p = pos + 1
            if csid == 0:
                if n < pos + 2:
                    break
                csid = buf[pos + 1] + 64
                p = pos + 2
            elif csid == 1:
                if n < pos + 3:
                    break
                csid = buf[pos + 1] + (buf[pos + 2] << 8) + 64
                p = pos + 3
            st = streams.get(csid)
            if st is None:
                if fmt != 0:
                    self._fail(f"chunk stream {csid} starts with a type {fmt} header, not type 0")
                if len(streams) >= self.max_chunk_streams:
                    self._fail(f"more than {self.max_chunk_streams} chunk streams")
                st = _ChunkStreamState()
                streams[csid] = st
            header_end = p + _MESSAGE_HEADER_SIZE[fmt]
            if n < header_end:
                break
            continuing = st.received > 0
            if fmt == 3:
                ext_field = st.ext_field
                if st.extended:
                    if n < header_end + 4:
                        break
                    value = _U32.unpack_from(buf, header_end)[0]
                    if not continuing:
                        ext_field = value
                        header_end += 4
                    elif value in (st.ext_field, st.timestamp):
                        # Continuation chunks repeat the extended timestamp (some
                        # writers put the delta there, some the absolute time);
                        # librtmp-era clients omit it, so accept both.
                        header_end += 4
                length = st.length
            else:
                if continuing:
                    self._fail(
                        f"type {fmt} header on chunk stream {csid} in the middle of a message"
                    )
                ts_field = (buf[p] << 16) | (buf[p + 1] << 8) | buf[p + 2]
                extended = ts_field == EXTENDED_TIMESTAMP
                if extended:
                    if n < header_end + 4:
                        break
                    ts_field = _U32.unpack_from(buf, header_end)[0]
                    header_end += 4
                if fmt <= 1:
                    length = (buf[p + 3] << 16) | (buf[p + 4] << 8) | buf[p + 5]
                    if length > self.max_message_size:
                        self._fail(
                            f"message of {length} bytes exceeds the limit of "
                            f"{self.max_message_size}"
                        )
                else:
                    length = st.length
                ext_field = ts_field
            remaining = length - st.received
            size = remaining if remaining < self.chunk_size else self.chunk_size
            end = header_end + size
            if n < end:
                break
            # The whole chunk is here: commit its header to the chunk stream state.
            if not continuing:
                if fmt == 0:
                    st.timestamp = ts_field
                    st.delta = ts_field
                    st.stream_id = _U32LE.unpack_from(buf, p + 7)[0]
                    st.type_id = buf[p + 6]
                    st.extended = extended
                elif fmt == 3:
                    st.timestamp = (st.timestamp + ext_field if st.extended else
                                    st.timestamp + st.delta) & TIMESTAMP_MASK
                    if st.extended:
                        st.delta = ext_field
                else:
                    st.delta = ts_field
                    st.timestamp = (st.timestamp + ts_field) & TIMESTAMP_MASK
                    if fmt == 1:
                        st.type_id = buf[p + 6]
                    st.extended = extended
                st.ext_field = ext_field
                st.length = length
            pos = end
            # Payloads are immutable bytes: the media layers keep views of them, and
            # a mutable payload would have to be copied again downstream.
            if not continuing and size == length:
                # Single-chunk message: the common case for audio and commands.
                self._pos = pos
                return self._complete(csid, st, bytes(buf[header_end:end]))
            if not continuing:
                if self._pending_bytes + length > self.max_pending_bytes:
                    self._fail("too many bytes pending in partially received messages")
                self._pending_bytes += length
                st.parts = [buf[header_end:end]]
            else:
                st.parts.append(buf[header_end:end])  # type: ignore[union-attr]
            st.received += size
            if st.received >= length:
                payload = b"".join(st.parts)  # type: ignore[arg-type]
                st.parts = None
                st.received = 0
                self._pending_bytes -= length
                self._pos = pos
                return self._complete(csid, st, payload)
        self._pos = pos
        return None

    def read_media(self, frames: list[tuple[int, int, bytes]], stream_id: int, limit: int
                   ) -> Message | None:
        """Take a run of one stream's media; hand back the first other message.

        Appends ``(type_id, timestamp, payload)`` for each audio or video message
        on message stream `stream_id` (empty ones are skipped: keep-alives), until
        a message of any other kind or stream comes (returned), no complete message
        is left, or `frames` holds `limit` (None for both). One call per read, so
        a compiled reader keeps the whole run out of the interpreter.
        """
        while len(frames) < limit:
            msg = self.next_message()
            if msg is None:
                return None
            type_id = msg.type_id
            if type_id in (AUDIO, VIDEO) and msg.stream_id == stream_id:
                if msg.payload:
                    frames.append((type_id, msg.timestamp, msg.payload))  # type: ignore[arg-type]
                continue
            return msg
        return None

    def _complete(self, csid: int, st: _ChunkStreamState, payload: bytes | bytearray) -> Message:
        msg = Message(csid, st.type_id, st.stream_id, st.timestamp, payload)
        if msg.type_id <= ABORT and msg.stream_id == 0:
            self._apply_control(msg)
        return msg

    def _apply_control(self, msg: Message) -> None:
        if len(msg.payload) < 4:
            self._fail(f"protocol control message type {msg.type_id} shorter than 4 bytes")
        value = _U32.unpack_from(msg.payload)[0]
        if msg.type_id == SET_CHUNK_SIZE:
            size = value & MAX_CHUNK_SIZE
            if size < 1:
                self._fail("Set Chunk Size of 0")
            self.chunk_size = size
        elif msg.type_id == ABORT:
            st = self._streams.get(value)
            if st is not None and st.received:
                self._pending_bytes -= st.length
                st.parts = None
                st.received = 0

    def _fail(self, reason: str) -> None:
        raise RemoteProtocolError(reason)


class ChunkWriter:
    """Cuts messages into chunks, choosing the most compact header each time."""

    def __init__(self, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        self.chunk_size = chunk_size
        # csid -> (stream_id, type_id, length, timestamp, delta, ext_field, extended)
        self._last: dict[int, tuple[int, int, int, int, int, int, bool]] = {}

    def write(
        self,
        csid: int,
        type_id: int,
        stream_id: int,
        timestamp: int,
        payload: bytes | bytearray | memoryview,
        fmt: int | None = None,
    ) -> bytes:
        """Chunks of one message. `fmt` forces a header type (tests); None picks."""
        if not 2 <= csid <= 65599:
            raise ValueError(f"chunk stream id {csid} out of range 2..65599")
        timestamp &= TIMESTAMP_MASK
        length = len(payload)
        last = self._last.get(csid)
        if fmt is None:
            fmt = self._choose_format(last, type_id, stream_id, timestamp, length)
        elif last is None and fmt != 0:
            raise ValueError("the first message on a chunk stream needs a type 0 header")
        if fmt == 0:
            field = timestamp
            delta = timestamp
        else:
            assert last is not None
            delta = (timestamp - last[3]) & TIMESTAMP_MASK
            field = delta
            if fmt == 3 and delta != last[4]:
                raise ValueError("a type 3 header needs the same delta as before")
        extended = field >= EXTENDED_TIMESTAMP
        if fmt == 3:
            extended = last[6]  # type: ignore[index]
        basic_first = _basic_header(fmt, csid)
        header = bytearray(basic_first)
        ts3 = EXTENDED_TIMESTAMP if extended else field
        if fmt == 0:
            header += ts3.to_bytes(3, "big") + length.to_bytes(3, "big") + bytes([type_id])
            header += _U32LE.pack(stream_id)
        elif fmt == 1:
            header += ts3.to_bytes(3, "big") + length.to_bytes(3, "big") + bytes([type_id])
        elif fmt == 2:
            header += ts3.to_bytes(3, "big")
        ext = _U32.pack(field) if extended else b""
        header += ext
        self._last[csid] = (stream_id, type_id, length, timestamp, delta, field, extended)
        size = self.chunk_size
        if length <= size:
            return bytes(header) + bytes(payload)
        out = bytearray(header)
        out += payload[:size]
        continuation = _basic_header(3, csid) + ext
        view = memoryview(payload)
        for start in range(size, length, size):
            out += continuation
            out += view[start : start + size]
        return bytes(out)

    @staticmethod
    def _choose_format(
        last: tuple[int, int, int, int, int, int, bool] | None,
        type_id: int,
        stream_id: int,
        timestamp: int,
        length: int,
    ) -> int:
        if last is None or last[0] != stream_id or timestamp < last[3]:
            return 0
        delta = timestamp - last[3]
        if last[1] != type_id or last[2] != length:
            return 1
        if delta == last[4] and (delta >= EXTENDED_TIMESTAMP) == last[6]:
            return 3
        return 2

    def forget(self, csid: int) -> None:
        self._last.pop(csid, None)


def _basic_header(fmt: int, csid: int) -> bytes:
    if csid < 64:
        return bytes([(fmt << 6) | csid])
    if csid < 320:
        return bytes([fmt << 6, csid - 64])
    rest = csid - 64
    return bytes([(fmt << 6) | 1, rest & 0xFF, rest >> 8])


# The pure-Python reader above is the reference. The compiled one
# (rtmp/_chunk_reader.pyx) keeps the same contract and takes its place unless
# MEDIASERVER_NO_EXTENSIONS is set (see rtmp.extensions) or it was not built.
PurePythonChunkReader = ChunkReader
COMPILED_READER = False
if extensions_wanted():
    try:
        from ._chunk_reader import ChunkReader  # type: ignore[assignment]
    except ImportError:
        pass
    else:
        COMPILED_READER = True
