"""RtmpServer and RtmpSession with a recording policy: who ends a publish, who is at
fault for an error, and what a finished session leaves behind."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import weakref
from collections.abc import AsyncIterator
from typing import Any

import pytest

from rtmp import server as rtmp_server
from rtmp.connection import ServerConnection
from rtmp.errors import LocalProtocolError
from rtmp.events import PublishRequested
from rtmp.server import PublishAccepted, RtmpServer, RtmpSession
from tests.live import wait_for
from tests.rtmp_client import RawClient, status_of

pytestmark = pytest.mark.integration


class EndRecorder:
    def __init__(self) -> None:
        self.ends: list[tuple[str, bool]] = []

    def on_metadata(self, values: dict[str, Any]) -> None:
        pass

    def on_audio(self, timestamp: int, payload: bytes | bytearray) -> None:
        pass

    def on_video(self, timestamp: int, payload: bytes | bytearray) -> None:
        pass

    def on_end(self, reason: str, *, unpublished: bool = False) -> None:
        self.ends.append((reason, unpublished))


class AcceptAll:
    def __init__(self) -> None:
        self.sinks: list[EndRecorder] = []

    def app_exists(self, app: str) -> bool:
        return True

    async def authorize(self, session: RtmpSession, request: PublishRequested
                        ) -> PublishAccepted:
        sink = EndRecorder()
        self.sinks.append(sink)
        return PublishAccepted(sink, request.stream_name)


@contextlib.asynccontextmanager
async def serving(**options: Any) -> AsyncIterator[tuple[RtmpServer, AcceptAll, int]]:
    policy = AcceptAll()
    server = RtmpServer(policy, read_interval=0, **options)
    _host, port = await server.start("127.0.0.1", 0)
    try:
        yield server, policy, port
    finally:
        await server.close()


@pytest.mark.parametrize("goodbye", ["FCUnpublish", "deleteStream", "closeStream"])
async def test_an_encoder_unpublishing_is_told_apart_from_a_drop(goodbye: str) -> None:
    async with serving() as (_server, policy, port):
        client = await RawClient.connect(port)
        await client.connect_app()
        assert status_of(await client.publish("a"))["code"] == "NetStream.Publish.Start"
        if goodbye == "FCUnpublish":
            await client.send("FCUnpublish", 6, None, "a")
        elif goodbye == "deleteStream":
            await client.send("deleteStream", 6, None, 1.0)
        else:
            await client.send("closeStream", 0, None, stream_id=1)
        await wait_for(lambda: policy.sinks[0].ends, timeout=5, what="on_end")
        assert policy.sinks[0].ends == [(f"unpublished ({goodbye})", True)]
        await client.aclose()

        dropped = await RawClient.connect(port)
        await dropped.connect_app()
        await dropped.publish("b")
        await dropped.aclose()
        await wait_for(lambda: policy.sinks[1].ends, timeout=5, what="on_end after a drop")
        assert policy.sinks[1].ends[0][1] is False


async def test_our_own_bug_is_counted_and_logged_as_ours(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(self: ServerConnection) -> None:
        raise LocalProtocolError("cannot frobnicate in state open")

    async with serving() as (server, _policy, port):
        client = await RawClient.connect(port)
        monkeypatch.setattr(ServerConnection, "next_event", broken)
        await client.send("connect", 1, {"app": "live"})
        assert await client.read_to_eof(5)
        assert server.stats.internal_errors == 1
        assert server.stats.protocol_errors == 0
        record = next(r for r in caplog.records if "internal error" in r.getMessage())
        assert record.levelno == logging.ERROR and record.exc_info is not None
        await client.aclose()


async def test_a_finished_session_is_not_kept_alive_by_the_sweeper(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rtmp_server, "SWEEP_INTERVAL", 0.02)
    async with serving(handshake_timeout=0.1) as (server, _policy, port):
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await wait_for(lambda: server.sessions, timeout=5, what="the session")
        ref = weakref.ref(next(iter(server.sessions)))
        # The sweeper itself ends it (handshake timeout), so it has walked over it.
        await wait_for(lambda: not server.sessions, timeout=5, what="the timeout")
        assert server.stats.handshake_timeouts == 1
        assert server._sweeper is not None and not server._sweeper.done()

        def collected() -> bool:
            gc.collect()
            return ref() is None

        await wait_for(collected, timeout=2, what="the closed session to be collected")
        writer.close()


class StuckTransport:
    """A transport whose peer never reads: close() never completes, abort() does."""

    def __init__(self) -> None:
        self.closes = 0
        self.aborts = 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 9) if name == "peername" else default

    def write(self, data: bytes) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 512 * 1024  # unsent, and it stays so

    def is_closing(self) -> bool:
        return self.closes > 0 or self.aborts > 0

    def close(self) -> None:
        self.closes += 1

    def abort(self) -> None:
        self.aborts += 1


async def test_a_timed_out_peer_that_never_reads_is_aborted_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="rtmp")
    monkeypatch.setattr(rtmp_server, "SWEEP_INTERVAL", 0.01)
    async with serving(handshake_timeout=0.05) as (server, _policy, _port):
        transport = StuckTransport()
        session = RtmpSession(server)
        session.connection_made(transport)  # type: ignore[arg-type]
        await wait_for(lambda: server.stats.handshake_timeouts, timeout=5, what="the timeout")
        # Twenty more sweeps: the session is still registered (its transport never
        # reports the loss), yet it is neither closed again nor logged again.
        loop = asyncio.get_running_loop()
        until = loop.time() + 20 * rtmp_server.SWEEP_INTERVAL
        await wait_for(lambda: loop.time() > until, timeout=5, what="more sweeps")
        assert transport.aborts == 1 and transport.closes == 0
        assert server.stats.handshake_timeouts == 1
        assert sum("timeout" in r.getMessage() for r in caplog.records) == 1
        session.connection_lost(None)
