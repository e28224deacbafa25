"""A churned channel is freed by reference counting, not left for the cyclic collector.

The soak's RSS grew with every publish (issue 9): each ended channel sat in a
reference cycle (the hub's channel and its reader's bound methods) with its
segmenter and segments, until a full pass of Python's cyclic collector, which
a server with many live objects runs minutes apart. glibc then kept the heap
pages those segments had used. This test runs the whole server with real ffmpeg
publishers, a viewer and both ways a publish ends, with the collector off, and
then asks the collector what only it could have freed: nothing of the server's
(nor of PyAV's, whose objects hold FFmpeg's memory), and no media buffer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest

from mediaserver.app import MediaServer
from tests.live import (
    http_url,
    make_clip,
    publish,
    publish_refused,
    rtmp_url,
    running_server,
    stop_process,
    wait_for,
)
from tests.m3u8 import parse_playlist

pytestmark = pytest.mark.integration

CHANNEL = "churn"
# Seconds an ended playlist stays servable here (the server's 60 s would make a slow test).
ENDED_RETENTION = 1.0
GRACE = 1.0
# Modules whose objects must never be cyclic garbage after a channel ends.
OWN_PACKAGES = frozenset({"rtmp", "hls", "mediaserver", "control_api", "av"})
# A bytes object this big held only by garbage is media (frames are ~1-20 kB here,
# segments ~100-400 kB): what made RSS grow.
MEDIA_BUFFER_BYTES = 16 * 1024


@pytest.fixture(scope="module")
def small_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 s of 320x180 H.264 + AAC (2 s GOP): two segments per publish, quickly."""
    return make_clip(tmp_path_factory.mktemp("churn") / "small.flv", seconds=4, size="320x180")


def _short_retention(server: MediaServer) -> None:
    server.hub.settings = dataclasses.replace(server.hub.settings,
                                              ended_retention=ENDED_RETENTION)


@contextmanager
def _collector_off() -> Iterator[list[object]]:
    """Inside: the cyclic collector neither runs nor sees older objects. At exit the
    yielded list gets what only it could free of the objects made inside."""
    found: list[object] = []
    gc.collect()
    gc.freeze()  # what existed before is not this test's business
    gc.disable()
    try:
        yield found
        gc.set_debug(gc.DEBUG_SAVEALL)  # keep the garbage for a look instead of freeing it
        gc.collect()
        found.extend(gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.unfreeze()
        gc.enable()


def _module_of(obj: object) -> str:
    """The module an object comes from; for functions and bound methods, their owner's."""
    if isinstance(obj, types.FunctionType):
        return obj.__module__ or ""
    if isinstance(obj, types.MethodType):
        return type(obj.__self__).__module__
    return type(obj).__module__


def _ours(garbage: list[object]) -> list[str]:
    names = []
    for obj in garbage:
        module = _module_of(obj)
        if module.split(".")[0] in OWN_PACKAGES:
            names.append(f"{module}.{type(obj).__qualname__}")
    return sorted(set(names))


def _media_buffers(garbage: list[object]) -> int:
    """Bytes of large buffers that garbage refers to, directly or through containers
    the collector does not track (a dict of name -> segment holds nothing it could
    be part of a cycle through, so it is untracked and never in gc.garbage)."""
    seen: dict[int, int] = {}
    pending = list(garbage)
    while pending:
        for referent in gc.get_referents(pending.pop()):
            if isinstance(referent, bytes | bytearray):
                if len(referent) >= MEDIA_BUFFER_BYTES:
                    seen[id(referent)] = len(referent)
            elif isinstance(referent, dict | list | tuple) and not gc.is_tracked(referent):
                pending.append(referent)
    return sum(seen.values())


async def _watch(session: aiohttp.ClientSession, server: MediaServer) -> int:
    """A viewer: the playlist (plain, gzipped, then conditional), its segments and the
    thumbnail. Returns the segments fetched."""
    url = http_url(server, f"/live/{CHANNEL}/index.m3u8")

    async def listed() -> str | None:
        async with session.get(url) as response:
            return await response.text() if response.status == 200 else None

    playlist = parse_playlist(await wait_for(listed, timeout=15, what="a playlist"))
    async with session.get(url, headers={"Accept-Encoding": "gzip"}) as response:
        etag = response.headers["ETag"]
        await response.read()
    async with session.get(url, headers={"Accept-Encoding": "gzip",
                                         "If-None-Match": etag}) as response:
        assert response.status in (200, 304)  # 200 if a segment was added meanwhile
    for segment in playlist.segments:
        async with session.get(http_url(server, f"/live/{CHANNEL}/{segment.uri}")) as response:
            assert response.status == 200
            await response.read()
    async with session.get(http_url(server, f"/live/{CHANNEL}/thumbnail.jpg")) as response:
        await response.read()
    return len(playlist.segments)


async def test_a_churned_channel_leaves_nothing_for_the_cyclic_collector(
    tmp_path: Path, small_clip: Path
) -> None:
    async with running_server(tmp_path, grace_period=GRACE,
                              before_start=_short_retention) as server, \
            aiohttp.ClientSession() as session:
        key = await server.store.create_channel(CHANNEL)  # type: ignore[union-attr]
        url = rtmp_url(server, key)
        with _collector_off() as garbage:
            # Stop Streaming: ffmpeg ends its clip with FCUnpublish + deleteStream.
            proc = await publish(url, small_clip)
            try:
                watched = await _watch(session, server)
                assert await asyncio.wait_for(proc.wait(), timeout=20) == 0
            finally:
                await stop_process(proc)
            await wait_for(lambda: CHANNEL not in server.hub.channels, timeout=10,
                           what="the stopped channel dropped from memory")
            # A dropped connection: the grace period, ENDLIST, then the same drop.
            proc = await publish(url, small_clip, loops=-1)
            try:
                watched += await _watch(session, server)
            finally:
                await stop_process(proc)
            await wait_for(lambda: CHANNEL not in server.hub.channels, timeout=10,
                           what="the dropped channel dropped from memory")
            assert await publish_refused(rtmp_url(server, "not-a-key"), small_clip)
            await wait_for(lambda: not server.rtmp or not server.rtmp.sessions, timeout=10,
                           what="every RTMP session gone")
        assert watched >= 2
        assert _ours(garbage) == []
        assert _media_buffers(garbage) == 0
