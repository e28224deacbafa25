"""Channel thumbnails: the latest keyframe as a JPEG, rendered off the event loop.

Each channel gets a tap (see LiveChannel.taps) that keeps only the newest
keyframe and the track config it belongs to: one reference swap per keyframe,
so it can never fall behind or hold up ingest; older keyframes are simply
replaced. Rendering (PyAV decode of that one frame, then MJPEG encode) happens
on demand in a worker thread, at most once per interval per channel, and only
while somebody asks, so an unwatched server spends nothing on thumbnails.

In a cluster the picture of a channel held by another node is that node's: it
is asked of the edge (hls.remote, Kind.SNAPSHOT), which fetches it from the
origin and shares it among this node's viewers for a few seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction

import av
from aiohttp import web

from hls.http import CHANNEL_NAME
from hls.media import MediaPacket, TrackConfig
from hls.remote import (
    EDGE_HEADER,
    Failed,
    Found,
    Kind,
    Missing,
    RemoteAnswer,
    RemoteRequest,
    RemoteSource,
)

from .publisher import ReaderItem, TracksChanged

log = logging.getLogger("mediaserver.thumbnails")

# A picture is re-rendered at most this often per channel; dashboards poll slower.
THUMBNAIL_INTERVAL_SECONDS = 5.0
# MJPEG quantiser (2 best .. 31 worst): 4 keeps 720p test cards near 50 kB, sharp enough
# to recognise a scene on a wallboard.
JPEG_QUANTISER = 4
# Renders waiting for the worker at once, over all channels. Past this a request is
# answered with the older picture and the skip counted: the worker never builds a queue.
MAX_PENDING_RENDERS = 4
# JPEG's full-range YUV (the "j" in yuvj420p, without that deprecated format).
_JPEG_COLOR_RANGE = 2


class ThumbnailError(Exception):
    """A keyframe that could not be decoded or encoded."""


@dataclass(slots=True)
class ThumbnailStats:
    """Counters for /metrics."""

    rendered: int = 0
    failed: int = 0
    skipped: int = 0
    render_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Picture:
    jpeg: bytes
    width: int
    height: int


def render_jpeg(config: TrackConfig, keyframe: bytes | memoryview) -> Picture:
    """Decode one keyframe (as FLV carries it: AVCC/HVCC NAL units) and encode a JPEG.

    Blocking and CPU-bound: call it from a worker thread. The decoder gets the
    avcC/hvcC record as extradata, which is what makes length-prefixed NAL units
    (and the SPS/PPS they refer to) decodable without Annex B conversion.
    """
    try:
        decoder = av.CodecContext.create(config.codec, "r")
        decoder.extradata = config.extradata
        decoder.thread_count = 1  # one frame: threads would only add start-up latency
        frames = [*decoder.decode(av.Packet(keyframe)), *decoder.decode(None)]
        if not frames:
            raise ThumbnailError("the keyframe decoded to no picture")
        frame = frames[0]
        encoder = av.CodecContext.create("mjpeg", "w")
        encoder.width, encoder.height = frame.width, frame.height
        encoder.pix_fmt = "yuv420p"
        encoder.color_range = _JPEG_COLOR_RANGE
        encoder.time_base = Fraction(1, 1)
        encoder.qmin = encoder.qmax = JPEG_QUANTISER
        # No helper threads in FFmpeg (one frame gains nothing from them): a process that
        # forks while this thread holds a scaler or encoder with threads (a test spawning
        # ffmpeg under uvloop, whose fork handler runs Python in the child) could free it
        # in the child, joining threads the child does not have, and hang there.
        encoder.thread_count = 1
        full_range = frame.reformat(format="yuv420p", dst_color_range=_JPEG_COLOR_RANGE,
                                    threads=1)
        packets = [*encoder.encode(full_range), *encoder.encode(None)]
    except av.FFmpegError as exc:
        raise ThumbnailError(str(exc)) from exc
    jpeg = b"".join(bytes(packet) for packet in packets)
    if not jpeg:
        raise ThumbnailError("the JPEG encoder produced nothing")
    return Picture(jpeg, frame.width, frame.height)


class _Slot:
    """One channel: its newest keyframe and its last picture."""

    __slots__ = ("config", "keyframe", "pending", "picture", "rendered_at", "rendered_serial",
                 "serial")

    def __init__(self) -> None:
        self.config: TrackConfig | None = None
        self.keyframe: tuple[TrackConfig, bytes | memoryview] | None = None
        self.serial = 0  # bumps with each keyframe kept
        self.rendered_serial = 0
        self.rendered_at = float("-inf")
        self.picture: Picture | None = None
        self.pending: asyncio.Future[tuple[Picture | None, float]] | None = None

    def offer(self, item: ReaderItem) -> None:
        """The channel tap: runs in ingest, so it only swaps references."""
        if type(item) is MediaPacket:
            if item.keyframe and item.kind == "video" and self.config is not None:
                # Kept until the next keyframe and read from another thread: a view of
                # immutable bytes as it is (the ingest path's payloads are), else a copy.
                self.keyframe = (self.config, _immutable(item.data))
                self.serial += 1
        elif isinstance(item, TracksChanged):
            video = item.video
            supported = video is not None and video.codec in ("h264", "hevc")
            self.config = video if supported else None


class Thumbnailer:
    """Serves ``{prefix}/{channel}/thumbnail.jpg`` for the channels the hub holds."""

    def __init__(
        self,
        exists: Callable[[str], bool],
        interval: float = THUMBNAIL_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._exists = exists
        self.interval = interval
        self._clock = clock
        self._slots: dict[str, _Slot] = {}
        self._pending = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="thumbnail")
        self.stats = ThumbnailStats()
        self._remote: RemoteSource | None = None

    def tap(self, channel: str) -> Callable[[ReaderItem], None]:
        """A hub tap factory: a fresh slot for a new channel (old ones are pruned)."""
        for name in [n for n in self._slots if n != channel and not self._exists(n)]:
            del self._slots[name]
        slot = self._slots[channel] = _Slot()
        return slot.offer

    async def picture(self, channel: str) -> Picture | None:
        """The channel's picture, re-rendered first if it is due; None if there is none."""
        slot = self._slots.get(channel)
        if slot is None or not self._exists(channel):
            return None
        if slot.pending is None and self._due(slot):
            if self._pending >= MAX_PENDING_RENDERS:
                self.stats.skipped += 1
            else:
                self._start(slot)
        if slot.pending is not None:
            # Shielded: a viewer that goes away must not cancel the render others wait on.
            await asyncio.shield(slot.pending)
        return slot.picture

    def _due(self, slot: _Slot) -> bool:
        if slot.keyframe is None or slot.serial == slot.rendered_serial:
            return False
        return slot.picture is None or self._clock() - slot.rendered_at >= self.interval

    def _start(self, slot: _Slot) -> None:
        assert slot.keyframe is not None
        config, data = slot.keyframe
        slot.rendered_serial, slot.rendered_at = slot.serial, self._clock()
        self._pending += 1
        future = asyncio.get_running_loop().run_in_executor(
            self._executor, _render_timed, config, data
        )
        slot.pending = future

        def finished(done: asyncio.Future[tuple[Picture | None, float]]) -> None:
            self._pending -= 1
            slot.pending = None
            if done.cancelled():
                return
            picture, seconds = done.result()
            self.stats.render_seconds += seconds
            if picture is None:
                self.stats.failed += 1
            else:
                self.stats.rendered += 1
                slot.picture = picture

        future.add_done_callback(finished)

    def add_routes(self, app: web.Application, prefix: str = "/live",
                   remote: RemoteSource | None = None) -> None:
        """`remote`: asked for the pictures of channels this node does not hold."""
        self._remote = remote
        app.router.add_get(f"{prefix}/{{channel}}/thumbnail.jpg", self._handle)

    async def _handle(self, request: web.Request) -> web.Response:
        channel = request.match_info["channel"]
        if not CHANNEL_NAME.fullmatch(channel):
            return _no_picture()
        if self._exists(channel):
            picture = await self.picture(channel)
            return _jpeg(picture.jpeg, self.interval) if picture is not None else _no_picture()
        # Another node's edge asks only for what this node holds: never passed on.
        if self._remote is None or EDGE_HEADER in request.headers:
            return _no_picture()
        return self._remote_answer(await _ask(self._remote, channel, request.path))

    def _remote_answer(self, answer: RemoteAnswer) -> web.Response:
        if isinstance(answer, Found):
            return _jpeg(answer.body, self.interval)
        if isinstance(answer, Missing):
            return _no_picture()
        headers = {"Cache-Control": "no-store", **_CORS}
        if isinstance(answer, Failed):
            return web.Response(status=answer.status, text=answer.reason + "\n",
                                headers=headers)
        return web.Response(status=302, headers=headers | {"Location": answer.location})

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


_CORS = {"Access-Control-Allow-Origin": "*"}


async def _ask(remote: RemoteSource, channel: str, path: str) -> RemoteAnswer:
    try:
        return await remote.fetch(RemoteRequest(Kind.SNAPSHOT, channel, path, ""))
    except Exception:
        log.exception("remote thumbnail failed channel=%s", channel)
        return Failed(502, "origin fetch failed")


def _jpeg(body: bytes, interval: float) -> web.Response:
    headers = {"Content-Type": "image/jpeg",
               "Cache-Control": f"max-age={max(int(interval), 1)}", **_CORS}
    return web.Response(body=body, headers=headers)


def _no_picture() -> web.Response:
    return web.Response(status=404, text="no picture for this channel yet\n",
                        headers={"Cache-Control": "no-store", **_CORS})


def _immutable(data: bytes | memoryview) -> bytes | memoryview:
    """`data` if nothing can change it, else a copy of it."""
    if type(data) is bytes or (type(data) is memoryview and type(data.obj) is bytes):
        return data
    return bytes(data)


def _render_timed(config: TrackConfig, keyframe: bytes | memoryview
                  ) -> tuple[Picture | None, float]:
    """Worker-thread side: never raises, so a bad keyframe costs one log line."""
    started = time.perf_counter()
    try:
        picture: Picture | None = render_jpeg(config, keyframe)
    except ThumbnailError as exc:
        log.warning("thumbnail render failed (%s %dx%d): %s",
                    config.codec, config.width, config.height, exc)
        picture = None
    except Exception:
        log.exception("thumbnail render failed (%s)", config.codec)
        picture = None
    return picture, time.perf_counter() - started
