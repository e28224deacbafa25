"""The `mediaserver` command as an operator runs it: first start, channel add, clean stop."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.live import FFMPEG

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, data_dir: Path, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mediaserver", *args, "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=30, cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def test_channel_add_json_then_list_rotate_remove(tmp_path: Path) -> None:
    added = run_cli("channel", "add", "studio-1", "--json", data_dir=tmp_path)
    assert added.returncode == 0, added.stderr
    info = json.loads(added.stdout)
    assert set(info) == {"name", "stream_key", "rtmp_url", "playback_url"}
    assert info["name"] == "studio-1"
    assert len(info["stream_key"]) >= 22  # >= 128 bits, URL-safe
    assert re.fullmatch(r"[A-Za-z0-9_-]+", info["stream_key"])
    assert info["rtmp_url"].startswith("rtmp://") and info["rtmp_url"].endswith("/live")
    assert info["playback_url"].endswith("/live/studio-1/index.m3u8")
    assert info["stream_key"] not in info["playback_url"]
    # The key is stored hashed only.
    assert info["stream_key"].encode() not in (tmp_path / "channels.sqlite3").read_bytes()

    again = run_cli("channel", "add", "studio-1", data_dir=tmp_path)
    assert again.returncode == 1 and "already exists" in again.stderr
    bad = run_cli("channel", "add", "Bad Name", data_dir=tmp_path)
    assert bad.returncode == 2 and "name" in bad.stderr

    rotated = json.loads(run_cli("channel", "rotate", "studio-1", "--json",
                                 data_dir=tmp_path).stdout)
    assert rotated["stream_key"] != info["stream_key"]
    listed = json.loads(run_cli("channel", "list", "--json", data_dir=tmp_path).stdout)
    assert [c["name"] for c in listed] == ["studio-1"]
    assert "stream_key" not in listed[0]
    assert run_cli("channel", "remove", "studio-1", data_dir=tmp_path).returncode == 0
    assert run_cli("channel", "remove", "studio-1", data_dir=tmp_path).returncode == 1


def test_serve_first_start_publish_play_and_clean_sigterm(tmp_path: Path, clip: Path) -> None:
    """The real command (uvloop and all): banner, a real publish to the demo key, SIGTERM."""
    env = {**os.environ, "MEDIASERVER_RTMP": "127.0.0.1:0", "MEDIASERVER_HTTP": "127.0.0.1:0"}
    env.pop("MEDIASERVER_API_TOKEN", None)
    log_path = tmp_path / "server.log"
    data_dir = tmp_path / "data"
    log_file = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mediaserver", "serve", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE, stderr=log_file, text=True, cwd=ROOT, env=env,
    )
    publisher: subprocess.Popen[bytes] | None = None
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "API token" in line:
                break
        banner = "".join(lines)
        key = re.search(r"Stream key : (\S+)", banner)
        playback = re.search(r"Play it at : (http://\S+)", banner)
        http_base = re.search(r"Dashboard   : (http://\S+)/", banner)
        assert key and playback and http_base, banner
        assert "Channel 'demo' created" in banner
        assert re.search(r"Server     : rtmp://\S+:\d+/live", banner)
        token = (data_dir / "api_token").read_text().strip()
        assert token in banner
        assert oct((data_dir / "api_token").stat().st_mode & 0o777) == "0o600"
        port = http_base.group(1).rsplit(":", 1)[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            assert response.status == 200
            assert json.loads(response.read())["status"] == "ok"
        server_url = re.search(r"Server     : (rtmp://\S+)", banner)
        assert server_url is not None
        publisher = subprocess.Popen(
            [FFMPEG, "-hide_banner", "-loglevel", "error", "-re", "-i", str(clip), "-c", "copy",
             "-f", "flv", f"{server_url.group(1)}/{key.group(1)}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        playlist = poll_url(playback.group(1), deadline=time.monotonic() + 15)
        assert "#EXTINF" in playlist
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert publisher.wait(timeout=10) is not None  # its connection was closed by us
        log = log_path.read_text()
        assert re.search(r"listening rtmp://127\.0\.0\.1:\d+/live http://127\.0\.0\.1:\d+/", log)
        assert "rtmp publish started" in log and "stopped" in log
        assert key.group(1) not in log  # the key is never logged
    finally:
        for child in (publisher, proc):
            if child is not None and child.poll() is None:
                child.kill()
                child.wait(timeout=5)
        log_file.close()
    # A second start finds the channel and the token: no new demo key.
    second = subprocess.run(
        [sys.executable, "-m", "mediaserver", "channel", "list", "--json",
         "--data-dir", str(data_dir)], capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert [c["name"] for c in json.loads(second.stdout)] == ["demo"]


def poll_url(url: str, deadline: float) -> str:
    """GET url until it answers 200 (the playlist exists) or the deadline passes."""
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
