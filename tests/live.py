"""Helpers for tests that run the real server and real ffmpeg on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.servers import OurServer
from mediaserver.app import MediaServer
from mediaserver.config import load_config

T = TypeVar("T")

FFMPEG = shutil.which("ffmpeg") or "ffmpeg"


def make_clip(path: Path, seconds: int = 10, gop_seconds: float = 2.0, size: str = "1280x720",
              fps: int = 30, audio: bool = True, video: bool = True) -> Path:
    """An H.264 + AAC FLV clip like an encoder sends: fixed GOP, no scene-cut keyframes."""
    cmd = [FFMPEG, "-hide_banner", "-loglevel", "error", "-y"]
    if video:
        cmd += ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}"]
    if audio:
        cmd += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
    if video:
        gop = int(gop_seconds * fps)
        cmd += ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", str(gop),
                "-keyint_min", str(gop), "-sc_threshold", "0", "-b:v", "1500k", "-bf", "2"]
    if audio:
        cmd += ["-c:a", "aac", "-b:a", "128k", "-ac", "2"]
    cmd += ["-t", str(seconds), "-f", "flv", str(path)]
    subprocess.run(cmd, check=True, timeout=120)
    return path


async def publish(url: str, clip: Path, loops: int = 0, extra: list[str] | None = None
                  ) -> asyncio.subprocess.Process:
    """Start a real ffmpeg publishing the clip in real time (-re, stream copy)."""
    cmd = [FFMPEG, "-hide_banner", "-loglevel", "error", "-re"]
    if loops:
        cmd += ["-stream_loop", str(loops)]
    cmd += ["-i", str(clip), "-c", "copy", *(extra or []), "-f", "flv", url]
    return await asyncio.create_subprocess_exec(
        *cmd, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


@contextlib.asynccontextmanager
async def publishing(url: str, clip: Path, loops: int = 0, extra: list[str] | None = None
                     ) -> AsyncIterator[asyncio.subprocess.Process]:
    """`publish`, with the ffmpeg killed (if still running) when the block is left."""
    proc = await publish(url, clip, loops, extra)
    try:
        yield proc
    finally:
        await stop_process(proc)


async def publish_refused(url: str, clip: Path) -> bool:
    """Start ffmpeg and report whether the server refused it (non-zero exit, fast)."""
    proc = await publish(url, clip)
    try:
        code = await asyncio.wait_for(proc.wait(), timeout=8)
    except TimeoutError:
        return False
    finally:
        await stop_process(proc)
    return code != 0


async def stop_process(proc: asyncio.subprocess.Process, timeout: float = 5.0) -> None:
    if proc.returncode is None:
        proc.kill()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), timeout)


async def wait_for(predicate: Callable[[], Awaitable[T | None] | T | None], timeout: float,
                   interval: float = 0.05, what: str = "condition") -> T:
    """Poll until predicate returns something truthy; fail with `what` after the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value) or isinstance(value, Awaitable):
            value = await value  # type: ignore[misc]
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def running_server(data_dir: Path, *,
                         before_start: Callable[[MediaServer], None] | None = None,
                         **options: Any) -> AsyncIterator[MediaServer]:
    """The whole server in this test's loop, on 127.0.0.1 ephemeral ports.

    `before_start` may set what the cluster layer would (`cluster_locate`).
    """
    flags = {"rtmp": "127.0.0.1:0", "http": "127.0.0.1:0", "data_dir": str(data_dir),
             "log_level": "info"}
    flags.update({k: str(v) for k, v in options.items()})
    config = load_config(flags, env={})
    server = MediaServer(config)
    if before_start is not None:
        before_start(server)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def rtmp_url(server: MediaServer, key: str) -> str:
    return f"rtmp://127.0.0.1:{server.rtmp_address[1]}/live/{key}"


def http_url(server: MediaServer, path: str) -> str:
    return f"http://127.0.0.1:{server.http_address[1]}{path}"


async def api_call(session: aiohttp.ClientSession, server: MediaServer, method: str, path: str,
                   token: str, **kwargs: Any) -> tuple[int, Any]:
    """One control API call: (status, parsed JSON body or None)."""
    async with session.request(method, http_url(server, "/api/v1" + path),
                               headers={"Authorization": f"Bearer {token}"},
                               **kwargs) as response:
        text = await response.text()
        return response.status, json.loads(text) if text else None


@contextlib.asynccontextmanager
async def server_processes(count: int, *args: str) -> AsyncIterator[list[OurServer]]:
    """`count` `mediaserver serve` processes on ephemeral ports, started side by side."""
    servers = [OurServer(cpu=None, extra_args=list(args)) for _ in range(count)]
    try:
        await asyncio.gather(*(server.start() for server in servers))
        yield servers
    finally:
        await asyncio.gather(*(server.stop() for server in servers))


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def metric_samples(text: str) -> Samples:
    """A /metrics page as {(sample name, sorted labels): value}."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}
