# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Compiled twin of hls.fmp4.pure_build_fragment (the reference): one moof + mdat.

Same arguments, same bytes, same track state after: each track's decode times
(video kept strictly increasing, AAC snapped to its frame clock), durations, the
trun entries and the mdat are written in C into one bytes object of the size
known up front, where the reference packs a list of integers per track and joins
the boxes and payloads. A fragment whose numbers do not fit its fields (a negative
duration after a jump in the feed, an offset past 2 GB) goes to the reference,
which raises what it raises, so the two never differ.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.math cimport fabs, rint
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.string cimport memcpy

from .fmp4 import (
    NON_SYNC_SAMPLE_FLAGS,
    SYNC_SAMPLE_FLAGS,
    _TFHD_BASE_IS_MOOF,
    _TFHD_DEFAULT_FLAGS,
    _TRUN_AUDIO,
    _TRUN_VIDEO,
    pure_build_fragment,
)

cdef uint32_t _SYNC = SYNC_SAMPLE_FLAGS
cdef uint32_t _NON_SYNC = NON_SYNC_SAMPLE_FLAGS
cdef uint32_t _TFHD_VIDEO = _TFHD_BASE_IS_MOOF
cdef uint32_t _TFHD_AUDIO = _TFHD_BASE_IS_MOOF | _TFHD_DEFAULT_FLAGS
cdef uint32_t _TRUN_V = _TRUN_VIDEO
cdef uint32_t _TRUN_A = _TRUN_AUDIO
cdef int64_t _U32_MAX = 0xFFFFFFFF
cdef int64_t _I32_MAX = 0x7FFFFFFF


cdef inline void _put32(char* p, uint64_t v) noexcept:
    p[0] = <char>((v >> 24) & 0xFF)
    p[1] = <char>((v >> 16) & 0xFF)
    p[2] = <char>((v >> 8) & 0xFF)
    p[3] = <char>(v & 0xFF)


cdef inline void _head(char* p, uint64_t size, const char* kind) noexcept:
    _put32(p, size)
    memcpy(p + 4, kind, 4)


cdef inline int64_t _round(double x) noexcept:
    # Python's round() of a float: halves to even, as rint() in the default mode.
    return <int64_t>rint(x)


cdef class _Timing:
    """One track's decode times, durations and (video) composition offsets for this
    fragment, before they are kept."""
    cdef int64_t* ticks
    cdef int64_t* durations
    cdef int64_t* offsets  # NULL for audio
    cdef Py_ssize_t count

    def __dealloc__(self):
        PyMem_Free(self.ticks)
        PyMem_Free(self.durations)
        PyMem_Free(self.offsets)


cdef _Timing _timing(object track, object end, list samples):
    """The reference's decode_times() and durations for `track`, without touching it;
    None if a number would not fit its field (the reference then decides)."""
    cdef Py_ssize_t count = len(samples), i
    cdef _Timing t = _Timing()
    cdef double scale = track.scale
    cdef int64_t tick, last, expected, step, end_tick, cto
    cdef double snap
    cdef bint have
    t.count = count
    t.ticks = <int64_t*>PyMem_Malloc(count * sizeof(int64_t))
    t.durations = <int64_t*>PyMem_Malloc(count * sizeof(int64_t))
    if t.ticks == NULL or t.durations == NULL:
        raise MemoryError()
    for i in range(count):
        t.ticks[i] = _round(<double>(samples[i][0]) * scale)
    if track.is_video:
        have = track.last_dts is not None
        last = track.last_dts if have else 0
        for i in range(count):
            tick = t.ticks[i]
            if have and tick <= last:
                tick = last + 1
                t.ticks[i] = tick
            last = tick
            have = True
    else:
        have = track.next_tick is not None
        expected = track.next_tick if have else 0
        snap = track.snap
        step = track.frame_ticks
        for i in range(count):
            tick = t.ticks[i]
            if have and fabs(<double>(tick - expected)) <= snap:
                tick = expected
                t.ticks[i] = tick
            expected = tick + step
            have = True
    for i in range(count - 1):
        t.durations[i] = t.ticks[i + 1] - t.ticks[i]
    if end is not None and end > t.ticks[count - 1]:
        end_tick = end
        t.durations[count - 1] = end_tick - t.ticks[count - 1]
    elif count > 1:
        t.durations[count - 1] = t.durations[count - 2]
    else:
        t.durations[count - 1] = track.last_duration
    if t.ticks[0] < 0:
        return None
    for i in range(count):
        if t.durations[i] < 0 or t.durations[i] > _U32_MAX:
            return None
    if track.is_video:
        t.offsets = <int64_t*>PyMem_Malloc(count * sizeof(int64_t))
        if t.offsets == NULL:
            raise MemoryError()
        for i in range(count):
            cto = _round(<double>(samples[i][1]) * scale) - t.ticks[i]
            if cto > _U32_MAX:
                return None
            t.offsets[i] = cto if cto > 0 else 0
    return t


cdef Py_ssize_t _traf_size(bint video, Py_ssize_t count) noexcept:
    return 8 + (16 if video else 20) + 20 + 20 + count * (16 if video else 8)


def build_fragment(uint32_t sequence, list tracks, dict ends):
    """See hls.fmp4.pure_build_fragment."""
    cdef Py_ssize_t moof_size = 8 + 16, payload = 0, total, pos, count, i, size
    cdef int64_t data_offset, offset
    cdef list timings = []
    cdef list samples
    cdef _Timing t
    cdef bint video
    cdef object track, sample, data
    cdef char* p
    cdef Py_buffer view
    for track in tracks:
        samples = track.samples
        t = _timing(track, ends.get(track.track_id), samples)
        if t is None:
            return pure_build_fragment(sequence, tracks, ends)
        timings.append(t)
        moof_size += _traf_size(track.is_video, len(samples))
        payload += track.payload_bytes
    if moof_size + 8 + payload > _I32_MAX:
        return pure_build_fragment(sequence, tracks, ends)
    total = moof_size + 8 + payload
    out = PyBytes_FromStringAndSize(NULL, total)
    p = PyBytes_AS_STRING(out)
    _head(p, moof_size, b"moof")
    _head(p + 8, 16, b"mfhd")
    _put32(p + 16, 0)
    _put32(p + 20, sequence)
    pos = 24
    offset = moof_size + 8
    for track, t in zip(tracks, timings):
        samples = track.samples
        count = t.count
        video = track.is_video
        _head(p + pos, _traf_size(video, count), b"traf")
        pos += 8
        if video:
            _head(p + pos, 16, b"tfhd")
            _put32(p + pos + 8, _TFHD_VIDEO)
            _put32(p + pos + 12, <uint32_t>track.track_id)
            pos += 16
        else:
            _head(p + pos, 20, b"tfhd")
            _put32(p + pos + 8, _TFHD_AUDIO)
            _put32(p + pos + 12, <uint32_t>track.track_id)
            _put32(p + pos + 16, _SYNC)
            pos += 20
        _head(p + pos, 20, b"tfdt")
        _put32(p + pos + 8, 0x01000000)  # version 1, no flags
        _put32(p + pos + 12, (<uint64_t>t.ticks[0]) >> 32)
        _put32(p + pos + 16, (<uint64_t>t.ticks[0]) & 0xFFFFFFFF)
        pos += 20
        _head(p + pos, 20 + count * (16 if video else 8), b"trun")
        _put32(p + pos + 8, _TRUN_V if video else _TRUN_A)
        _put32(p + pos + 12, count)
        _put32(p + pos + 16, <uint32_t>offset)
        pos += 20
        for i in range(count):
            sample = samples[i]
            size = len(sample[3])
            _put32(p + pos, t.durations[i])
            _put32(p + pos + 4, size)
            if video:
                _put32(p + pos + 8, _SYNC if sample[2] else _NON_SYNC)
                _put32(p + pos + 12, t.offsets[i])
                pos += 16
            else:
                pos += 8
        offset += track.payload_bytes
    _head(p + pos, 8 + payload, b"mdat")
    pos += 8
    for track, t in zip(tracks, timings):
        for sample in track.samples:
            data = sample[3]
            PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
            try:
                memcpy(p + pos, view.buf, view.len)
                pos += view.len
            finally:
                PyBuffer_Release(&view)
        # The reference's state after: the decode clocks and the last duration.
        count = t.count
        if track.is_video:
            track.last_dts = t.ticks[count - 1]
        else:
            track.next_tick = t.ticks[count - 1] + track.frame_ticks
        track.last_duration = t.durations[count - 1]
        track.samples = []
        track.payload_bytes = 0
    assert pos == total
    return out
