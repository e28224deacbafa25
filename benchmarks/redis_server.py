"""A throwaway redis-server for tests and benchmarks: 127.0.0.1, a free port, no persistence.

It can be stopped and started again on the same port, which is how tests simulate a
Redis outage that clients must ride out without being reopened.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

REDIS_SERVER = shutil.which("redis-server")
START_DEADLINE = 10.0  # seconds for redis-server to answer PING
STOP_DEADLINE = 5.0  # seconds for it to exit on SIGTERM before SIGKILL
PORT_ATTEMPTS = 5  # a free port can be taken between probe and bind; try a few


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ping(port: int, timeout: float = 0.5) -> bool:
    """True if a Redis on 127.0.0.1:port answers PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server process; `start()`/`stop()` may be repeated on the same port."""

    def __init__(self) -> None:
        if REDIS_SERVER is None:
            raise RuntimeError("redis-server is not installed")
        self._workdir = Path(tempfile.mkdtemp(prefix="redis-test-"))
        self._process: subprocess.Popen[bytes] | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        assert self.port is not None, "start() first"
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start on the port used before, or on a fresh free port the first time."""
        if self.running:
            return
        if self.port is not None:
            self._launch(self.port)
            return
        last_error: Exception | None = None
        for _ in range(PORT_ATTEMPTS):
            try:
                self._launch(free_port())
                return
            except RuntimeError as exc:
                last_error = exc
        raise RuntimeError(f"redis-server did not start: {last_error}")

    def _launch(self, port: int) -> None:
        assert REDIS_SERVER is not None
        log = self._workdir / "redis.log"
        with log.open("ab") as out:
            self._process = subprocess.Popen(
                [
                    REDIS_SERVER,
                    "--port", str(port),
                    "--bind", "127.0.0.1",
                    "--save", "",
                    "--appendonly", "no",
                    "--dir", str(self._workdir),
                    "--daemonize", "no",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + START_DEADLINE
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            if ping(port):
                self.port = port
                return
            time.sleep(0.02)
        self.stop()
        tail = log.read_text(errors="replace")[-500:]
        raise RuntimeError(f"redis-server on port {port} not ready: {tail}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_DEADLINE)

    def restart(self) -> None:
        self.stop()
        self.start()

    def flushall(self) -> None:
        assert self.port is not None
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as conn:
            conn.sendall(b"FLUSHALL\r\n")
            assert conn.recv(64).startswith(b"+OK")

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
