"""Paced reads of publishing sockets: fewer, larger reads; no frame lost; no feed throttled."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.chunked import MEDIA_CSID, PUBLISH_CHUNK_SIZE
from benchmarks.publisher import RtmpPublisher
from rtmp import amf0
from rtmp.chunk import ChunkWriter
from rtmp.events import PublishRequested
from rtmp.server import PublishAccepted, RtmpServer, RtmpSession
from tests.live import publishing, wait_for

pytestmark = pytest.mark.integration

VIDEO_MESSAGE = 9


class RecordingSink:
    """Keeps what an accepted publish delivered, in order."""

    def __init__(self) -> None:
        self.video_timestamps: list[int] = []
        self.audio_frames = 0
        self.media_bytes = 0
        self.ended: str | None = None

    def on_metadata(self, values: dict[str, Any]) -> None:
        pass

    def on_audio(self, timestamp: int, payload: bytes | bytearray) -> None:
        self.audio_frames += 1
        self.media_bytes += len(payload)

    def on_video(self, timestamp: int, payload: bytes | bytearray) -> None:
        self.video_timestamps.append(timestamp)
        self.media_bytes += len(payload)

    def on_end(self, reason: str, *, unpublished: bool = False) -> None:
        self.ended = reason


class AcceptEveryPublish:
    """Accepts at once, or, once `gate` is set, only when the gate opens."""

    def __init__(self) -> None:
        self.sinks: list[RecordingSink] = []
        self.gate: asyncio.Event | None = None
        self.waiting = 0

    def app_exists(self, app: str) -> bool:
        return True

    async def authorize(self, session: RtmpSession, request: PublishRequested) -> PublishAccepted:
        if self.gate is not None:
            self.waiting += 1
            await self.gate.wait()
        sink = RecordingSink()
        self.sinks.append(sink)
        return PublishAccepted(sink, "paced")


@contextlib.asynccontextmanager
async def rtmp_server(read_interval: float
                      ) -> AsyncIterator[tuple[RtmpServer, AcceptEveryPublish, int]]:
    policy = AcceptEveryPublish()
    server = RtmpServer(policy, read_interval=read_interval)
    _host, port = await server.start("127.0.0.1", 0)
    try:
        yield server, policy, port
    finally:
        await server.close()


async def test_paced_reads_take_many_frames_per_read_and_lose_none(clip: Path) -> None:
    seconds = 4
    outcome: dict[float, tuple[int, float, RecordingSink]] = {}
    for interval in (0.0, 0.25):
        async with rtmp_server(interval) as (server, policy, port):
            async with publishing(f"rtmp://127.0.0.1:{port}/live/key", clip,
                                  extra=["-t", str(seconds)]) as proc:
                session = await wait_for(lambda: next(iter(server.sessions), None), 10,
                                         what="ffmpeg to connect")
                started = time.monotonic()
                await wait_for(lambda: policy.sinks and policy.sinks[0].ended, 20,
                               what="the publish to end")
                assert await asyncio.wait_for(proc.wait(), 10) == 0
            outcome[interval] = (session.reads, time.monotonic() - started, policy.sinks[0])

    unpaced_reads, _, unpaced = outcome[0.0]
    paced_reads, paced_seconds, paced = outcome[0.25]
    # Not one frame lost or reordered by pausing the socket.
    assert len(paced.video_timestamps) >= seconds * 30 - 5
    assert paced.video_timestamps == unpaced.video_timestamps
    assert paced.audio_frames == unpaced.audio_frames > 0
    assert paced.media_bytes == unpaced.media_bytes
    # At most one read per interval once publishing, plus the setup's round trips.
    assert paced_reads <= paced_seconds / 0.25 + 12, (paced_reads, paced_seconds)
    # ffmpeg writes about one frame at a time, and that is what an unpaced server reads.
    assert unpaced_reads >= 3 * paced_reads, (unpaced_reads, paced_reads)


async def test_a_feed_faster_than_the_pacing_is_read_on_without_pauses() -> None:
    """16 MB sent as fast as the socket takes it arrives in about the time of a few pauses.

    Were each read followed by a pause, the kernel buffer (128 kB to start with on
    Linux) would cap the feed at a buffer per interval: 16 MB would take many seconds.
    """
    interval = 0.25
    message_bytes = 256 * 1024
    messages = 64
    async with rtmp_server(interval) as (_server, policy, port):
        publisher = RtmpPublisher("127.0.0.1", port, "live", "key")
        outcome = await publisher.publish()
        assert outcome.ok, outcome.code
        assert publisher.transport is not None
        writer = ChunkWriter()
        writer.chunk_size = PUBLISH_CHUNK_SIZE  # the publisher announced it during setup
        body = b"\x27\x01\x00\x00\x00" + os.urandom(message_bytes - 5)  # AVC inter frames
        started = time.monotonic()
        for index in range(messages):
            publisher.transport.write(
                writer.write(MEDIA_CSID, VIDEO_MESSAGE, publisher.stream_id, index * 33, body))
        sink = policy.sinks[0]
        await wait_for(lambda: len(sink.video_timestamps) == messages, 15,
                       what="every message to arrive")
        elapsed = time.monotonic() - started
        await publisher.close()
    assert sink.media_bytes == messages * message_bytes
    assert elapsed < 8 * interval, f"16 MB took {elapsed:.2f} s: the pacing throttled the feed"


async def test_reading_stays_paused_while_a_second_publish_awaits_its_decision() -> None:
    """The pacer's timer must not resume a socket the authorization paused.

    While a publish waits for the policy, what the peer sends stays in the kernel
    (it cannot pile up in our memory); a paced publisher on the same connection
    asks for its second stream, then floods.
    """
    interval = 0.05
    async with rtmp_server(interval) as (server, policy, port):
        publisher = RtmpPublisher("127.0.0.1", port, "live", "key")
        assert (await publisher.publish()).ok
        assert publisher.transport is not None
        session = next(iter(server.sessions))
        writer = ChunkWriter()
        writer.chunk_size = PUBLISH_CHUNK_SIZE
        policy.gate = asyncio.Event()
        second = publisher.stream_id + 1
        publisher.transport.write(
            writer.write(3, 20, 0, 0, amf0.encode_values("createStream", 9.0, None))
            + writer.write(MEDIA_CSID, 20, second, 0,
                           amf0.encode_values("publish", 10.0, None, "key2", "live")))
        await wait_for(lambda: policy.waiting == 1, 5, what="the second publish to wait")
        before = session.conn.bytes_received
        body = b"\x27\x01\x00\x00\x00" + bytes(64 * 1024 - 5)
        for index in range(64):  # 4 MB
            publisher.transport.write(
                writer.write(MEDIA_CSID, VIDEO_MESSAGE, publisher.stream_id, index * 33, body))
        await asyncio.sleep(10 * interval)  # ten pacer releases
        assert session.conn.bytes_received == before
        policy.gate.set()
        await wait_for(lambda: session.conn.bytes_received >= before + 64 * len(body), 10,
                       what="the flood to be read once the publish is decided")
        await publisher.close()
