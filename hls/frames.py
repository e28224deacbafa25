"""A segment's frames as its MPEG-TS form will need them, held without a second copy.

The TS rendition is packaged just in time (hls.tsjit): a segment is muxed the first
time someone asks for it, so until then what the muxer will need is kept here:

- a table with each frame's track, keyframe flag, timestamps, duration and size, in
  arrival order: five integers a frame in one array, so no Python object per frame
  lives as long as its segment (a memoryview per held frame made the whole server
  45 % dearer, measured in issue 11). While the segment is open they go into a list
  (appending a tuple to a list copies five pointers; extending an array converts
  each integer and reallocates as it grows), turned into the array at its close;
- the buffers the payloads sit in. With LL-HLS those are the segment's fMP4 parts
  (a moof and an mdat header, then the part's video samples, then its audio samples);
  without, the segment's payloads joined once at its close, laid out the same way
  with no boxes in front.

A frame is found again by walking the table: in each buffer the video payloads come
first and the audio after, each track in arrival order, behind a header whose size
is whatever the buffer holds beyond its payloads.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # a type only: hls.spill is the store's to import
    from .spill import SpilledMedia

Buffer = bytes | bytearray | memoryview

# Per frame in the table: flags, dts, pts, duration (all ms), payload size.
FIELDS = 5
AUDIO = 1  # flag: an audio frame (else video)
KEYFRAME = 2  # flag: a keyframe (every audio frame is one)


class HeldFrames:
    """The frames of one closed segment: iterate to get them back, in arrival order.
    Once `spill()`ed, its buffers are read back from their file for each iteration."""

    __slots__ = ("_ends", "_spilled", "_table", "chunks")

    def __init__(self, table: array, ends: tuple[int, ...], chunks: tuple[Buffer, ...]) -> None:
        if len(ends) != len(chunks) or not ends or ends[-1] * FIELDS != len(table):
            raise ValueError("the frames and the buffers holding them do not agree")
        self._table = table
        self._ends = ends  # frames in buffers 0..i
        self.chunks: tuple[Buffer, ...] | None = chunks  # None once spilled
        self._spilled: SpilledMedia | None = None

    def __len__(self) -> int:
        return len(self._table) // FIELDS

    @property
    def size(self) -> int:
        """Bytes of the buffers held in memory (payloads, and the fMP4 boxes around them)."""
        return sum(len(chunk) for chunk in self.chunks) if self.chunks is not None else 0

    def spill(self, media: SpilledMedia) -> None:
        """The buffers are in `media`'s file now: let go of them here."""
        self._spilled = media
        self.chunks = None

    def __iter__(self) -> Iterator[tuple[bool, bool, int, int, int, memoryview]]:
        """(audio, keyframe, dts, pts, duration, payload) of each frame, the payload a view
        into its buffer (valid while this object lives)."""
        table = self._table
        chunks = self.chunks
        if chunks is None:
            assert self._spilled is not None
            chunks = self._spilled.load()
        first = 0
        for chunk, end in zip(chunks, self._ends, strict=True):
            flags = table[first * FIELDS:end * FIELDS:FIELDS]
            sizes = table[first * FIELDS + 4:end * FIELDS:FIELDS]
            video_bytes = sum(size for flag, size in zip(flags, sizes, strict=True)
                              if not flag & AUDIO)
            header = len(chunk) - sum(sizes)
            if header < 0:
                raise ValueError("a buffer is smaller than the frames it should hold")
            view = memoryview(chunk)
            video_at, audio_at = header, header + video_bytes
            for index in range(first * FIELDS, end * FIELDS, FIELDS):
                flag, dts, pts, duration, size = table[index:index + FIELDS]
                if flag & AUDIO:
                    yield True, True, dts, pts, duration, view[audio_at:audio_at + size]
                    audio_at += size
                else:
                    yield False, bool(flag & KEYFRAME), dts, pts, duration, \
                        view[video_at:video_at + size]
                    video_at += size
            first = end


class FrameLog:
    """The open segment's frames. `keep_payloads`: hold the payloads themselves until the
    close (no LL-HLS); else the caller's parts hold them and `cut()` marks each part."""

    __slots__ = ("_audio", "_cuts", "_rows", "_video")

    def __init__(self, keep_payloads: bool) -> None:
        self._rows: list[int] = []
        self._cuts: list[int] = []
        self._video: list[Buffer] | None = [] if keep_payloads else None
        self._audio: list[Buffer] | None = [] if keep_payloads else None

    def __len__(self) -> int:
        return len(self._rows) // FIELDS

    def add(self, audio: bool, keyframe: bool, dts: int, pts: int, duration: int,
            data: Buffer) -> None:
        self._rows += (audio | keyframe << 1, dts, pts, duration, len(data))
        if self._video is not None:
            (self._audio if audio else self._video).append(data)  # type: ignore[union-attr]

    def cut(self) -> None:
        """The frames added so far went into a buffer of their own (an LL-HLS part)."""
        self._cuts.append(len(self))

    def close(self, chunks: tuple[Buffer, ...] | None = None) -> HeldFrames | None:
        """The held form (None if no frame came). `chunks`: the buffers cut so far and the
        last one, holding the frames since the last cut; None when the payloads were kept
        here (they are joined into one buffer)."""
        frames = len(self)
        if frames == 0:
            return None
        if chunks is None:
            assert self._video is not None and self._audio is not None
            chunks = (b"".join(self._video + self._audio),)
            self._video, self._audio = [], []
        ends = (*self._cuts, frames) if not self._cuts or self._cuts[-1] != frames \
            else tuple(self._cuts)
        return HeldFrames(array("q", self._rows), ends, chunks)
