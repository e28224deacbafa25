# cython: language_level=3, boundscheck=False, wraparound=False
"""Compiled twin of mediaserver.coded_frames.take_coded_frames (the reference).

Same arguments, same result: the FLV header bytes of each frame are read in C
(what rtmp.flv.coded_frame reads), the loop and the tuple handling leave the
interpreter; clocks, counters and MediaPacket are the same Python objects and
methods as the pure path's, so their logic lives in one place.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport int64_t

from hls.media import MediaPacket

cdef int _TAG_VIDEO = 9
cdef int _TAG_AUDIO = 8
cdef int _SOUND_AAC = 10
cdef int _AAC_CODED = 1
cdef int _AVC_CODED = 1
cdef int _FRAME_KEY = 1
cdef int _LEGACY_AVC = 7
cdef int _LEGACY_HEVC = 12


def take_coded_frames(list frames, Py_ssize_t start, bint video, bint audio, video_clock,
                      audio_clock, stats, list out):
    """See mediaserver.coded_frames.take_coded_frames."""
    cdef Py_ssize_t index, count = len(frames), size
    cdef tuple frame
    cdef int type_id, first, frame_type, codec_id
    cdef bint keyframe
    cdef int64_t composition_time, dts, pts, word
    cdef const unsigned char* body
    cdef object payload, timestamp, data
    for index in range(start, count):
        frame = <tuple>frames[index]
        type_id = frame[0]
        payload = frame[2]
        if type(payload) is not bytes:
            return index  # the full path reads anything else
        body = <const unsigned char*>PyBytes_AS_STRING(payload)
        size = PyBytes_GET_SIZE(payload)
        if type_id == _TAG_AUDIO:
            if size < 2 or body[0] >> 4 != _SOUND_AAC or body[1] != _AAC_CODED:
                return index
            dts_obj, backwards = audio_clock.unwrap(frame[1])
            stats.add_audio(size)
            if backwards:
                stats.backwards_timestamps += 1
            if audio:
                out.append(MediaPacket("audio", dts_obj, dts_obj, True, memoryview(payload)[2:]))
            continue
        if type_id != _TAG_VIDEO or size < 5 or body[1] != _AVC_CODED:
            return index
        first = body[0]
        frame_type = first >> 4
        codec_id = first & 0x0F
        if frame_type < 1 or frame_type > 4 or (codec_id != _LEGACY_AVC
                                                and codec_id != _LEGACY_HEVC):
            return index
        keyframe = frame_type == _FRAME_KEY
        word = (<int64_t>body[2] << 16) | (<int64_t>body[3] << 8) | body[4]
        composition_time = (word ^ 0x800000) - 0x800000
        dts_obj, backwards = video_clock.unwrap(frame[1])
        stats.add_video(size, dts_obj, keyframe)
        if backwards:
            stats.backwards_timestamps += 1
        if video:
            dts = dts_obj
            pts = dts + composition_time
            out.append(MediaPacket("video", dts_obj, pts if pts >= dts else dts_obj, keyframe,
                                   memoryview(payload)[5:]))
    return count
