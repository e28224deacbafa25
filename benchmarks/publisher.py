"""An asyncio RTMP publisher that behaves like OBS on the wire, light enough to run hundreds.

The setup follows the OBS 29 capture: handshake, SetChunkSize 4096 with `connect`,
then releaseStream/FCPublish/createStream, then `publish` on the new stream, and
media only after `NetStream.Publish.Start`. From then on the publisher only
answers pings; a shared `Pacer` writes the pre-chunked clip to its transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any

from rtmp import amf0
from rtmp.chunk import SET_CHUNK_SIZE, USER_CONTROL, ChunkReader, ChunkWriter
from rtmp.errors import ProtocolError
from rtmp.handshake import HANDSHAKE_SIZE, build_client_c0c1

from .chunked import MEDIA_CSID, PUBLISH_CHUNK_SIZE

COMMAND_CSID = 3
CONTROL_CSID = 2
AMF0_COMMAND = 20
AMF3_COMMAND = 17
UC_PING_REQUEST = 6
UC_PING_RESPONSE = 7
FLASH_VERSION = "FMLE/3.0 (compatible; FMSc/1.0)"  # what OBS sends
# A small kernel send buffer keeps "kept up with real time" honest: a default,
# autotuned loopback buffer holds many seconds of video and hides a slow server.
SEND_BUFFER_BYTES = 256 * 1024
READ_SIZE = 65536

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")


class PublishError(Exception):
    """The server refused or broke the setup; the message says how."""


@dataclass(frozen=True, slots=True)
class PublishOutcome:
    ok: bool
    code: str  # onStatus code, or a short reason when there was none
    setup_seconds: float


class RtmpPublisher:
    """One encoder connection. `publish()` sets it up; the pacer does the media."""

    def __init__(self, host: str, port: int, app: str, stream_name: str) -> None:
        self.host = host
        self.port = port
        self.app = app
        self.stream_name = stream_name
        self.stream_id = 0
        self.transport: asyncio.WriteTransport | None = None
        self.closed_by_server = False
        self.status_codes: list[str] = []
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._chunks_out = ChunkWriter()
        self._chunks_in = ChunkReader()
        self._results: dict[int, asyncio.Future[list[Any]]] = {}
        self._status: asyncio.Future[tuple[str, str]] | None = None

    async def publish(self, timeout: float = 10.0) -> PublishOutcome:
        """Connect and publish; never raises for a refusal, it reports it."""
        started = time.monotonic()
        try:
            code = await asyncio.wait_for(self._setup(), timeout)
        except TimeoutError:
            return PublishOutcome(False, "timeout", time.monotonic() - started)
        except (OSError, EOFError, asyncio.IncompleteReadError, ProtocolError,
                PublishError) as exc:
            return PublishOutcome(False, f"{type(exc).__name__}: {exc}",
                                  time.monotonic() - started)
        return PublishOutcome(code == "NetStream.Publish.Start", code,
                              time.monotonic() - started)

    async def _setup(self) -> str:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self._writer = writer
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        writer.write(build_client_c0c1())
        s0s1 = await reader.readexactly(1 + HANDSHAKE_SIZE)
        writer.write(s0s1[1:])  # C2 echoes S1
        await reader.readexactly(HANDSHAKE_SIZE)
        self._reader_task = asyncio.get_running_loop().create_task(self._read(reader))

        tc_url = f"rtmp://{self.host}:{self.port}/{self.app}"
        self._send(CONTROL_CSID, SET_CHUNK_SIZE, 0, _U32.pack(PUBLISH_CHUNK_SIZE))
        self._chunks_out.chunk_size = PUBLISH_CHUNK_SIZE
        connect = {"app": self.app, "type": "nonprivate", "supportsGoAway": True,
                   "flashVer": FLASH_VERSION, "swfUrl": tc_url, "tcUrl": tc_url}
        await self._call(1, "connect", connect)
        self._command(2, "releaseStream", None, self.stream_name)
        self._command(3, "FCPublish", None, self.stream_name)
        created = await self._call(4, "createStream", None)
        self.stream_id = int(created[3]) if len(created) > 3 else 1
        self._status = asyncio.get_running_loop().create_future()
        body = amf0.encode_values("publish", 5.0, None, self.stream_name, "live")
        self._send(MEDIA_CSID, AMF0_COMMAND, self.stream_id, body)  # OBS: same as media
        await writer.drain()
        _level, code = await self._status
        self.transport = writer.transport  # type: ignore[assignment]
        return code

    def _send(self, csid: int, type_id: int, stream_id: int, body: bytes) -> None:
        assert self._writer is not None
        self._writer.write(self._chunks_out.write(csid, type_id, stream_id, 0, body))

    def _command(self, txn: int, name: str, *args: object) -> None:
        self._send(COMMAND_CSID, AMF0_COMMAND, 0, amf0.encode_values(name, float(txn), *args))

    async def _call(self, txn: int, name: str, *args: object) -> list[Any]:
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._results[txn] = future
        self._command(txn, name, *args)
        assert self._writer is not None
        await self._writer.drain()
        return await future

    async def _read(self, reader: asyncio.StreamReader) -> None:
        """Answer pings and resolve setup replies until the server closes."""
        try:
            while True:
                data = await reader.read(READ_SIZE)
                if not data:
                    break
                self._chunks_in.feed(data)
                while (msg := self._chunks_in.next_message()) is not None:
                    self._on_message(msg.type_id, bytes(msg.payload))
        except (OSError, ProtocolError, amf0.AMF0Error):
            pass
        finally:
            self.closed_by_server = True
            self._fail_waiters(EOFError("connection closed by the server"))

    def _on_message(self, type_id: int, payload: bytes) -> None:
        if type_id == USER_CONTROL and len(payload) >= 6:
            if _U16.unpack_from(payload)[0] == UC_PING_REQUEST and self._writer is not None:
                self._send(CONTROL_CSID, USER_CONTROL, 0,
                           _U16.pack(UC_PING_RESPONSE) + payload[2:6])
            return
        if type_id == AMF3_COMMAND:
            payload = payload[1:]
        elif type_id != AMF0_COMMAND:
            return
        values = amf0.decode_all(payload)
        if len(values) < 2 or not isinstance(values[0], str):
            return
        name, txn = values[0], values[1]
        if name in ("_result", "_error") and isinstance(txn, float):
            future = self._results.pop(int(txn), None)
            if future is not None and not future.done():
                if name == "_error":
                    future.set_exception(PublishError(_describe(values)))
                else:
                    future.set_result(values)
        elif name == "onStatus":
            info = next((v for v in values[2:] if isinstance(v, dict)), {})
            code = str(info.get("code", ""))
            self.status_codes.append(code)
            if (code.startswith("NetStream.Publish.") and self._status is not None
                    and not self._status.done()):
                self._status.set_result((str(info.get("level", "")), code))

    def _fail_waiters(self, exc: BaseException) -> None:
        waiters: list[asyncio.Future[Any]] = list(self._results.values())
        if self._status is not None:
            waiters.append(self._status)
        for future in waiters:
            if not future.done():
                future.set_exception(exc)

    async def unpublish(self) -> None:
        """Stop as OBS's "Stop Streaming" does (FCUnpublish, deleteStream), then close."""
        if self._writer is not None and not self._writer.is_closing():
            self._command(6, "FCUnpublish", None, self.stream_name)
            self._command(7, "deleteStream", None, float(self.stream_id))
            with contextlib.suppress(OSError, ConnectionError):
                await self._writer.drain()
        await self.close()

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._writer.wait_closed(), 2.0)
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader_task


def _describe(values: list[Any]) -> str:
    info = next((v for v in values[2:] if isinstance(v, dict)), {})
    return str(info.get("code") or info.get("description") or values)

