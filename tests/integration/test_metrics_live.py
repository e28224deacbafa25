"""/metrics while a real ffmpeg publishes: the stream's series exist and move."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.live import (
    http_url,
    make_clip,
    publishing,
    rtmp_url,
    running_server,
    wait_for,
)

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("media") / "clip.flv", seconds=10)


async def scrape(session: aiohttp.ClientSession, url: str) -> Samples:
    async with session.get(url) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await response.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def get(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


async def test_stream_series_exist_and_move(tmp_path: Path, clip: Path) -> None:
    async with running_server(tmp_path) as server, aiohttp.ClientSession() as session:
        key = await server.store.create_channel("cam1")  # type: ignore[union-attr]
        metrics_url = http_url(server, "/metrics")
        async with publishing(rtmp_url(server, "not-a-key"), clip) as bad:
            await asyncio.wait_for(bad.wait(), timeout=10)
        async with publishing(rtmp_url(server, key), clip, loops=1):
            async def playlist_ok() -> bool:
                async with session.get(http_url(server, "/live/cam1/index.m3u8")) as response:
                    return response.status == 200

            await wait_for(playlist_ok, timeout=10, what="the playlist")
            first = await scrape(session, metrics_url)
            first_at = time.monotonic()
            video_labels = {"channel": "cam1", "track": "video"}

            # The rate window (5 s) is full once the feed has run a few seconds more.
            async def settled() -> Samples | None:
                samples = await scrape(session, metrics_url)
                if time.monotonic() - first_at < 6.0:
                    return None
                return samples

            second = await wait_for(settled, timeout=15, interval=0.5, what="a settled feed")
            # A connection of its own: one that asked for /metrics belongs to aiohttp.
            async with aiohttp.ClientSession() as viewer, \
                    viewer.get(http_url(server, "/live/cam1/index.m3u8")) as response:
                assert response.status == 200
            third = await scrape(session, metrics_url)

    assert get(second, "mediaserver_live_streams") == 1
    assert get(second, "mediaserver_rtmp_connections_open") == 1
    assert get(second, "mediaserver_rtmp_publish_attempts_total", result="ok") == 1
    assert get(second, "mediaserver_rtmp_publish_attempts_total", result="bad_key") == 1
    # Bytes, frames and segments grow between scrapes.
    for name, labels in [
        ("mediaserver_stream_ingest_bytes_total", video_labels),
        ("mediaserver_stream_ingest_bytes_total", {"channel": "cam1", "track": "audio"}),
        ("mediaserver_stream_video_frames_total", {"channel": "cam1"}),
        ("mediaserver_hls_segments_produced_total", {"channel": "cam1"}),
        ("mediaserver_rtmp_received_bytes_total", {}),
    ]:
        before, after = get(first, name, **labels), get(second, name, **labels)
        assert before is not None and after is not None and after > before, name
    # The source is 30 fps, 2 s GOP, ~1.6 Mbit/s (1500k video + 128k audio).
    fps = get(second, "mediaserver_stream_frames_per_second", channel="cam1")
    assert fps is not None and 27.0 <= fps <= 33.0, fps
    assert get(second, "mediaserver_stream_keyframe_interval_seconds", channel="cam1") == 2.0
    bitrate = get(second, "mediaserver_stream_bitrate_bits_per_second", channel="cam1")
    assert bitrate is not None and 0.8e6 <= bitrate <= 3.0e6, bitrate
    assert get(second, "mediaserver_stream_info", channel="cam1", video_codec="h264",
               width="1280", height="720", audio_codec="aac", sample_rate="48000") == 1
    produced = get(second, "mediaserver_hls_segments_produced_total", channel="cam1")
    assert get(second, "mediaserver_hls_segment_duration_seconds_count",
               channel="cam1") == produced
    # HLS requests were counted by kind and status; this client is the one viewer.
    assert (get(third, "mediaserver_hls_requests_total", kind="playlist", status="200") or 0) >= 2
    assert get(third, "mediaserver_hls_viewers", channel="cam1") == 1
    # That playlist was answered on the hot path; /metrics went to aiohttp.
    hot = (get(third, "mediaserver_http_hot_answers_total") or 0) - (
        get(second, "mediaserver_http_hot_answers_total") or 0)
    assert hot == 1
    assert (get(third, "mediaserver_http_connections_handed_over_total") or 0) >= 1
    assert (get(third, "process_resident_memory_bytes") or 0) > 0
