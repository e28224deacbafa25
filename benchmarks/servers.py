"""The servers under test behind one small interface, so every scenario runs on each.

Each server runs as its own process on loopback, pinned to one CPU, so that its
CPU time and memory can be read from /proc without the load generator's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiohttp

from . import procstats
from .machine import nginx_version, server_source

HOST = "127.0.0.1"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
NGINX_RTMP_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")
_LISTENING = re.compile(r"rtmp://[^\s:]+:(\d+)\S*\s+http://[^\s:]+:(\d+)")


class ServerError(RuntimeError):
    """The server under test would not start or prepare streams."""


@dataclass(frozen=True, slots=True)
class StreamTarget:
    """Where publisher i pushes and where its viewers read."""

    host: str
    port: int
    app: str
    stream_name: str
    playlist_url: str


class ServerUnderTest(Protocol):
    name: str
    code: str  # what is running: set by start()

    @property
    def pid(self) -> int: ...

    async def start(self) -> None: ...

    async def stop(self) -> int | None: ...

    async def prepare(self, count: int) -> list[StreamTarget]: ...


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class _Process:
    """A child process with its output in a log file, pinned to a CPU."""

    def __init__(self, workdir: Path, cpu: int | None) -> None:
        self.workdir = workdir
        self.cpu = cpu
        self.log_path = workdir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(self, cmd: list[str], env: dict[str, str] | None = None) -> None:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        procstats.pin(self.proc.pid, self.cpu)

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise ServerError("not started")
        return self.proc.pid

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise ServerError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")

    async def terminate(self) -> int | None:
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT
            while proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        return proc.returncode


async def _wait_http(url: str, process: _Process) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            process.check_alive()
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(url) as response:
                    if response.status < 500:
                        return
            await asyncio.sleep(0.1)
    raise ServerError(f"{url} not answering after {START_TIMEOUT:.0f}s:\n{process.log_tail()}")


class _SubprocessServer:
    """What both servers under test share: one pinned process in a temp dir, torn down whole."""

    def __init__(self, cpu: int | None) -> None:
        self.cpu = cpu
        self.code = ""
        self.rtmp_port = 0
        self.http_port = 0
        self.final_log = ""
        self.final_log_text = ""  # the whole log, kept when stop() removes the temp dir
        self._stopped = False
        self._exit_code: int | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._process: _Process | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    async def stop(self) -> int | None:
        """Stop (SIGTERM, then SIGKILL), keep the log, remove the temp dir; idempotent."""
        if self._stopped:
            return self._exit_code
        self._exit_code = await self._process.terminate() if self._process else None
        self._stopped = True
        self.final_log = self.log_tail()
        self.final_log_text = self.log_text()
        if self._tmp is not None:
            self._tmp.cleanup()
        return self._exit_code

    def log_text(self) -> str:
        """The whole server log so far (empty once stopped: the temp dir is gone)."""
        if self._process is None:
            return ""
        with contextlib.suppress(OSError):
            return self._process.log_path.read_text(errors="replace")
        return ""

    def log_tail(self) -> str:
        if self._process is None or not self._process.workdir.exists():
            return self.final_log
        return (self._process.log_tail() + "\n" + self._extra_log()).strip()

    def _extra_log(self) -> str:
        return ""


class OurServer(_SubprocessServer):
    """`python -m mediaserver serve` on ephemeral ports; channels made through the API."""

    name = "ours"

    def __init__(self, cpu: int | None, extra_args: list[str] | None = None,
                 command: list[str] | None = None) -> None:
        super().__init__(cpu)
        self.extra_args = extra_args or []
        # Overridable to compare another checkout or build: argv up to and including "serve".
        self.command = command or [sys.executable, "-m", "mediaserver", "serve"]
        self.token = secrets.token_urlsafe(24)

    async def start(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="bench-ours-")
        workdir = Path(self._tmp.name)
        self._process = _Process(workdir, self.cpu)
        env = dict(os.environ, MEDIASERVER_API_TOKEN=self.token)
        cmd = [*self.command, "--rtmp", f"{HOST}:0",
               "--http", f"{HOST}:0", "--data-dir", str(workdir / "data"), *self.extra_args]
        default = self.command == [sys.executable, "-m", "mediaserver", "serve"]
        self.code = server_source() if default else f"command {' '.join(self.command)}"
        self._process.spawn(cmd, env)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            self._process.check_alive()
            match = _LISTENING.search(self._process.log_tail(200))
            if match:
                self.rtmp_port, self.http_port = int(match[1]), int(match[2])
                break
            await asyncio.sleep(0.05)
        else:
            raise ServerError(f"no 'listening' line:\n{self._process.log_tail()}")
        await _wait_http(f"http://{HOST}:{self.http_port}/healthz", self._process)

    async def prepare(self, count: int) -> list[StreamTarget]:
        """Create channels bench0..bench{count-1} and return their targets."""
        headers = {"Authorization": f"Bearer {self.token}"}
        base = f"http://{HOST}:{self.http_port}"
        targets = []
        async with aiohttp.ClientSession(headers=headers) as session:
            for i in range(count):
                name = f"bench{i}"
                async with session.post(f"{base}/api/v1/channels", json={"name": name}) as resp:
                    body = await resp.json(content_type=None)
                    if resp.status != 201:
                        raise ServerError(f"creating channel {name}: {resp.status} {body}")
                targets.append(StreamTarget(HOST, self.rtmp_port, "live", body["stream_key"],
                                            f"{base}/live/{name}/index.m3u8"))
        return targets


NGINX_CONFIG = """\
load_module {module};
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 8192; }}
rtmp {{
    server {{
        listen {host}:{rtmp_port};
        chunk_size 4096;
        application live {{
            live on;
            hls on;
            hls_path {hls};
            hls_fragment {fragment}s;
            hls_playlist_length {playlist}s;
        }}
    }}
}}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    types {{
        application/vnd.apple.mpegurl m3u8;
        video/mp2t ts;
    }}
    server {{
        listen {host}:{http_port};
        location /live/ {{
            alias {hls}/;
            add_header Cache-Control no-cache;
        }}
        location = /healthz {{ return 200 "ok"; }}
    }}
}}
"""


class NginxRtmp(_SubprocessServer):
    """Debian's nginx + libnginx-mod-rtmp, one process (no master), HLS on."""

    name = "nginx"

    def __init__(self, cpu: int | None, segment_seconds: float = 2.0,
                 playlist_segments: int = 6) -> None:
        super().__init__(cpu)
        self.segment_seconds = segment_seconds
        self.playlist_segments = playlist_segments

    @staticmethod
    def available() -> str | None:
        """None if nginx-rtmp can run here, else what is missing."""
        if shutil.which("nginx") is None:
            return "nginx not installed (apt-get install -y nginx libnginx-mod-rtmp)"
        if not NGINX_RTMP_MODULE.exists():
            return f"{NGINX_RTMP_MODULE} missing (apt-get install -y libnginx-mod-rtmp)"
        return None

    async def start(self) -> None:
        missing = self.available()
        if missing:
            raise ServerError(missing)
        self._tmp = tempfile.TemporaryDirectory(prefix="bench-nginx-")
        prefix = Path(self._tmp.name)
        hls = prefix / "hls"
        hls.mkdir()
        self.rtmp_port, self.http_port = free_port(), free_port()
        conf = prefix / "nginx.conf"
        conf.write_text(NGINX_CONFIG.format(
            module=NGINX_RTMP_MODULE, prefix=prefix, host=HOST, rtmp_port=self.rtmp_port,
            http_port=self.http_port, hls=hls, fragment=f"{self.segment_seconds:g}",
            playlist=f"{self.segment_seconds * self.playlist_segments:g}"))
        self._process = _Process(prefix, self.cpu)
        self.code = nginx_version()
        self._process.spawn(["nginx", "-c", str(conf), "-p", str(prefix),
                             "-e", str(prefix / "error.log")])
        await _wait_http(f"http://{HOST}:{self.http_port}/healthz", self._process)

    async def prepare(self, count: int) -> list[StreamTarget]:
        """nginx-rtmp takes any stream name; its HLS is hls_path/NAME.m3u8."""
        base = f"http://{HOST}:{self.http_port}/live"
        return [StreamTarget(HOST, self.rtmp_port, "live", f"bench{i}",
                             f"{base}/bench{i}.m3u8") for i in range(count)]

    def _extra_log(self) -> str:
        assert self._process is not None
        with contextlib.suppress(OSError):
            return (self._process.workdir / "error.log").read_text(errors="replace")[-2000:]
        return ""


def make_server(name: str, cpu: int | None, ours_args: list[str] | None = None,
                ours_command: list[str] | None = None,
                segment_seconds: float = 2.0) -> OurServer | NginxRtmp:
    if name == "ours":
        return OurServer(cpu, ours_args, ours_command)
    if name == "nginx":
        return NginxRtmp(cpu, segment_seconds)
    raise ValueError(f"unknown server {name!r} (ours, nginx)")
