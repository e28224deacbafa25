# cython: language_level=3, boundscheck=False, wraparound=False
"""Compiled twin of mediaserver.coded_frames (the reference): TrackClock and the loop.

Same arguments, same results: the FLV header bytes of each frame are read in C
(what rtmp.flv.coded_frame reads), timestamps are unwrapped by a C clock, and the
counters of ordinary frames are summed in C and added to FeedStats once per call
(keyframes still go through FeedStats.add_video, which owns the keyframe interval).
MediaPacket is the same Python class as the pure path's, filled field by field
as its dataclass __init__ does (see _packet).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport int64_t

import dataclasses

from hls.media import MediaPacket


cdef extern from "Python.h":
    int PyObject_GenericSetAttr(object obj, object name, object value) except -1


# A MediaPacket made as its dataclass __init__ makes it (object.__setattr__ of each
# field, in order), without the interpreter frame that costs a third of this loop.
# Only while MediaPacket is exactly that: a frozen dataclass of these fields in
# slots, no __post_init__; otherwise packets are made by calling the class.
_FIELDS = ("kind", "dts", "pts", "keyframe", "data")
cdef bint _fields_only = (
    tuple(f.name for f in dataclasses.fields(MediaPacket)) == _FIELDS
    and MediaPacket.__dataclass_params__.frozen
    and getattr(MediaPacket, "__slots__", None) == _FIELDS
    and not hasattr(MediaPacket, "__post_init__")
)
cdef object _new = object.__new__
cdef str _KIND = "kind", _DTS = "dts", _PTS = "pts", _KEYFRAME = "keyframe", _DATA = "data"


cdef inline object _packet(str kind, int64_t dts, int64_t pts, bint keyframe, object data):
    if not _fields_only:
        return MediaPacket(kind, dts, pts, keyframe, data)
    packet = _new(MediaPacket)
    PyObject_GenericSetAttr(packet, _KIND, kind)
    PyObject_GenericSetAttr(packet, _DTS, dts)
    PyObject_GenericSetAttr(packet, _PTS, pts)
    PyObject_GenericSetAttr(packet, _KEYFRAME, keyframe)
    PyObject_GenericSetAttr(packet, _DATA, data)
    return packet

cdef int _TAG_VIDEO = 9
cdef int _TAG_AUDIO = 8
cdef int _SOUND_AAC = 10
cdef int _AAC_CODED = 1
cdef int _AVC_CODED = 1
cdef int _FRAME_KEY = 1
cdef int _LEGACY_AVC = 7
cdef int _LEGACY_HEVC = 12
cdef int64_t _WRAP = 1 << 32
cdef int64_t _HALF_WRAP = 1 << 31
cdef int64_t _NONE = -1  # raw and last before the first timestamp (never negative after)


cdef class TrackClock:
    """Unwraps one track's 32-bit RTMP timestamps and keeps them from going back."""

    cdef int64_t _raw
    cdef public int64_t offset
    cdef int64_t _last
    cdef bint went_back  # set by _unwrap: whether the value it returned was held

    def __init__(self):
        self._raw = _NONE
        self.offset = 0
        self._last = _NONE

    @property
    def raw(self):
        return None if self._raw == _NONE else self._raw

    @property
    def last(self):
        return None if self._last == _NONE else self._last

    def unwrap(self, int64_t raw):
        """(monotonic ms, whether the encoder's clock went backwards)."""
        value = self._unwrap(raw)
        return value, self.went_back

    cdef int64_t _unwrap(self, int64_t raw):
        cdef int64_t value
        if self._raw != _NONE and raw < self._raw and self._raw - raw > _HALF_WRAP:
            self.offset += _WRAP
        self._raw = raw
        value = raw + self.offset
        if self._last != _NONE and value < self._last:
            self.went_back = True
            return self._last
        self._last = value
        self.went_back = False
        return value


def take_coded_frames(list frames, Py_ssize_t start, bint video, bint audio,
                      TrackClock video_clock, TrackClock audio_clock, stats, list out):
    """See mediaserver.coded_frames.take_coded_frames."""
    cdef Py_ssize_t index, size
    cdef Py_ssize_t stop = len(frames)
    cdef tuple frame
    cdef int type_id, first, frame_type, codec_id
    cdef bint keyframe
    cdef int64_t composition_time, dts, pts, word
    cdef int64_t video_bytes = 0, video_frames = 0, audio_bytes = 0, audio_frames = 0
    cdef int64_t went_back = 0
    cdef const unsigned char* body
    cdef object payload
    for index in range(start, len(frames)):
        frame = <tuple>frames[index]
        type_id = frame[0]
        payload = frame[2]
        if type(payload) is not bytes:
            stop = index  # the full path reads anything else
            break
        body = <const unsigned char*>PyBytes_AS_STRING(payload)
        size = PyBytes_GET_SIZE(payload)
        if type_id == _TAG_AUDIO:
            if size < 2 or body[0] >> 4 != _SOUND_AAC or body[1] != _AAC_CODED:
                stop = index
                break
            dts = audio_clock._unwrap(frame[1])
            went_back += audio_clock.went_back
            audio_bytes += size
            audio_frames += 1
            if audio:
                out.append(_packet("audio", dts, dts, True, memoryview(payload)[2:]))
            continue
        if type_id != _TAG_VIDEO or size < 5 or body[1] != _AVC_CODED:
            stop = index
            break
        first = body[0]
        frame_type = first >> 4
        codec_id = first & 0x0F
        if frame_type < 1 or frame_type > 4 or (codec_id != _LEGACY_AVC
                                                and codec_id != _LEGACY_HEVC):
            stop = index
            break
        keyframe = frame_type == _FRAME_KEY
        word = (<int64_t>body[2] << 16) | (<int64_t>body[3] << 8) | body[4]
        composition_time = (word ^ 0x800000) - 0x800000
        dts = video_clock._unwrap(frame[1])
        went_back += video_clock.went_back
        if keyframe:
            stats.add_video(size, dts, True)
        else:
            video_bytes += size
            video_frames += 1
        if video:
            pts = dts + composition_time
            out.append(_packet("video", dts, pts if pts >= dts else dts, keyframe,
                               memoryview(payload)[5:]))
    # What FeedStats.add_video (for other frames than keyframes) and add_audio add up.
    if video_frames:
        stats.video_bytes += video_bytes
        stats.video_frames += video_frames
        stats._bucket_frames += video_frames
    if audio_frames:
        stats.audio_bytes += audio_bytes
        stats.audio_frames += audio_frames
    if video_frames or audio_frames:
        stats._bucket_bytes += video_bytes + audio_bytes
    if went_back:
        stats.backwards_timestamps += went_back
    return stop
