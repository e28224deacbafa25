"""FLV tag bodies as an RTMP encoder sends them, built from test media (for Publisher tests)."""

from __future__ import annotations

import struct

from hls.media import MediaPacket
from mediaserver.publisher import Publisher
from tests.hls_media import Media

# The first bytes of H.264 video tags (frame type << 4 | codec 7) and AAC audio tags.
AVC_KEYFRAME, AVC_INTER = 0x17, 0x27
AAC = 0xAF
SEQUENCE_HEADER, CODED = 0x00, 0x01


def avc_sequence_header(extradata: bytes) -> bytes:
    return bytes([AVC_KEYFRAME, SEQUENCE_HEADER, 0, 0, 0]) + extradata


def aac_sequence_header(extradata: bytes) -> bytes:
    return bytes([AAC, SEQUENCE_HEADER]) + extradata


def media_tag(packet: MediaPacket) -> bytes:
    """The tag body of one coded frame (composition time in the 24-bit field for video)."""
    if packet.kind == "audio":
        return bytes([AAC, CODED]) + bytes(packet.data)
    cts = struct.pack(">i", packet.pts - packet.dts)[1:]
    head = bytes([AVC_KEYFRAME if packet.keyframe else AVC_INTER, CODED]) + cts
    return head + bytes(packet.data)


def feed(publisher: Publisher, media: Media, start_ms: int = 0, headers: bool = True) -> None:
    """Send a clip as an encoder would: sequence headers, then the frames at `start_ms` on.

    Timestamps wrap at 2^32 as RTMP's 32-bit field does.
    """
    if headers:
        if media.video is not None:
            publisher.on_video(start_ms % (1 << 32), avc_sequence_header(media.video.extradata))
        if media.audio is not None:
            publisher.on_audio(start_ms % (1 << 32), aac_sequence_header(media.audio.extradata))
    for packet in media.packets:
        timestamp = (packet.dts + start_ms) % (1 << 32)
        if packet.kind == "video":
            publisher.on_video(timestamp, media_tag(packet))
        else:
            publisher.on_audio(timestamp, media_tag(packet))
