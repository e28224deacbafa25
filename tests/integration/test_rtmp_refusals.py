"""Refusals an encoder can live with: it reads why, says goodbye, and may retry.

The peer here is a raw socket that behaves like librtmp: after a refused publish
it reads until the server's EOF, then writes FCUnpublish + deleteStream (its
RTMP_Close). On a socket the server had already closed, those writes met a reset
and killed gst-launch/rtmpdump with SIGPIPE.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from control_api.store import StoreUnavailable
from mediaserver.app import MediaServer
from rtmp.server import REFUSAL_LINGER, RtmpSession
from tests.live import running_server, wait_for
from tests.rtmp_client import RawClient, status_of

pytestmark = pytest.mark.integration


def session_of(server: MediaServer, client: RawClient) -> RtmpSession:
    assert server.rtmp is not None
    local = client.writer.get_extra_info("sockname")
    peer = f"{local[0]}:{local[1]}"
    return next(s for s in server.rtmp.sessions if s.peer == peer)


async def test_wrong_key_lets_a_librtmp_like_client_say_goodbye(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        assert server.rtmp is not None
        client = await RawClient.connect(server.rtmp_address[1])
        assert status_of(await client.connect_app())["code"] == "NetConnection.Connect.Success"
        session = session_of(server, client)
        status = status_of(await client.publish("WRONGKEY"))
        refused_at = time.monotonic()
        assert (status["level"], status["code"]) == ("error", "NetStream.Publish.BadName")
        assert server.rtmp.publish_results.get("bad_key") == 1
        # The server half-closes: the client sees EOF, yet its goodbye still lands.
        assert await client.read_to_eof(REFUSAL_LINGER)
        assert session in server.rtmp.sessions, "closed before the client could say goodbye"
        received = session.conn.bytes_received
        await client.goodbye("WRONGKEY")
        await wait_for(lambda: session.conn.bytes_received > received, timeout=2,
                       what="the server to read FCUnpublish + deleteStream")
        assert await client.read_to_eof(1)  # EOF again, no reset: nothing was refused
        # This client never closes: the server does, within the named bound.
        await wait_for(lambda: session not in server.rtmp.sessions,
                       timeout=REFUSAL_LINGER + 1.5, what="the server to close")
        assert time.monotonic() - refused_at < REFUSAL_LINGER + 1.5
        await client.aclose()


async def test_a_client_that_leaves_after_a_refusal_is_let_go_at_once(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        assert server.rtmp is not None
        client = await RawClient.connect(server.rtmp_address[1])
        await client.connect_app()
        session = session_of(server, client)
        assert status_of(await client.publish("WRONGKEY"))["level"] == "error"
        await client.goodbye("WRONGKEY")  # before our EOF, as ffmpeg does
        assert await client.read_to_eof(REFUSAL_LINGER)
        started = time.monotonic()
        await client.aclose()
        await wait_for(lambda: session not in server.rtmp.sessions, timeout=REFUSAL_LINGER,
                       what="the session to end with the client's close")
        assert time.monotonic() - started < REFUSAL_LINGER / 2


async def test_unknown_app_is_rejected_at_connect(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        assert server.rtmp is not None
        client = await RawClient.connect(server.rtmp_address[1])
        reply = await client.connect_app("nope")
        assert reply[0] == "_error" and reply[1] == 1
        info = status_of(reply)
        assert (info["level"], info["code"]) == ("error", "NetConnection.Connect.Rejected")
        assert "nope" in info["description"]
        assert server.rtmp.publish_results.get("bad_app") == 1
        assert await client.read_to_eof(REFUSAL_LINGER + 1.5)
        await client.aclose()


class UnreachableStore:
    async def channel_for_key(self, key: str) -> Any:
        raise StoreUnavailable("redis: connection refused")


async def test_store_outage_refuses_with_a_code_encoders_retry(tmp_path: Path) -> None:
    async with running_server(tmp_path) as server:
        assert server.rtmp is not None
        key = await server.store.create_channel("cam1")  # type: ignore[union-attr]
        server.rtmp.policy.store = UnreachableStore()  # type: ignore[attr-defined]
        client = await RawClient.connect(server.rtmp_address[1])
        await client.connect_app()
        status = status_of(await client.publish(key))
        # Not BadName: OBS stops retrying on that one; NetStream.Failed it retries.
        assert (status["level"], status["code"]) == ("error", "NetStream.Failed")
        assert server.rtmp.publish_results == {"unavailable": 1}
        await client.aclose()
