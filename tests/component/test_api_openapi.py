"""openapi.json matches the API: every route documented, every documented status reachable,
every response valid against the schema documented for its status."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from jsonschema import Draft202012Validator

from control_api.app import API_PREFIX, create_api_app, create_root_app
from control_api.bodies import MAX_BODY_BYTES
from control_api.live import StreamStats
from control_api.openapi import build_openapi
from control_api.store import StoreUnavailable, open_store
from control_api.urls import PublicUrls
from tests.api_fakes import FakeLive

TOKEN = "openapi-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
URLS = PublicUrls("rtmp://127.0.0.1:1935/live", "http://127.0.0.1:8080")
DOC = build_openapi()
METHODS = {"get", "post", "put", "patch", "delete"}

LIVE_STATS = StreamStats(
    channel="live1",
    publisher="127.0.0.1:40000",
    started_at=1_700_000_000.0,
    video_codec="h264",
    width=1920,
    height=1080,
    fps=float("inf"),
    bitrate_bps=6e6,
    keyframe_interval=None,
    audio_codec=None,
    sample_rate=None,
    audio_channels=None,
    warnings=("no audio",),
)


class DownStore:
    """A store whose database is unreachable: every call fails like a dead Redis."""

    def __getattr__(self, name: str) -> Any:
        async def unavailable(*args: object, **kwargs: object) -> None:
            raise StoreUnavailable("down for the test")

        return unavailable


def documented_operations() -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in DOC["paths"].items()
        for method in item
        if method in METHODS
    }


def documented_statuses() -> set[tuple[str, str, int]]:
    return {
        (method.upper(), path, int(status))
        for path, item in DOC["paths"].items()
        for method, operation in item.items()
        if method in METHODS
        for status in operation["responses"]
    }


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = DOC
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def validate_response(method: str, template: str, status: int, headers: Any, body: bytes) -> None:
    """Fail unless the documentation promises exactly this response."""
    operation = DOC["paths"][template][method.lower()]
    assert str(status) in operation["responses"], f"{method} {template} -> {status} undocumented"
    response = _resolve(operation["responses"][str(status)])
    for header in response.get("headers", {}):
        assert header in headers, f"{method} {template} -> {status} lacks {header}"
    content = response.get("content")
    if content is None:
        assert body == b""
        return
    assert headers["Content-Type"].startswith("application/json")
    schema = {"allOf": [content["application/json"]["schema"]], "components": DOC["components"]}
    Draft202012Validator(schema).validate(json.loads(body))


def test_document_basics() -> None:
    assert DOC["openapi"] == "3.1.0"
    assert DOC["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
    }
    for name, schema in DOC["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema)
        if schema.get("type") == "object":
            assert schema.get("additionalProperties") is False, name
    json.dumps(DOC, allow_nan=False)


def test_every_route_is_documented_and_vice_versa() -> None:
    app = create_api_app(DownStore(), FakeLive(), TOKEN, URLS)  # type: ignore[arg-type]
    routes = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    assert routes == documented_operations()


def test_operations_need_auth_except_the_document() -> None:
    for path, item in DOC["paths"].items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            public = operation.get("security") == []
            assert public == (path == "/openapi.json")
            if not public:
                assert "401" in operation["responses"]


@dataclass
class Recorder:
    client: TestClient
    seen: set[tuple[str, str, int]] = field(default_factory=set)

    async def check(self, method: str, template: str, path: str, status: int, **kwargs: Any) -> Any:
        headers = kwargs.pop("headers", AUTH)
        async with self.client.request(
            method, API_PREFIX + path, headers=headers, **kwargs
        ) as response:
            body = await response.read()
            assert response.status == status, body
            validate_response(method, template, response.status, response.headers, body)
        self.seen.add((method, template, status))
        return json.loads(body) if body else None


@pytest.fixture
async def clients(tmp_path: Path) -> AsyncIterator[tuple[Recorder, Recorder, FakeLive]]:
    store = open_store(None, tmp_path)
    live = FakeLive()
    up = TestClient(TestServer(create_root_app(store, live, TOKEN, URLS)))
    down_app = create_root_app(DownStore(), FakeLive(), TOKEN, URLS)  # type: ignore[arg-type]
    down = TestClient(TestServer(down_app))
    async with up, down:
        yield Recorder(up), Recorder(down), live
    await store.close()


async def test_every_documented_status_is_reachable_and_valid(
    clients: tuple[Recorder, Recorder, FakeLive],
) -> None:
    up, down, live = clients
    bad_auth = {"Authorization": "Bearer nope"}
    too_big = {"data": b" " * (MAX_BODY_BYTES + 1)}

    await up.check("GET", "/openapi.json", "/openapi.json", 200, headers={})
    await up.check("GET", "/openapi.json", "/openapi.json?v=2", 422, headers={})

    await up.check("POST", "/channels", "/channels", 201, json={"name": "demo"})
    await up.check("POST", "/channels", "/channels", 400, data=b"{")
    await up.check("POST", "/channels", "/channels", 401, headers=bad_auth)
    await up.check("POST", "/channels", "/channels", 409, json={"name": "demo"})
    await up.check("POST", "/channels", "/channels", 413, **too_big)
    await up.check("POST", "/channels", "/channels", 422, json={"name": "No"})
    await up.check("POST", "/channels", "/channels", 422, json=["demo"])
    await down.check("POST", "/channels", "/channels", 503, json={"name": "demo"})

    await up.check("POST", "/channels", "/channels", 201, json={"name": "live1"})
    live.streams["live1"] = LIVE_STATS
    await up.check("GET", "/channels", "/channels", 200)
    await up.check("GET", "/channels", "/channels", 401, headers={})
    await up.check("GET", "/channels", "/channels?limit=5", 422)
    await down.check("GET", "/channels", "/channels", 503)

    one = "/channels/{name}"
    await up.check("GET", one, "/channels/demo", 200)
    await up.check("GET", one, "/channels/live1", 200)
    await up.check("GET", one, "/channels/demo", 401, headers=bad_auth)
    await up.check("GET", one, "/channels/nobody", 404)
    await up.check("GET", one, "/channels/demo?x=1", 422)
    await down.check("GET", one, "/channels/demo", 503)

    key = "/channels/{name}/key"
    await up.check("POST", key, "/channels/demo/key", 200)
    await up.check("POST", key, "/channels/demo/key", 401, headers={})
    await up.check("POST", key, "/channels/nobody/key", 404)
    await up.check("POST", key, "/channels/demo/key?dry_run=1", 422)
    await down.check("POST", key, "/channels/demo/key", 503)

    validate = "/keys/validate"
    await up.check("POST", validate, validate, 200, json={"stream_key": "x?y"})
    await up.check("POST", validate, validate, 400, data=b"\xff")
    await up.check("POST", validate, validate, 401, headers={})
    await up.check("POST", validate, validate, 413, **too_big)
    await up.check("POST", validate, validate, 422, json={"stream_key": 1})
    await down.check("POST", validate, validate, 503, json={"stream_key": "x"})

    await up.check("GET", "/streams", "/streams", 200)
    await up.check("GET", "/streams", "/streams", 401, headers={})
    await up.check("GET", "/streams", "/streams?channel=live1", 422)

    kick = "/streams/{channel}"
    typo = await up.check("DELETE", kick, "/streams/live1?block_second=60", 422)
    assert "unknown query parameter 'block_second'" in typo["error"]["message"]
    assert "block_seconds" in typo["error"]["message"]  # what it should have been
    assert "live1" in live.streams  # refused before anything happened: still live
    await up.check("DELETE", kick, "/streams/live1", 200)
    await up.check("DELETE", kick, "/streams/demo?block_seconds=30", 200)
    await up.check("DELETE", kick, "/streams/demo", 401, headers={})
    await up.check("DELETE", kick, "/streams/demo", 404)
    await up.check("DELETE", kick, "/streams/nobody?block_seconds=5", 404)
    await up.check("DELETE", kick, "/streams/demo?block_seconds=-5", 422)
    await down.check("DELETE", kick, "/streams/demo?block_seconds=5", 503)

    await up.check("DELETE", one, "/channels/demo?force=1", 422)
    await up.check("DELETE", one, "/channels/demo", 204)
    await up.check("DELETE", one, "/channels/demo", 401, headers={})
    await up.check("DELETE", one, "/channels/demo", 404)
    await down.check("DELETE", one, "/channels/demo", 503)

    assert up.seen | down.seen == documented_statuses()


async def test_store_outage_answer(clients: tuple[Recorder, Recorder, FakeLive]) -> None:
    _, down, _ = clients
    body = await down.check("GET", "/channels", "/channels", 503)
    assert body["error"]["code"] == "store_unavailable"
    assert "down for the test" not in body["error"]["message"]


async def test_openapi_served_matches_build() -> None:
    app = create_root_app(DownStore(), FakeLive(), TOKEN, URLS)  # type: ignore[arg-type]
    async with (
        TestClient(TestServer(app)) as client,
        client.get(API_PREFIX + "/openapi.json") as response,
    ):
        assert response.status == 200
        assert await response.json() == DOC
