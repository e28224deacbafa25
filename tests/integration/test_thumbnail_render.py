"""Thumbnails from ffmpeg-encoded keyframes: JPEG rendering, rate limit, off-loop and bounded."""

from __future__ import annotations

import asyncio
import io
import threading

import av
import pytest

from hls.media import MediaPacket
from mediaserver import thumbnails
from mediaserver.publisher import TracksChanged
from mediaserver.thumbnails import (
    MAX_PENDING_RENDERS,
    Picture,
    Thumbnailer,
    ThumbnailError,
    render_jpeg,
)
from tests.hls_media import Media, av_clip, ffmpeg_has_encoder, hevc_clip
from tests.live import wait_for

pytestmark = pytest.mark.integration


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def keyframes(media: Media) -> list[MediaPacket]:
    return [p for p in media.packets if p.kind == "video" and p.keyframe]


def jpeg_size(data: bytes) -> tuple[int, int]:
    assert data[:2] == b"\xff\xd8", "not a JPEG"
    with av.open(io.BytesIO(data), format="image2pipe") as container:
        frame = next(container.decode(video=0))
    return frame.width, frame.height


def test_h264_keyframe_renders_as_jpeg_of_the_stream_size() -> None:
    media = av_clip()
    assert media.video is not None
    picture = render_jpeg(media.video, bytes(keyframes(media)[1].data))
    assert (picture.width, picture.height) == (1280, 720)
    assert jpeg_size(picture.jpeg) == (1280, 720)
    assert 10_000 < len(picture.jpeg) < 400_000


@pytest.mark.skipif(not ffmpeg_has_encoder("libx265"), reason="ffmpeg without libx265")
def test_hevc_keyframe_renders_too() -> None:
    media = hevc_clip()
    assert media.video is not None
    picture = render_jpeg(media.video, bytes(keyframes(media)[0].data))
    assert jpeg_size(picture.jpeg) == (320, 240)


def test_garbage_is_a_thumbnail_error() -> None:
    media = av_clip()
    assert media.video is not None
    with pytest.raises(ThumbnailError):
        render_jpeg(media.video, b"\x00\x00\x00\x05\x65garbage")


def fed(thumbnailer: Thumbnailer, channel: str, media: Media, count: int = 1):
    """A tap for `channel` that has seen the tracks and `count` keyframes."""
    tap = thumbnailer.tap(channel)
    tap(TracksChanged(media.video, media.audio))
    for packet in keyframes(media)[:count]:
        tap(packet)
    return tap


async def test_renders_at_most_once_per_interval() -> None:
    clock = FakeClock()
    thumbnailer = Thumbnailer(exists=lambda name: True, interval=5.0, clock=clock)
    try:
        media = av_clip()
        tap = fed(thumbnailer, "cam1", media)
        first = await thumbnailer.picture("cam1")
        assert first is not None and thumbnailer.stats.rendered == 1
        tap(keyframes(media)[1])  # a newer keyframe, but within the interval
        clock.now += 4.9
        assert await thumbnailer.picture("cam1") is first
        clock.now += 0.2
        second = await thumbnailer.picture("cam1")
        assert second is not None and second is not first
        clock.now += 60  # no newer keyframe: nothing to render however long it has been
        assert await thumbnailer.picture("cam1") is second
        assert thumbnailer.stats.rendered == 2 and thumbnailer.stats.render_seconds > 0
        assert await thumbnailer.picture("unknown") is None
    finally:
        thumbnailer.close()


async def test_render_is_off_the_loop_shared_and_never_blocks_the_tap(monkeypatch) -> None:
    release = threading.Event()
    started = threading.Event()
    real = thumbnails.render_jpeg

    def slow_render(config, keyframe):
        started.set()
        release.wait(10)
        return real(config, keyframe)

    monkeypatch.setattr(thumbnails, "render_jpeg", slow_render)
    thumbnailer = Thumbnailer(exists=lambda name: True)
    try:
        media = av_clip()
        tap = fed(thumbnailer, "cam1", media)
        waiters = [asyncio.create_task(thumbnailer.picture("cam1")) for _ in range(3)]
        await wait_for(started.is_set, timeout=5, what="the render to start")
        # The loop keeps running and the tap keeps taking packets while the render blocks.
        for packet in media.packets:
            tap(packet)
        assert not any(w.done() for w in waiters)
        release.set()
        pictures = await asyncio.wait_for(asyncio.gather(*waiters), timeout=10)
        assert all(isinstance(p, Picture) for p in pictures)
        assert pictures[0] is pictures[1] is pictures[2]
        assert thumbnailer.stats.rendered == 1
    finally:
        release.set()
        thumbnailer.close()


async def test_a_busy_renderer_skips_and_counts(monkeypatch) -> None:
    release = threading.Event()
    real = thumbnails.render_jpeg
    monkeypatch.setattr(thumbnails, "render_jpeg",
                        lambda config, keyframe: release.wait(10) and real(config, keyframe))
    thumbnailer = Thumbnailer(exists=lambda name: True)
    try:
        media = av_clip()
        busy = []
        for index in range(MAX_PENDING_RENDERS):
            fed(thumbnailer, f"busy{index}", media)
            busy.append(asyncio.create_task(thumbnailer.picture(f"busy{index}")))
        await asyncio.sleep(0)  # let each task start its render
        fed(thumbnailer, "late", media)
        assert await thumbnailer.picture("late") is None  # nothing older to show yet
        assert thumbnailer.stats.skipped == 1
        release.set()
        assert all(await asyncio.wait_for(asyncio.gather(*busy), timeout=20))
        assert await thumbnailer.picture("late") is not None  # its turn came
    finally:
        release.set()
        thumbnailer.close()


async def test_a_bad_keyframe_is_counted_and_not_retried() -> None:
    thumbnailer = Thumbnailer(exists=lambda name: True)
    try:
        media = av_clip()
        tap = thumbnailer.tap("cam1")
        tap(TracksChanged(media.video, media.audio))
        tap(MediaPacket("video", 0, 0, True, b"\x00\x00\x00\x05\x65junk"))
        assert await thumbnailer.picture("cam1") is None
        assert await thumbnailer.picture("cam1") is None
        assert thumbnailer.stats.failed == 1
    finally:
        thumbnailer.close()


async def test_gone_channels_are_pruned() -> None:
    live = {"a", "b"}
    thumbnailer = Thumbnailer(exists=live.__contains__)
    try:
        media = av_clip()
        fed(thumbnailer, "a", media)
        fed(thumbnailer, "b", media)
        assert await thumbnailer.picture("a") is not None
        live.discard("a")
        assert await thumbnailer.picture("a") is None  # its channel left the hub
        fed(thumbnailer, "c", media)
        assert set(thumbnailer._slots) == {"b", "c"}
    finally:
        thumbnailer.close()


async def test_a_keyframe_is_kept_without_a_copy_unless_it_could_change() -> None:
    thumbnailer = Thumbnailer(exists=lambda name: True)
    try:
        media = av_clip()
        key = keyframes(media)[0]
        tap = thumbnailer.tap("cam1")
        tap(TracksChanged(media.video, media.audio))
        payload = b"\x17\x01\x00\x00\x00" + bytes(key.data)  # as the ingest path holds it
        view = memoryview(payload)[5:]
        tap(MediaPacket("video", 0, 0, True, view))
        assert thumbnailer._slots["cam1"].keyframe[1] is view  # no copy of immutable bytes
        writable = bytearray(key.data)
        tap(MediaPacket("video", 2000, 2000, True, memoryview(writable)))
        writable[:] = b"\x00" * len(writable)  # the sender reuses its buffer
        picture = await thumbnailer.picture("cam1")
        assert picture is not None and jpeg_size(picture.jpeg) == (1280, 720)
    finally:
        thumbnailer.close()
