"""The API over the Redis store: a Redis outage is a 503, and recovery needs no restart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from control_api.app import API_PREFIX, create_root_app
from control_api.live import StreamStats
from control_api.store import open_store
from control_api.urls import PublicUrls
from tests.redis_server import RedisServer

pytestmark = pytest.mark.integration

TOKEN = "outage-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
URLS = PublicUrls("rtmp://127.0.0.1:1935/live", "http://127.0.0.1:8080")


@dataclass
class FakeLive:
    live: set[str] = field(default_factory=set)

    def live_here(self) -> set[str]:
        return set(self.live)

    async def live_streams(self) -> list[StreamStats]:
        return []

    async def is_live(self, channel: str) -> bool:
        return channel in self.live

    async def kick(self, channel: str, reason: str, block_seconds: float = 0.0) -> bool:
        if channel in self.live:
            self.live.discard(channel)
            return True
        return False


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[tuple[TestClient, FakeLive]]:
    store = open_store(redis_server.url, Path("/nonexistent"))
    live = FakeLive()
    async with TestClient(TestServer(create_root_app(store, live, TOKEN, URLS))) as client:
        yield client, live
    await store.close()


async def call(
    client: TestClient, method: str, path: str, **kwargs: Any
) -> tuple[int, dict[str, Any]]:
    async with client.request(method, API_PREFIX + path, headers=AUTH, **kwargs) as response:
        body = await response.json() if response.status != 204 else {}
        return response.status, body


async def test_store_outage_is_503_then_recovers(
    redis_server: RedisServer, client: tuple[TestClient, FakeLive]
) -> None:
    api, live = client
    status, created = await call(api, "POST", "/channels", json={"name": "demo"})
    assert status == 201

    redis_server.stop()
    for method, path, kwargs in [
        ("POST", "/channels", {"json": {"name": "other"}}),
        ("GET", "/channels", {}),
        ("GET", "/channels/demo", {}),
        ("POST", "/channels/demo/key", {}),
        ("DELETE", "/channels/demo", {}),
        ("POST", "/keys/validate", {"json": {"stream_key": created["stream_key"]}}),
        ("DELETE", "/streams/demo", {"params": {"block_seconds": "10"}}),
    ]:
        status, body = await call(api, method, path, **kwargs)
        assert status == 503, (method, path, body)
        assert body["error"]["code"] == "store_unavailable"
        assert "127.0.0.1" not in body["error"]["message"]

    # What needs no store keeps working through the outage.
    live.live.add("demo")
    assert (await call(api, "GET", "/streams"))[0] == 200
    assert (await call(api, "DELETE", "/streams/demo"))[0] == 200
    assert (await call(api, "GET", "/openapi.json"))[0] == 200
    # Bad input is still a 4xx, not a 503.
    assert (await call(api, "POST", "/channels", data=b"{"))[0] == 400

    redis_server.start()  # same port, empty (the test server keeps no data)
    status, _ = await call(api, "POST", "/channels", json={"name": "demo"})
    assert status == 201
    status, body = await call(api, "GET", "/channels")
    assert status == 200 and [c["name"] for c in body["channels"]] == ["demo"]
