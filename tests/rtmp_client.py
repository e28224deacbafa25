"""A scripted RTMP client over a real socket, for tests that need a peer we control.

It behaves as the encoders we model do (librtmp, ffmpeg): commands on chunk
stream 3, stream commands on 4, replies read with our ChunkReader and AMF0 decoder.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from rtmp import amf0
from rtmp.chunk import ChunkReader, ChunkWriter
from rtmp.handshake import HANDSHAKE_SIZE, build_client_c0c1

COMMAND = 20  # AMF0 command message type


class RawClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.chunks = ChunkWriter()
        self.replies = ChunkReader()

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(build_client_c0c1())
        await reader.readexactly(1 + 2 * HANDSHAKE_SIZE)
        writer.write(b"\x00" * HANDSHAKE_SIZE)
        await writer.drain()
        return cls(reader, writer)

    def command_bytes(self, *values: Any, stream_id: int = 0) -> bytes:
        return self.chunks.write(3 if stream_id == 0 else 4, COMMAND, stream_id, 0,
                                 amf0.encode_values(*values))

    async def send(self, *values: Any, stream_id: int = 0) -> None:
        self.writer.write(self.command_bytes(*values, stream_id=stream_id))
        await self.writer.drain()

    async def next_command(self, timeout: float = 5.0) -> list[Any] | None:
        """The next command the server sends, or None at EOF."""
        deadline = time.monotonic() + timeout
        while True:
            msg = self.replies.next_message()
            if msg is not None:
                if msg.type_id == COMMAND:
                    return amf0.decode_all(msg.payload)
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no command from the server in time")
            data = await asyncio.wait_for(self.reader.read(65536), left)
            if not data:
                return None
            self.replies.feed(data)

    async def wait_command(self, *names: str, timeout: float = 5.0) -> list[Any]:
        """Skip replies until one of `names` (e.g. onStatus, _error) arrives."""
        deadline = time.monotonic() + timeout
        while True:
            values = await self.next_command(max(deadline - time.monotonic(), 0.01))
            if values is None:
                raise AssertionError(f"server closed before sending {names}")
            if values and values[0] in names:
                return values

    async def connect_app(self, app: str = "live") -> list[Any]:
        await self.send("connect", 1, {"app": app, "tcUrl": f"rtmp://127.0.0.1/{app}",
                                        "flashVer": "FMLE/3.0 (compatible; librtmp-like)"})
        return await self.wait_command("_result", "_error")

    async def publish(self, key: str) -> list[Any]:
        """createStream + publish on stream 1; returns the onStatus answer."""
        await self.send("releaseStream", 2, None, key)
        await self.send("FCPublish", 3, None, key)
        await self.send("createStream", 4, None)
        await self.send("publish", 5, None, key, "live", stream_id=1)
        return await self.wait_command("onStatus", timeout=10)

    async def goodbye(self, key: str) -> None:
        """What librtmp's RTMP_Close sends on a publishing connection."""
        self.writer.write(self.command_bytes("FCUnpublish", 6, None, key)
                          + self.command_bytes("deleteStream", 7, None, 1.0))
        await self.writer.drain()

    async def read_to_eof(self, timeout: float) -> bool:
        """True once the server has sent EOF (a half or full close), False on timeout."""
        try:
            async with asyncio.timeout(timeout):
                while await self.reader.read(65536):
                    pass
        except TimeoutError:
            return False
        return True

    async def aclose(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


def status_of(values: list[Any]) -> dict[str, Any]:
    """The info object of an onStatus/_result/_error command."""
    info = values[3] if len(values) > 3 else None
    assert isinstance(info, dict), values
    return info
