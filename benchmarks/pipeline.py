"""The ingest pipeline in one process, without sockets: what a stream costs, with less noise.

Each stream is a real `RtmpSession` (with a stand-in transport) in front of the real
`StreamHub`, publishers and segmenters. Every session is fed exactly the bytes a
benchmark publisher sends, cut into the slices a paced server reads (one per
`read_ms` of media), round robin across streams as the event loop serves them, and
the hub drains its readers between rounds as it does on a loop turn.

With `ts_fetch` every TS segment is asked for once as it is published (as one
viewer or edge node per stream would), so its MPEG-TS form is muxed (hls.tsjit);
without, no TS is made, as for a stream nobody watches as index.m3u8.

What it leaves out is the kernel, the event loop's own work and the HLS requests:
at 100 streams it measured 1.6-1.9 ms per stream-second where the whole server
measured 2.4-3.6 within the same hour, and its passes agree within ~10 % where
whole-server runs spread by ±15 %. Use it to judge a change to the per-frame code;
use `run` for the whole picture.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass
from typing import Any

from hls.segmenter import SegmentInfo
from mediaserver.hub import HubSettings, StreamHub
from rtmp import amf0
from rtmp.chunk import SET_CHUNK_SIZE, ChunkWriter
from rtmp.events import PublishRequested
from rtmp.handshake import HANDSHAKE_SIZE, build_client_c0c1
from rtmp.server import PublishAccepted, RtmpServer, RtmpSession

from .chunked import MEDIA_CSID, PUBLISH_CHUNK_SIZE, ChunkedClip

AMF0_COMMAND = 20
COMMAND_CSID = 3
CONTROL_CSID = 2


@dataclass(frozen=True, slots=True)
class PipelineResult:
    streams: int
    media_seconds: float  # per stream, per pass
    ms_per_stream_second: list[float]  # one figure per pass
    segments_per_stream: float
    # The part of each pass spent from the bytes to the readers' queues (the rest is
    # the readers' drains: segmenters and muxers).
    ingest_ms_per_stream_second: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.ms_per_stream_second)

    @property
    def ingest_median(self) -> float:
        return statistics.median(self.ingest_ms_per_stream_second)


def publisher_bytes(clip: ChunkedClip, loops: int, read_ms: int) -> tuple[bytes, list[bytes]]:
    """(handshake + setup + sequence headers, then the media in read-sized slices)."""
    writer = ChunkWriter()
    setup = bytearray(build_client_c0c1()) + bytes(HANDSHAKE_SIZE)  # C2 is not checked
    setup += writer.write(CONTROL_CSID, SET_CHUNK_SIZE, 0, 0,
                          PUBLISH_CHUNK_SIZE.to_bytes(4, "big"))
    writer.chunk_size = PUBLISH_CHUNK_SIZE
    for txn, name, *args in ((1.0, "connect", {"app": "live", "tcUrl": "rtmp://bench/live"}),
                             (2.0, "createStream", None)):
        setup += writer.write(COMMAND_CSID, AMF0_COMMAND, 0, 0,
                              amf0.encode_values(name, txn, *args))
    setup += writer.write(MEDIA_CSID, AMF0_COMMAND, 1, 0,
                          amf0.encode_values("publish", 3.0, None, "key", "live"))
    setup += b"".join(clip.head_messages(1))
    slices: list[bytes] = []
    current = bytearray()
    slice_end = read_ms
    for loop in range(loops):
        for index, offset in enumerate(clip.offsets_ms):
            at = loop * clip.loop_ms + offset
            while at >= slice_end:
                slices.append(bytes(current))
                current.clear()
                slice_end += read_ms
            current += clip.message(index, loop, 1)
    slices.append(bytes(current))
    return bytes(setup), slices


class _Transport:
    """What RtmpSession asks of a transport; the server's replies are dropped."""

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 0) if name == "peername" else default

    def write(self, data: bytes) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


class _HubPolicy:
    """Every publish goes to the hub as channel bench<N>."""

    def __init__(self, hub: StreamHub) -> None:
        self.hub = hub
        self.count = 0

    def app_exists(self, app: str) -> bool:
        return True

    async def authorize(self, session: RtmpSession, request: PublishRequested
                        ) -> PublishAccepted:
        self.count += 1
        channel = f"bench{self.count}"
        return PublishAccepted(self.hub.start_publish(channel, session.peer, session), channel)


def _feed(session: RtmpSession, server: RtmpServer, data: bytes) -> None:
    size = len(server.receive_buffer)
    for start in range(0, len(data), size):
        piece = data[start : start + size]
        server.receive_buffer[: len(piece)] = piece
        session.buffer_updated(len(piece))


def fetch_every_ts_segment(hub: StreamHub) -> None:
    """Ask for each TS segment as it is published, as one viewer per stream would."""

    def fetch(channel: str, info: SegmentInfo) -> None:
        segmenter = hub.segmenter(channel)
        if segmenter is None or segmenter.segment(info.name) is None:
            raise RuntimeError(f"segment {info.name} of {channel} could not be had")

    hub.segment_listeners.append(fetch)


async def start_publishing(server: RtmpServer, streams: int, setup: bytes
                           ) -> list[RtmpSession]:
    """`streams` in-process sessions fed `setup` (handshake, connect, publish), each
    publishing once its authorization task has run."""
    sessions = []
    for _ in range(streams):
        session = RtmpSession(server)
        session.connection_made(_Transport())  # type: ignore[arg-type]
        _feed(session, server, setup)
        sessions.append(session)
    for _ in range(100):
        if all(s.publishing for s in sessions):
            return sessions
        await asyncio.sleep(0)  # the authorizations run as tasks; accepting parses the rest
    raise RuntimeError("the sessions did not all get to publish")


async def _one_pass(clip: ChunkedClip, streams: int, setup: bytes, slices: list[bytes],
                    settings: HubSettings | None = None, ts_fetch: bool = False
                    ) -> tuple[float, float, int]:
    """(CPU seconds in all, of which feeding the sessions, segments made)."""
    hub = StreamHub(settings)
    if ts_fetch:
        fetch_every_ts_segment(hub)
    server = RtmpServer(_HubPolicy(hub), read_interval=0)
    sessions = await start_publishing(server, streams, setup)
    await asyncio.sleep(0)
    clock = time.process_time
    started = clock()
    ingest = 0.0
    for piece in slices:
        fed_from = clock()
        for session in sessions:
            _feed(session, server, piece)
        ingest += clock() - fed_from
        await asyncio.sleep(0)  # the hub drains its readers on the next loop turn
    spent = clock() - started
    segments = sum(live.segmenter.segments_produced for live in hub.channels.values())
    for live in hub.channels.values():
        live.segmenter.end()
    return spent, ingest, segments


async def measure(clip: ChunkedClip, streams: int = 100, passes: int = 5, loops: int = 2,
                  read_ms: int = 100, ll_hls: tuple[bool, ...] = (True,), ts_fetch: bool = False
                  ) -> dict[bool, PipelineResult]:
    """One result per LL-HLS setting in `ll_hls` (the server's default: on); with both,
    passes alternate so that each sees the same background. `ts_fetch`: every TS segment
    is asked for once."""
    setup, slices = publisher_bytes(clip, loops, read_ms)
    media_seconds = loops * clip.loop_seconds
    figures: dict[bool, list[float]] = {on: [] for on in ll_hls}
    ingest_figures: dict[bool, list[float]] = {on: [] for on in ll_hls}
    segments: dict[bool, int] = {}
    for _ in range(passes):
        for on in ll_hls:
            settings = HubSettings() if on else HubSettings(part_duration=None)
            spent, ingest, segments[on] = await _one_pass(clip, streams, setup, slices,
                                                          settings, ts_fetch)
            figures[on].append(spent * 1000 / (streams * media_seconds))
            ingest_figures[on].append(ingest * 1000 / (streams * media_seconds))
    return {on: PipelineResult(streams, media_seconds, figures[on], segments[on] / streams,
                               ingest_figures[on])
            for on in ll_hls}
