"""A clip cut into RTMP chunks once, then shared by every load publisher.

Hundreds of publishers replay the same file; chunking it per publisher per loop
would make the load generator, not the server, the bottleneck. Every message is
cut once with a type 1 header (delta timestamp, no message stream id), so the
bytes are the same for every publisher and every loop. Only the first message of
each loop (and any whose timestamp goes backwards) needs a type 0 header with the
absolute timestamp; those few are built on the fly.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from statistics import median

from rtmp.amf0 import encode_values
from rtmp.chunk import ChunkWriter

from .flvfile import TAG_AUDIO, TAG_SCRIPT, TAG_VIDEO, FlvTag

# OBS sends metadata, audio and video on chunk stream 4 (see the OBS 29 capture).
MEDIA_CSID = 4
PUBLISH_CHUNK_SIZE = 4096


@dataclass(frozen=True, slots=True)
class ChunkedClip:
    head: tuple[FlvTag, ...]  # metadata and sequence headers: sent once per publisher
    media: tuple[FlvTag, ...]  # audio and video frames, looped
    wire: tuple[bytes | None, ...]  # media[i] as chunks with a type 1 header; None: type 0
    offsets_ms: tuple[int, ...]  # media[i]'s timestamp within a loop
    loop_ms: int  # one loop's length; loop k adds k * loop_ms to every timestamp
    chunk_size: int
    csid: int

    @classmethod
    def build(
        cls, tags: list[FlvTag], chunk_size: int = PUBLISH_CHUNK_SIZE, csid: int = MEDIA_CSID
    ) -> ChunkedClip:
        head = [t for t in tags if t.type_id == TAG_SCRIPT][:1]
        head += [t for t in tags if t.is_sequence_header]
        media = [
            t for t in tags if t.type_id in (TAG_AUDIO, TAG_VIDEO)
            and not (t.is_sequence_header or t.is_sequence_end)
        ]
        if not media:
            raise ValueError("the clip has no audio or video frames")
        base = min(t.timestamp for t in media)
        offsets = [t.timestamp - base for t in media]
        loop_ms = _loop_length(media, offsets)
        kept = [i for i, offset in enumerate(offsets) if offset < loop_ms]
        media = [media[i] for i in kept]
        offsets = [offsets[i] for i in kept]
        writer = ChunkWriter(chunk_size)
        wire: list[bytes | None] = []
        previous: int | None = None
        for tag, offset in zip(media, offsets, strict=True):
            if previous is None or offset < previous:
                writer.write(csid, tag.type_id, 1, offset, tag.body, fmt=0)
                wire.append(None)
            else:
                wire.append(writer.write(csid, tag.type_id, 1, offset, tag.body, fmt=1))
            previous = offset
        return cls(tuple(head), tuple(media), tuple(wire), tuple(offsets), loop_ms, chunk_size,
                   csid)

    @property
    def loop_seconds(self) -> float:
        return self.loop_ms / 1000.0

    @property
    def bitrate(self) -> float:
        """Bits per second of the looped media, as sent."""
        return sum(len(t.body) for t in self.media) * 8 / self.loop_seconds

    def message(self, index: int, loop: int, stream_id: int) -> bytes:
        """The chunks of media[index] in loop number `loop`."""
        data = self.wire[index]
        if data is not None:
            return data
        tag = self.media[index]
        timestamp = loop * self.loop_ms + self.offsets_ms[index]
        return ChunkWriter(self.chunk_size).write(
            self.csid, tag.type_id, stream_id, timestamp, tag.body, fmt=0
        )

    def head_messages(self, stream_id: int) -> list[bytes]:
        """Metadata (as OBS sends it, via @setDataFrame) and sequence headers at time 0."""
        writer = ChunkWriter(self.chunk_size)
        out = []
        for tag in self.head:
            body = tag.body
            if tag.type_id == TAG_SCRIPT:
                body = encode_values("@setDataFrame") + body
            out.append(writer.write(self.csid, tag.type_id, stream_id, 0, body, fmt=0))
        return out


def _loop_length(media: list[FlvTag], offsets: list[int]) -> int:
    """Where the next loop starts: one frame after the last video frame.

    Video decides because segments are cut on it; audio that runs past the end of
    the video is dropped, so the join has at most one audio frame of gap.
    """
    for type_id in (TAG_VIDEO, TAG_AUDIO):
        times = [o for t, o in zip(media, offsets, strict=True) if t.type_id == type_id]
        if len(times) >= 2:
            frame = median(b - a for a, b in pairwise(times))
            return times[-1] + max(1, round(frame))
        if times:
            return times[-1] + 1
    return 1
