# cython: language_level=3, boundscheck=False, wraparound=False
"""Compiled fast path of hls.segmenter.Segmenter.push, for plain frames.

Nearly every frame of a running publish takes the same path through push(): no cut,
no LL-HLS part closed before it, no purge or memory cap due, nothing dropped or
refused. `push_plain_frames` does exactly what push() does for such a frame (the
same attributes of the same objects, set to the same values: the open segment, its
FrameLog, the CMAF rendition and its FragmentWriter, the segmenter's clocks) in one
call for a run of them, and stops at the first item that is not such a frame, which
the caller hands to push() (or its own handling). Every decision push() makes stays
in push(): a frame that could meet one is never taken here.

Segmenter.push is the reference (hls/plain_frames.py says which runs);
MEDIASERVER_NO_EXTENSIONS leaves every frame to it.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from libc.math cimport ceil, rint
from libc.stdint cimport int64_t

from hls.cmaf import TIMESTAMP_JITTER_MS
from hls.media import MediaPacket
from hls.muxer import MIN_AAC_FRAME_BYTES
from hls.segmenter import DEFAULT_VIDEO_FRAME_MS, MAX_FRAME_DURATION_MS, State

cdef object _RECORDING = State.RECORDING
cdef str _AUDIO = "audio"
cdef double _DEFAULT_FRAME_MS = DEFAULT_VIDEO_FRAME_MS
cdef int64_t _MAX_FRAME_MS = MAX_FRAME_DURATION_MS
cdef int64_t _JITTER_MS = TIMESTAMP_JITTER_MS
cdef Py_ssize_t _MIN_AAC = MIN_AAC_FRAME_BYTES


cdef bint _avcc_tiles(object data, Py_ssize_t length_size) except -1:
    """Whether the length prefixes tile the frame exactly (hls.muxer._avcc_problem
    finds nothing to say)."""
    cdef Py_buffer view
    cdef const unsigned char* p
    cdef Py_ssize_t size, position = 0, i
    cdef int64_t nal
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        p = <const unsigned char*>view.buf
        size = view.len
        if size == 0:
            return False
        while position < size:
            if size - position < length_size:
                return False
            nal = 0
            for i in range(length_size):
                nal = (nal << 8) | p[position + i]
            position += length_size + nal
            if position > size:
                return False
        return True
    finally:
        PyBuffer_Release(&view)


def push_plain_frames(segmenter, list items, Py_ssize_t start):
    """Push items[start:] into `segmenter` while each is a plain frame; the index of the
    first that is not (len(items) if all were)."""
    cdef Py_ssize_t index = start, count = len(items), size
    cdef Py_ssize_t length_size
    cdef int64_t offset, dts, pts, first_dts, target_ms, payload_bytes, max_segment_bytes
    cdef int64_t last, frame_end
    cdef double next_purge, open_budget, part_target, part_start, frame_ms
    cdef bint audio, keyframe, has_last, in_part
    if segmenter._state is not _RECORDING or segmenter._offset is None:
        return start
    tracks = segmenter._tracks
    segment = segmenter._open
    if tracks is None or segment is None or not segment.has_video:
        return start  # a segment without video: every frame may cut it (push decides)
    kinds = tracks.kinds
    anchor = segmenter._anchor
    length_size = tracks.nal_length_size
    offset = segmenter._offset
    target_ms = segmenter._target_ms
    max_segment_bytes = segmenter.max_segment_bytes
    next_purge = segmenter._next_purge_dts
    open_budget = segmenter._open_budget
    last_dts = segmenter._last_dts
    frame_ms_by_kind = segmenter._frame_ms
    first_dts = segment.first_dts
    payload_bytes = segment.payload_bytes
    frames = segment.frames
    rows = frames._rows
    video_payloads = frames._video
    audio_payloads = frames._audio
    cmaf = segmenter._cmaf
    writer = None
    if cmaf is not None:
        writer = cmaf._writer
        if writer is None or cmaf._part_start is None:
            return start
        part_target = cmaf.part_target_ms
        part_start = cmaf._part_start
        writer_tracks = writer._tracks
    while index < count:
        packet = items[index]
        if type(packet) is not MediaPacket:
            break
        kind = packet.kind
        keyframe = packet.keyframe
        if kind not in kinds or (keyframe and kind == anchor):
            break  # undeclared (dropped), or a keyframe of the anchor (may cut)
        data = packet.data
        if type(data) is not bytes and type(data) is not memoryview:
            break  # push() copes with other buffers
        size = len(data)
        dts = packet.dts + offset
        pts = packet.pts + offset
        previous = last_dts.get(kind)
        has_last = previous is not None
        if has_last:
            last = previous
            if dts <= last:
                break  # backwards (dropped) or repeated (nudged)
        if dts < 0 or dts >= next_purge:
            break
        if (dts - first_dts >= target_ms or payload_bytes + size > max_segment_bytes
                or payload_bytes + size > open_budget):
            break  # a cut rule or the memory cap is at stake
        if isinstance(data, memoryview) and not data.readonly:
            break  # push() copies it first
        audio = kind == _AUDIO
        if audio:
            if size < _MIN_AAC:
                break  # refused
        elif not _avcc_tiles(data, length_size):
            break  # refused
        frame_ms = frame_ms_by_kind.get(kind, _DEFAULT_FRAME_MS)
        if writer is not None:
            track = writer_tracks.get(kind)
            if track is None:
                break
            in_part = cmaf._lead_in_part
            frame_end = <int64_t>ceil(frame_ms) + _JITTER_MS
            if not audio and in_part and dts - part_start + frame_end > part_target:
                break  # closes a part first
        # Taken: what push() does from here on for a frame that meets no rule.
        if pts < dts:
            pts = dts
        payload_bytes += size
        segment.payload_bytes = payload_bytes
        if writer is not None:
            if not audio:
                cmaf._lead_in_part = True
                if cmaf._part_independent is None:
                    cmaf._part_independent = keyframe
            track.samples.append((dts, pts, keyframe, data))
            track.payload_bytes += size
            writer.pending_bytes += size
        rows.extend((audio | (keyframe << 1), dts, pts,
                     <int64_t>rint(frame_ms_by_kind.get(kind, 0)), size))
        if video_payloads is not None:
            (audio_payloads if audio else video_payloads).append(data)
        if not audio:
            segment.last_lead_dts = dts
        last_dts[kind] = dts
        if not audio and has_last and 1 < dts - last <= _MAX_FRAME_MS:
            frame_ms_by_kind[kind] = 0.75 * frame_ms_by_kind[kind] + 0.25 * (dts - last)
        index += 1
    return index
