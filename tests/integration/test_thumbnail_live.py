"""GET /live/{channel}/thumbnail.jpg while a real ffmpeg publishes."""

from __future__ import annotations

import io
from pathlib import Path

import aiohttp
import av
import pytest

from tests.live import (
    http_url,
    make_clip,
    publishing,
    rtmp_url,
    running_server,
    wait_for,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("media") / "clip640.flv", seconds=10,
                     size="640x360")


def sof_size(jpeg: bytes) -> tuple[int, int]:
    """(width, height) from the JPEG's start-of-frame marker, read without a decoder."""
    assert jpeg[:2] == b"\xff\xd8"
    pos = 2
    while pos + 4 <= len(jpeg):
        marker, length = jpeg[pos + 1], int.from_bytes(jpeg[pos + 2 : pos + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2):
            height = int.from_bytes(jpeg[pos + 5 : pos + 7], "big")
            width = int.from_bytes(jpeg[pos + 7 : pos + 9], "big")
            return width, height
        pos += 2 + length
    raise AssertionError("no SOF marker")


async def test_thumbnail_is_a_jpeg_of_the_stream_size(tmp_path: Path, clip: Path) -> None:
    async with running_server(tmp_path) as server, aiohttp.ClientSession() as session:
        key = await server.store.create_channel("cam1")  # type: ignore[union-attr]
        url = http_url(server, "/live/cam1/thumbnail.jpg")
        async with publishing(rtmp_url(server, key), clip):
            async def fetch() -> tuple[bytes, dict] | None:
                async with session.get(url) as response:
                    if response.status != 200:
                        return None
                    return await response.read(), dict(response.headers)

            jpeg, headers = await wait_for(fetch, timeout=10, what="a thumbnail")
            again, _ = await wait_for(fetch, timeout=5, what="the thumbnail again")
            async with session.get(http_url(server, "/live/nobody/thumbnail.jpg")) as response:
                assert response.status == 404
            async with session.get(http_url(server, "/live/Bad%20Name/thumbnail.jpg")) as resp:
                assert resp.status == 404
            assert server.hub.is_live("cam1")  # ingest carried on throughout
    assert headers["Content-Type"] == "image/jpeg"
    assert sof_size(jpeg) == (640, 360)
    with av.open(io.BytesIO(jpeg), format="image2pipe") as container:
        frame = next(container.decode(video=0))
    assert (frame.width, frame.height) == (640, 360)
    assert again == jpeg  # within the interval: the same picture, not a second render
    assert server.thumbnails.stats.rendered == 1
