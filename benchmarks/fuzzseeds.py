"""Where the fuzzer's seeds come from: real bytes only.

- The OBS 29 capture in tests/captures (a real encoder's publish session).
- What our benchmark publisher sends: `RtmpPublisher` is run for real against a
  throwaway loopback server made of `ServerConnection`, and every byte it wrote
  (handshake, setup commands, metadata, sequence headers, a few frames) is kept.
- FLV tag bodies of the benchmark clip (AVC + AAC) and of the HEVC clip
  (Enhanced RTMP `hvc1`) when libx265 is there.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from pathlib import Path

from rtmp.connection import ServerConnection
from rtmp.errors import ProtocolError
from rtmp.events import PublishRequested

from .chunked import ChunkedClip
from .flvfile import TAG_AUDIO, TAG_VIDEO, FlvTag
from .fuzz import SessionSeed, session_from_bytes
from .hevcclip import ensure_hevc_clip, hevc_flv_tags
from .publisher import RtmpPublisher

REPO = Path(__file__).resolve().parents[1]
OBS_CAPTURE = REPO / "tests" / "captures" / "obs29_publish_c2s.bin"
# How much of the capture to read: setup, metadata, sequence headers and a second of media.
OBS_PREFIX = 256 * 1024
# Media messages the recorded publisher sends after its sequence headers.
RECORDED_FRAMES = 40
RECORD_TIMEOUT = 10.0


def obs_seed() -> SessionSeed:
    with OBS_CAPTURE.open("rb") as f:
        return session_from_bytes("obs29", f.read(OBS_PREFIX))


class _Recorder(asyncio.Protocol):
    """A server that accepts any publish and keeps every byte the client sent."""

    def __init__(self, done: asyncio.Future[bytes]) -> None:
        self.done = done
        self.data = bytearray()
        self.conn = ServerConnection()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.data += data
        with contextlib.suppress(ProtocolError):
            self.conn.receive_data(data)
            while (event := self.conn.next_event()) is not None:
                if isinstance(event, PublishRequested):
                    self.conn.accept_publish(event.stream_id)
        if self.transport is not None:
            self.transport.write(self.conn.data_to_send())

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(bytes(self.data))


async def record_publisher(clip: ChunkedClip) -> SessionSeed:
    """What RtmpPublisher sends for a publish and the clip's first frames, byte for byte."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[bytes] = loop.create_future()
    server = await loop.create_server(lambda: _Recorder(done), "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        publisher = RtmpPublisher("127.0.0.1", port, "live", "fuzzkey")
        outcome = await publisher.publish(RECORD_TIMEOUT)
        if not outcome.ok or publisher.transport is None:
            raise RuntimeError(f"recording the benchmark publisher failed: {outcome.code}")
        publisher.transport.writelines(clip.head_messages(publisher.stream_id))
        publisher.transport.writelines(clip.message(i, 0, publisher.stream_id)
                                       for i in range(min(RECORDED_FRAMES, len(clip.media))))
        await publisher.close()
        data = await asyncio.wait_for(done, RECORD_TIMEOUT)
    finally:
        server.close()
    return session_from_bytes("benchmark-publisher", data)


def session_tags(session: SessionSeed) -> list[FlvTag]:
    """A session's audio and video message bodies as tags (no clip needed)."""
    return [FlvTag(m.type_id, m.timestamp, m.payload) for m in session.messages
            if m.type_id in (TAG_AUDIO, TAG_VIDEO) and m.payload]


def flv_seed_tags(clip: ChunkedClip, cache: Path) -> list[FlvTag]:
    """Tag bodies to mutate: the clip's head and frames, plus HEVC when it can be made."""
    tags = [*clip.head, *clip.media[:200]]
    try:
        tags += hevc_flv_tags(ensure_hevc_clip(cache))[:200]
    except (RuntimeError, OSError, ValueError, subprocess.CalledProcessError) as exc:
        print(f"no HEVC seeds: {exc}")
    return tags
