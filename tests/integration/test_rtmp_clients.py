"""Independent RTMP clients against our server: what they check, we must get right."""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

import pytest

from tests.live import rtmp_url, running_server

pytestmark = pytest.mark.integration

FFPROBE = shutil.which("ffprobe") or "ffprobe"


async def test_ffmpeg_reader_accepts_our_fp9_handshake(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """ffmpeg's RTMP reader verifies S1's digest (server version >= 3) before `connect`.

    With S1 signed by the wrong key it stops at "Server response validating failed";
    signed right, it connects, asks to play, and is refused (HLS only).
    """
    caplog.set_level(logging.INFO, logger="rtmp")
    async with running_server(tmp_path) as server:
        proc = await asyncio.create_subprocess_exec(
            FFPROBE, "-hide_banner", "-rw_timeout", "5000000", rtmp_url(server, "anything"),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), timeout=20)
    stderr = err.decode(errors="replace")
    assert "validating failed" not in stderr
    assert "Signature mismatch" not in stderr
    assert "this server does not serve RTMP playback" in stderr  # our Play.Failed reached it
    assert proc.returncode != 0
    assert any("rtmp play refused" in r.getMessage() for r in caplog.records)
