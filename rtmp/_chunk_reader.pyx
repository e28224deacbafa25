# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The compiled ChunkReader: rtmp.chunk.ChunkReader's parsing loop in C.

Same contract, same limits, same errors (rtmp.chunk holds the reference in pure
Python; tests run both and compare them). What is different is only how: the
chunk headers are read from the buffer's bytes without Python integers, a
single-chunk payload is copied once (straight into its bytes object), a
multi-chunk one is assembled in place in the bytes object it becomes (no parts
list, no join), and read_media gathers a whole run of media without a Message
object per frame. Chosen by rtmp.chunk unless MEDIASERVER_NO_EXTENSIONS is set.
"""

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport int64_t
from libc.string cimport memcpy, memmove

from .chunk import (
    ABORT,
    AUDIO,
    DEFAULT_CHUNK_SIZE,
    EXTENDED_TIMESTAMP,
    MAX_CHUNK_SIZE,
    MAX_CHUNK_STREAMS,
    MAX_MESSAGE_SIZE,
    MAX_PENDING_BYTES,
    SET_CHUNK_SIZE,
    TIMESTAMP_MASK,
    VIDEO,
    Message,
)
from .errors import RemoteProtocolError

cdef int64_t _EXTENDED = EXTENDED_TIMESTAMP
cdef int64_t _MASK = TIMESTAMP_MASK
cdef int _AUDIO = AUDIO
cdef int _VIDEO = VIDEO
cdef int _ABORT = ABORT
cdef int _SET_CHUNK_SIZE = SET_CHUNK_SIZE
cdef int64_t _MAX_CHUNK_SIZE = MAX_CHUNK_SIZE
cdef Py_ssize_t[4] _HEADER_SIZE = [11, 7, 3, 0]
# The input buffer grows in steps of this and keeps its size between reads: a read
# lands behind the partial chunk the last one left with no allocation, where a
# bytearray cut at the front and appended to was reallocated twice a read (glibc's
# _int_malloc was a tenth of the whole server's CPU at 100 publishers).
cdef Py_ssize_t _BUFFER_STEP = 64 * 1024
# A buffer a burst made bigger than this is given back once it is four times what
# is in use, so an idle publisher does not keep a burst's worth of memory.
cdef Py_ssize_t _BUFFER_KEEP = 256 * 1024


cdef inline int64_t _u32(const unsigned char* p) noexcept:
    return (<int64_t>p[0] << 24) | (<int64_t>p[1] << 16) | (<int64_t>p[2] << 8) | p[3]


cdef inline int64_t _u24(const unsigned char* p) noexcept:
    return (<int64_t>p[0] << 16) | (<int64_t>p[1] << 8) | p[2]


cdef class _ChunkStreamState:
    """What the previous chunk on one chunk stream id left for the next to reuse."""

    cdef int64_t timestamp
    cdef int64_t delta
    cdef int64_t length
    cdef int type_id
    cdef int64_t stream_id
    cdef bint extended
    cdef int64_t ext_field
    cdef object payload  # the bytes a multi-chunk message is assembled in, or None
    cdef int64_t received


cdef class ChunkReader:
    """Reassembles messages; raises RemoteProtocolError on anything malformed."""

    cdef public int64_t chunk_size
    cdef public int64_t max_message_size
    cdef public int64_t max_chunk_streams
    cdef public int64_t max_pending_bytes
    cdef public int64_t bytes_received
    cdef bytearray _buf  # input: bytes _pos.._end are unparsed, the rest is room
    cdef Py_ssize_t _pos
    cdef Py_ssize_t _end
    cdef dict _streams
    cdef int64_t _pending_bytes

    def __init__(self, max_message_size=MAX_MESSAGE_SIZE, max_chunk_streams=MAX_CHUNK_STREAMS,
                 max_pending_bytes=MAX_PENDING_BYTES):
        self.chunk_size = DEFAULT_CHUNK_SIZE
        self.max_message_size = max_message_size
        self.max_chunk_streams = max_chunk_streams
        self.max_pending_bytes = max_pending_bytes
        self.bytes_received = 0
        self._buf = bytearray()
        self._pos = 0
        self._end = 0
        self._streams = {}
        self._pending_bytes = 0

    def feed(self, data):
        cdef const unsigned char[::1] src = data
        cdef Py_ssize_t n = src.shape[0]
        cdef Py_ssize_t left = self._end - self._pos
        cdef Py_ssize_t needed = left + n
        cdef Py_ssize_t capacity = PyByteArray_GET_SIZE(self._buf)
        cdef char* base = PyByteArray_AS_STRING(self._buf)
        self.bytes_received += n
        if self._pos:
            if left:
                memmove(base, base + self._pos, left)
            self._pos = 0
            self._end = left
        if needed > capacity or (capacity > _BUFFER_KEEP and needed * 4 < capacity):
            capacity = (needed // _BUFFER_STEP + 1) * _BUFFER_STEP
            PyByteArray_Resize(self._buf, capacity)
            base = PyByteArray_AS_STRING(self._buf)
        if n:
            memcpy(base + self._end, &src[0], n)
        self._end = needed

    def next_message(self):
        """The next complete message, or None if more bytes are needed."""
        return self._next(None, -1, 0)

    def read_media(self, list frames, int64_t stream_id, Py_ssize_t limit):
        """Take a run of one stream's media; hand back the first other message
        (see rtmp.chunk.ChunkReader.read_media)."""
        if len(frames) >= limit:
            return None
        return self._next(frames, stream_id, limit)

    cdef object _next(self, list frames, int64_t media_stream, Py_ssize_t limit):
        cdef bytearray data = self._buf
        cdef Py_ssize_t n = self._end
        cdef const unsigned char* buf = <const unsigned char*>PyByteArray_AS_STRING(data)
        cdef Py_ssize_t pos = self._pos
        cdef Py_ssize_t p, header_end, end
        cdef int64_t size, remaining, length, ts_field, ext_field, value, csid
        cdef int b0, fmt
        cdef bint continuing, extended
        cdef _ChunkStreamState st
        cdef dict streams = self._streams
        cdef object payload
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
                csid = buf[pos + 1] + (<int64_t>buf[pos + 2] << 8) + 64
                p = pos + 3
            st = streams.get(csid)
            if st is None:
                if fmt != 0:
                    self._fail(f"chunk stream {csid} starts with a type {fmt} header, not type 0")
                if len(streams) >= self.max_chunk_streams:
                    self._fail(f"more than {self.max_chunk_streams} chunk streams")
                st = _ChunkStreamState()
                streams[csid] = st
            header_end = p + _HEADER_SIZE[fmt]
            if n < header_end:
                break
            continuing = st.received > 0
            extended = False
            ts_field = 0
            if fmt == 3:
                ext_field = st.ext_field
                if st.extended:
                    if n < header_end + 4:
                        break
                    value = _u32(buf + header_end)
                    if not continuing:
                        ext_field = value
                        header_end += 4
                    elif value == st.ext_field or value == st.timestamp:
                        # Continuation chunks repeat the extended timestamp or omit it.
                        header_end += 4
                length = st.length
            else:
                if continuing:
                    self._fail(
                        f"type {fmt} header on chunk stream {csid} in the middle of a message"
                    )
                ts_field = _u24(buf + p)
                extended = ts_field == _EXTENDED
                if extended:
                    if n < header_end + 4:
                        break
                    ts_field = _u32(buf + header_end)
                    header_end += 4
                if fmt <= 1:
                    length = _u24(buf + p + 3)
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
                    st.stream_id = (buf[p + 7] | (<int64_t>buf[p + 8] << 8)
                                    | (<int64_t>buf[p + 9] << 16) | (<int64_t>buf[p + 10] << 24))
                    st.type_id = buf[p + 6]
                    st.extended = extended
                elif fmt == 3:
                    if st.extended:
                        st.timestamp = (st.timestamp + ext_field) & _MASK
                        st.delta = ext_field
                    else:
                        st.timestamp = (st.timestamp + st.delta) & _MASK
                else:
                    st.delta = ts_field
                    st.timestamp = (st.timestamp + ts_field) & _MASK
                    if fmt == 1:
                        st.type_id = buf[p + 6]
                    st.extended = extended
                st.ext_field = ext_field
                st.length = length
            pos = end
            if not continuing and size == length:
                # Single-chunk message: the common case for audio and commands.
                payload = PyBytes_FromStringAndSize(<const char*>buf + header_end, size)
            else:
                if not continuing:
                    if self._pending_bytes + length > self.max_pending_bytes:
                        self._fail("too many bytes pending in partially received messages")
                    self._pending_bytes += length
                    # Filled before anyone else sees it, then handed out as immutable bytes.
                    st.payload = PyBytes_FromStringAndSize(NULL, length)
                memcpy(PyBytes_AS_STRING(st.payload) + st.received, buf + header_end, size)
                st.received += size
                if st.received < length:
                    continue
                payload = st.payload
                st.payload = None
                st.received = 0
                self._pending_bytes -= length
            if frames is not None and st.stream_id == media_stream and (
                    st.type_id == _AUDIO or st.type_id == _VIDEO):
                if length:  # empty media messages are keep-alives
                    frames.append((st.type_id, st.timestamp, payload))
                    if len(frames) >= limit:
                        break
                continue
            self._pos = pos
            return self._complete(csid, st, payload)
        self._pos = pos
        return None

    cdef object _complete(self, int64_t csid, _ChunkStreamState st, object payload):
        msg = Message(csid, st.type_id, st.stream_id, st.timestamp, payload)
        if st.type_id <= _ABORT and st.stream_id == 0:
            self._apply_control(st.type_id, payload)
        return msg

    cdef void _apply_control(self, int type_id, bytes payload) except *:
        cdef _ChunkStreamState st
        if len(payload) < 4:
            self._fail(f"protocol control message type {type_id} shorter than 4 bytes")
        cdef int64_t value = _u32(<const unsigned char*>PyBytes_AS_STRING(payload))
        cdef int64_t size
        if type_id == _SET_CHUNK_SIZE:
            size = value & _MAX_CHUNK_SIZE
            if size < 1:
                self._fail("Set Chunk Size of 0")
            self.chunk_size = size
        elif type_id == _ABORT:
            st = self._streams.get(value)
            if st is not None and st.received:
                self._pending_bytes -= st.length
                st.payload = None
                st.received = 0

    cdef void _fail(self, str reason) except *:
        raise RemoteProtocolError(reason)
