"""A flood of frames FFmpeg cannot mux: refused and counted, the log stays short."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path

import aiohttp
import pytest

from rtmp import amf0
from rtmp.chunk import ChunkWriter
from rtmp.handshake import HANDSHAKE_SIZE, build_client_c0c1
from tests.live import publishing, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TINY_FRAMES = 4000
FRAMES_PER_MS = 2  # 2,000 frames a second, as in the report
# Before the fix the flood alone wrote ~2 ERROR lines per frame.
MAX_LOG_LINES = 80


async def serve(data_dir: Path, log_path: Path) -> tuple[asyncio.subprocess.Process, str, int]:
    """`mediaserver serve` on free ports; returns it, the demo key and the RTMP port."""
    env = {**os.environ, "MEDIASERVER_RTMP": "127.0.0.1:0", "MEDIASERVER_HTTP": "127.0.0.1:0"}
    with log_path.open("w") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mediaserver", "serve", "--data-dir", str(data_dir),
            stdout=asyncio.subprocess.PIPE, stderr=log, cwd=ROOT, env=env)
    assert proc.stdout is not None
    banner = ""
    async with asyncio.timeout(20):
        while "API token" not in banner:
            line = await proc.stdout.readline()
            assert line, banner
            banner += line.decode()
    key = re.search(r"Stream key : (\S+)", banner)
    rtmp = re.search(r"Server     : rtmp://[^:]+:(\d+)/live", banner)
    assert key and rtmp, banner
    return proc, key.group(1), int(rtmp.group(1))


async def add_channel(data_dir: Path, name: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mediaserver", "channel", "add", name, "--json",
        "--data-dir", str(data_dir), stdout=asyncio.subprocess.PIPE, cwd=ROOT)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    return str(json.loads(out)["stream_key"])


async def publish_tiny_aac(port: int, key: str) -> None:
    """A raw RTMP publisher: an AAC sequence header, then 3-byte FLV audio tags."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(build_client_c0c1())
        await asyncio.wait_for(reader.readexactly(1 + 2 * HANDSHAKE_SIZE), 5)
        writer.write(bytes(HANDSHAKE_SIZE))
        chunks = ChunkWriter()
        writer.write(chunks.write(3, 20, 0, 0, amf0.encode_values("connect", 1, {"app": "live"})))
        writer.write(chunks.write(3, 20, 0, 0, amf0.encode_values("createStream", 2, None)))
        writer.write(chunks.write(4, 20, 1, 0, amf0.encode_values("publish", 3, None, key,
                                                                    "live")))
        writer.write(chunks.write(6, 8, 1, 0, bytes((0xAF, 0x00, 0x12, 0x10))))  # AAC-LC 44.1k
        for frame in range(TINY_FRAMES):
            # AAC raw frame of one byte: the FLV tag body is 3 bytes.
            writer.write(chunks.write(6, 8, 1, frame // FRAMES_PER_MS, b"\xaf\x01\x21"))
            if frame % 200 == 199:  # 200 frames per 0.1 s: 2,000 a second
                await writer.drain()
                await asyncio.sleep(0.1)
        await writer.drain()
    finally:
        writer.close()


def sample(metrics: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    match = re.search(rf"^{name}\{{{re.escape(wanted)}\}} (\S+)$", metrics, re.M)
    return float(match.group(1)) if match else 0.0


async def test_tiny_aac_flood_is_refused_counted_and_logged_briefly(
        tmp_path: Path, clip: Path) -> None:
    data_dir, log_path = tmp_path / "data", tmp_path / "server.log"
    proc, demo_key, rtmp_port = await serve(data_dir, log_path)
    try:
        tiny_key = await add_channel(data_dir, "tiny")
        http = re.search(r"http://127\.0\.0\.1:(\d+)/", log_path.read_text())
        assert http, log_path.read_text()
        base = f"http://127.0.0.1:{http.group(1)}"
        async with aiohttp.ClientSession() as session, publishing(
                f"rtmp://127.0.0.1:{rtmp_port}/live/{demo_key}", clip, loops=1):

            async def metrics() -> str:
                async with session.get(f"{base}/metrics") as response:
                    return await response.text()

            async def demo_segments() -> float:
                return sample(await metrics(), "mediaserver_hls_segments_produced_total",
                              channel="demo")

            await wait_for(demo_segments, timeout=20, what="the healthy stream's segments")
            before = await demo_segments()
            lines_before = len(log_path.read_text().splitlines())
            await publish_tiny_aac(rtmp_port, tiny_key)

            async def refused() -> float | None:
                count = sample(await metrics(), "mediaserver_hls_packets_dropped_total",
                               channel="tiny", reason="muxer_refused")
                return count if count >= TINY_FRAMES * 0.9 else None

            await wait_for(refused, timeout=15, what="the tiny frames to be counted as refused")
            # The healthy stream went on cutting segments, and lost nothing to the muxer.
            async def carried_on() -> bool:
                return await demo_segments() >= before + 2

            await wait_for(carried_on, timeout=15, what="the healthy stream to carry on")
            text = await metrics()
            assert sample(text, "mediaserver_hls_packets_dropped_total", channel="demo",
                          reason="muxer_refused") == 0
            async with session.get(f"{base}/live/demo/index.m3u8") as response:
                assert response.status == 200
        log = log_path.read_text().splitlines()
        assert len(log) - lines_before <= MAX_LOG_LINES, "\n".join(log[-40:])
    finally:
        if proc.returncode is None:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 10)
