"""The control API through aiohttp's test client, with a SQLite store and a fake live system."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from control_api.app import API_PREFIX, create_root_app
from control_api.bodies import MAX_BODY_BYTES
from control_api.handlers import MAX_BLOCK_SECONDS
from control_api.live import StreamStats
from control_api.store import ChannelStore, open_store
from control_api.urls import PublicUrls
from tests.api_fakes import FakeLive

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
URLS = PublicUrls(rtmp_base="rtmp://media.example:1935/live", http_base="http://media.example:8080")

# Every operation, with a path that exists in shape (the channel need not).
OPERATIONS = [
    ("POST", "/channels"),
    ("GET", "/channels"),
    ("GET", "/channels/demo"),
    ("DELETE", "/channels/demo"),
    ("POST", "/channels/demo/key"),
    ("POST", "/keys/validate"),
    ("GET", "/streams"),
    ("DELETE", "/streams/demo"),
]


def stats(channel: str, **overrides: object) -> StreamStats:
    values: dict[str, object] = {
        "channel": channel,
        "publisher": "127.0.0.1:50000",
        "started_at": 1_700_000_000.0,
        "video_codec": "h264",
        "width": 1280,
        "height": 720,
        "fps": 30.0,
        "bitrate_bps": 2_500_000.0,
        "keyframe_interval": 2.0,
        "audio_codec": "aac",
        "sample_rate": 48_000,
        "audio_channels": 2,
        "warnings": (),
    }
    values.update(overrides)
    return StreamStats(**values)  # type: ignore[arg-type]


@dataclass
class Api:
    client: TestClient
    store: ChannelStore
    live: FakeLive

    async def call(
        self,
        method: str,
        path: str,
        *,
        auth: bool = True,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> tuple[int, object]:
        headers = {**(AUTH if auth else {}), **(headers or {})}
        async with self.client.request(
            method, API_PREFIX + path, headers=headers, **kwargs
        ) as response:
            text = await response.text()
            assert response.headers.get("Cache-Control") == "no-store"
            if response.status == 204:
                assert text == ""
                return response.status, None
            assert response.content_type == "application/json", text
            return response.status, json.loads(text)

    async def create(self, name: str) -> str:
        status, body = await self.call("POST", "/channels", json={"name": name})
        assert status == 201, body
        assert isinstance(body, dict)
        return str(body["stream_key"])


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    store = open_store(None, tmp_path)
    live = FakeLive()
    async with TestClient(TestServer(create_root_app(store, live, TOKEN, URLS))) as client:
        yield Api(client, store, live)
    await store.close()


def error_code(body: object) -> str:
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message"} and error["message"], error
    return str(error["code"])


# --- auth ----------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer wrong",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
        f"Basic {TOKEN}",
        "Bearer",
        "Bearer ",
        TOKEN,
        "Bearer tökén",
    ],
)
async def test_every_operation_needs_the_token(
    api: Api, method: str, path: str, header: str | None
) -> None:
    headers = {} if header is None else {"Authorization": header}
    status, body = await api.call(method, path, auth=False, headers=headers, json={"name": "x"})
    assert status == 401
    assert error_code(body) == "unauthorized"
    assert api.live.kicks == []


async def test_401_carries_a_bearer_challenge(api: Api) -> None:
    async with api.client.get(API_PREFIX + "/channels") as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_scheme_is_case_insensitive(api: Api) -> None:
    lowercase = {"Authorization": f"bearer {TOKEN}"}
    status, _ = await api.call("GET", "/channels", auth=False, headers=lowercase)
    assert status == 200


async def test_openapi_needs_no_token(api: Api) -> None:
    status, body = await api.call("GET", "/openapi.json", auth=False)
    assert status == 200
    assert isinstance(body, dict) and body["openapi"].startswith("3.1")


def test_empty_token_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="token"):
        create_root_app(None, FakeLive(), "", URLS)  # type: ignore[arg-type]


# --- channels ------------------------------------------------------------------------


async def test_create_channel(api: Api) -> None:
    status, body = await api.call("POST", "/channels", json={"name": "demo"})
    assert status == 201
    assert isinstance(body, dict)
    assert set(body) == {"name", "stream_key", "rtmp_url", "playback_url"}
    assert body["name"] == "demo"
    assert body["rtmp_url"] == "rtmp://media.example:1935/live"
    assert body["playback_url"] == "http://media.example:8080/live/demo/index.m3u8"
    key = body["stream_key"]
    assert len(key) >= 22
    assert key not in body["rtmp_url"] and key not in body["playback_url"]
    assert await api.store.channel_for_key(key) == "demo"


async def test_create_ignores_content_type(api: Api) -> None:
    status, _ = await api.call(
        "POST", "/channels", data=b'{"name": "demo"}', headers={"Content-Type": "text/plain"}
    )
    assert status == 201


async def test_duplicate_channel_is_409(api: Api) -> None:
    key = await api.create("demo")
    status, body = await api.call("POST", "/channels", json={"name": "demo"})
    assert status == 409
    assert error_code(body) == "channel_exists"
    assert await api.store.channel_for_key(key) == "demo"


@pytest.mark.parametrize("name", ["", "Demo", "-demo", "a" * 65, "with space", "a/b", "ü", "a\n"])
async def test_bad_channel_name_is_422(api: Api, name: str) -> None:
    status, body = await api.call("POST", "/channels", json={"name": name})
    assert status == 422
    assert error_code(body) == "invalid_name"
    assert await api.store.list_channels() == []


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"", 400, "invalid_json"),
        (b"   ", 400, "invalid_json"),
        (b"{", 400, "invalid_json"),
        (b"name=demo", 400, "invalid_json"),
        (b'{"name": "demo",}', 400, "invalid_json"),
        (b'{"name": "\xff"}', 400, "invalid_json"),
        (b'{"name": NaN}', 400, "invalid_json"),
        (b'{"name": Infinity}', 400, "invalid_json"),
        (b"[" * 10_000 + b"]" * 10_000, 413, "payload_too_large"),
        (b"[" * 5_000 + b"]" * 5_000, 400, "invalid_json"),
        (b"1" * 5_000, 400, "invalid_json"),
        (b"[]", 422, "invalid_body"),
        (b'"demo"', 422, "invalid_body"),
        (b"null", 422, "invalid_body"),
        (b"42", 422, "invalid_body"),
        (b"{}", 422, "invalid_body"),
        (b'{"nam": "demo"}', 422, "invalid_body"),
        (b'{"name": "demo", "extra": 1}', 422, "invalid_body"),
        (b'{"name": 5}', 422, "invalid_body"),
        (b'{"name": null}', 422, "invalid_body"),
        (b'{"name": true}', 422, "invalid_body"),
        (b'{"name": ["demo"]}', 422, "invalid_body"),
        (b'{"name": {"x": 1}}', 422, "invalid_body"),
    ],
)
async def test_malformed_create_bodies(api: Api, raw: bytes, status: int, code: str) -> None:
    got_status, body = await api.call(
        "POST", "/channels", data=raw, headers={"Content-Type": "application/json"}
    )
    assert (got_status, error_code(body)) == (status, code)
    assert await api.store.list_channels() == []


async def test_oversized_body_is_413(api: Api) -> None:
    padding = "x" * (MAX_BODY_BYTES + 1)
    status, body = await api.call("POST", "/channels", json={"name": "demo", "pad": padding})
    assert status == 413
    assert error_code(body) == "payload_too_large"


async def test_oversized_chunked_body_is_413(api: Api) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(64):
            yield b" " * 1024

    status, body = await api.call("POST", "/channels", data=chunks())
    assert status == 413
    assert error_code(body) == "payload_too_large"


async def test_list_channels(api: Api) -> None:
    status, body = await api.call("GET", "/channels")
    assert (status, body) == (200, {"channels": []})
    keys = [await api.create(name) for name in ("beta", "alpha", "gamma")]
    api.live.streams["beta"] = stats("beta")
    await api.store.mark_online("gamma", "other-node", 30)
    status, body = await api.call("GET", "/channels")
    assert status == 200
    assert isinstance(body, dict)
    channels = body["channels"]
    assert [c["name"] for c in channels] == ["alpha", "beta", "gamma"]
    assert [c["live"] for c in channels] == [False, True, True]
    assert set(channels[0]) == {
        "name", "created_at", "key_rotated_at", "live", "rtmp_url", "playback_url"
    }  # fmt: skip
    assert not any(key in json.dumps(body) for key in keys)


async def test_get_channel(api: Api) -> None:
    key = await api.create("demo")
    status, body = await api.call("GET", "/channels/demo")
    assert status == 200
    assert isinstance(body, dict)
    assert body["name"] == "demo" and body["live"] is False
    assert body["playback_url"] == "http://media.example:8080/live/demo/index.m3u8"
    assert key not in json.dumps(body)
    api.live.streams["demo"] = stats("demo")
    _, body = await api.call("GET", "/channels/demo")
    assert isinstance(body, dict) and body["live"] is True


@pytest.mark.parametrize("name", ["nobody", "UPPER", "-x", "a" * 65, "a.b", "caf%C3%A9"])
async def test_get_unknown_channel_is_404(api: Api, name: str) -> None:
    status, body = await api.call("GET", f"/channels/{name}")
    assert status == 404
    assert error_code(body) == "channel_not_found"


async def test_rotate_key(api: Api) -> None:
    old = await api.create("demo")
    api.live.streams["demo"] = stats("demo")
    status, body = await api.call("POST", "/channels/demo/key", data=b"ignored")
    assert status == 200
    assert isinstance(body, dict)
    assert set(body) == {"name", "stream_key", "rtmp_url", "playback_url"}
    new = body["stream_key"]
    assert new != old
    assert api.live.kicks == [("demo", "stream key rotated", 0.0)]
    _, verdict = await api.call("POST", "/keys/validate", json={"stream_key": old})
    assert verdict == {"valid": False, "channel": None}
    _, verdict = await api.call("POST", "/keys/validate", json={"stream_key": new})
    assert verdict == {"valid": True, "channel": "demo"}
    status, body = await api.call("GET", "/channels/demo")
    assert isinstance(body, dict) and body["key_rotated_at"] >= body["created_at"]


@pytest.mark.parametrize("name", ["nobody", "BAD"])
async def test_rotate_unknown_channel_is_404(api: Api, name: str) -> None:
    status, body = await api.call("POST", f"/channels/{name}/key")
    assert status == 404
    assert error_code(body) == "channel_not_found"
    assert api.live.kicks == []


async def test_delete_channel(api: Api) -> None:
    key = await api.create("demo")
    api.live.streams["demo"] = stats("demo")
    status, body = await api.call("DELETE", "/channels/demo")
    assert (status, body) == (204, None)
    assert api.live.kicks == [("demo", "channel deleted", 0.0)]
    assert await api.store.channel_for_key(key) is None
    status, body = await api.call("DELETE", "/channels/demo")
    assert status == 404 and error_code(body) == "channel_not_found"
    status, body = await api.call("GET", "/channels/demo")
    assert status == 404
    assert len(api.live.kicks) == 1


async def test_delete_invalid_name_is_404(api: Api) -> None:
    status, body = await api.call("DELETE", "/channels/NOPE")
    assert status == 404 and error_code(body) == "channel_not_found"


# --- keys ----------------------------------------------------------------------------


async def test_validate_key(api: Api) -> None:
    key = await api.create("demo")
    cases = {
        key: {"valid": True, "channel": "demo"},
        f"{key}?foo=bar": {"valid": True, "channel": "demo"},
        key + "x": {"valid": False, "channel": None},
        "": {"valid": False, "channel": None},
        "?x=1": {"valid": False, "channel": None},
        "k" * 5000: {"valid": False, "channel": None},
    }
    for candidate, expected in cases.items():
        status, body = await api.call("POST", "/keys/validate", json={"stream_key": candidate})
        assert (status, body) == (200, expected)


@pytest.mark.parametrize(
    "payload",
    [{}, {"key": "x"}, {"stream_key": 1}, {"stream_key": None}, {"stream_key": "x", "y": 1}],
)
async def test_validate_key_bad_bodies(api: Api, payload: dict[str, object]) -> None:
    status, body = await api.call("POST", "/keys/validate", json=payload)
    assert status == 422 and error_code(body) == "invalid_body"


async def test_validate_key_not_json(api: Api) -> None:
    status, body = await api.call("POST", "/keys/validate", data=b"stream_key=abc")
    assert status == 400 and error_code(body) == "invalid_json"


# --- streams -------------------------------------------------------------------------


async def test_list_streams(api: Api) -> None:
    status, body = await api.call("GET", "/streams")
    assert (status, body) == (200, {"streams": []})
    api.live.streams["b"] = stats("b", warnings=("keyframe interval 4.0 s > segment target 2.0 s",))
    api.live.streams["a"] = stats(
        "a", video_codec=None, width=None, height=None, fps=float("nan"), keyframe_interval=None
    )
    status, body = await api.call("GET", "/streams")
    assert status == 200
    assert isinstance(body, dict)
    first, second = body["streams"]
    assert first["channel"] == "a" and first["fps"] is None and first["width"] is None
    assert second == {
        "channel": "b",
        "publisher": "127.0.0.1:50000",
        "started_at": 1_700_000_000.0,
        "video_codec": "h264",
        "width": 1280,
        "height": 720,
        "fps": 30.0,
        "bitrate_bps": 2_500_000.0,
        "keyframe_interval": 2.0,
        "audio_codec": "aac",
        "sample_rate": 48_000,
        "audio_channels": 2,
        "warnings": ["keyframe interval 4.0 s > segment target 2.0 s"],
    }


async def test_kick_live_stream(api: Api) -> None:
    api.live.streams["demo"] = stats("demo")
    status, body = await api.call("DELETE", "/streams/demo")
    assert (status, body) == (200, {"channel": "demo", "kicked": True, "block_seconds": 0.0})
    assert api.live.kicks == [("demo", "kicked through the control API", 0.0)]


async def test_kick_with_block(api: Api) -> None:
    api.live.streams["demo"] = stats("demo")
    status, body = await api.call("DELETE", "/streams/demo", params={"block_seconds": "90.5"})
    assert (status, body) == (200, {"channel": "demo", "kicked": True, "block_seconds": 90.5})
    assert api.live.kicks[-1] == ("demo", "kicked through the control API", 90.5)


async def test_kick_not_live_is_404(api: Api) -> None:
    await api.create("demo")
    status, body = await api.call("DELETE", "/streams/demo")
    assert status == 404 and error_code(body) == "stream_not_live"
    status, body = await api.call("DELETE", "/streams/demo", params={"block_seconds": "0"})
    assert status == 404 and error_code(body) == "stream_not_live"


async def test_block_applies_when_not_live(api: Api) -> None:
    await api.create("demo")
    status, body = await api.call("DELETE", "/streams/demo", params={"block_seconds": "60"})
    assert (status, body) == (200, {"channel": "demo", "kicked": False, "block_seconds": 60.0})
    assert api.live.kicks == [("demo", "kicked through the control API", 60.0)]


@pytest.mark.parametrize("name", ["nobody", "BAD"])
async def test_block_of_unknown_channel_is_404(api: Api, name: str) -> None:
    status, body = await api.call("DELETE", f"/streams/{name}", params={"block_seconds": "60"})
    assert status == 404 and error_code(body) == "channel_not_found"
    assert api.live.kicks == []


@pytest.mark.parametrize(
    "query",
    [
        "block_seconds=-1",
        "block_seconds=abc",
        "block_seconds=",
        "block_seconds=nan",
        "block_seconds=inf",
        "block_seconds=-inf",
        f"block_seconds={MAX_BLOCK_SECONDS + 1}",
        "block_seconds=1e400",
        "block_seconds=1&block_seconds=2",
    ],
)
async def test_bad_block_seconds_is_422(api: Api, query: str) -> None:
    api.live.streams["demo"] = stats("demo")
    status, body = await api.call("DELETE", f"/streams/demo?{query}")
    assert status == 422 and error_code(body) == "invalid_query"
    assert api.live.kicks == []


async def test_max_block_seconds_is_accepted(api: Api) -> None:
    await api.create("demo")
    status, body = await api.call(
        "DELETE", "/streams/demo", params={"block_seconds": str(MAX_BLOCK_SECONDS)}
    )
    assert status == 200
    assert isinstance(body, dict) and body["block_seconds"] == MAX_BLOCK_SECONDS


# --- routing errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/channels", {"GET", "HEAD", "POST"}),
        ("PATCH", "/channels/demo", {"GET", "HEAD", "DELETE"}),
        ("GET", "/channels/demo/key", {"POST"}),
        ("GET", "/keys/validate", {"POST"}),
        ("POST", "/streams", {"GET", "HEAD"}),
        ("POST", "/streams/demo", {"DELETE"}),
        ("DELETE", "/openapi.json", {"GET", "HEAD"}),
    ],
)
async def test_wrong_method_is_405(api: Api, method: str, path: str, allowed: set[str]) -> None:
    async with api.client.request(method, API_PREFIX + path, headers=AUTH) as response:
        assert response.status == 405
        assert error_code(await response.json()) == "method_not_allowed"
        assert set(response.headers["Allow"].split(",")) == allowed


@pytest.mark.parametrize("path", ["/nope", "/channels/demo/extra", "/keys", "/streams/a/b", "/"])
async def test_unknown_path_is_404(api: Api, path: str) -> None:
    status, body = await api.call("GET", path)
    assert status == 404 and error_code(body) == "not_found"


async def test_keys_never_reach_the_logs(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    key = await api.create("demo")
    await api.call("POST", "/keys/validate", json={"stream_key": key})
    await api.call("POST", "/keys/validate", json={"stream_key": key, "bad": 1})
    rotated = await api.call("POST", "/channels/demo/key")
    await api.call("GET", "/channels")
    await api.call("DELETE", "/channels/demo")
    assert isinstance(rotated[1], dict)
    assert key not in caplog.text and rotated[1]["stream_key"] not in caplog.text


def test_control_api_imports_stay_inward() -> None:
    import ast

    import control_api

    package = Path(control_api.__file__).parent
    forbidden = {"mediaserver", "rtmp", "hls"}
    for module in package.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.module == "hls.names":
                    continue  # the channel-name rule: one definition, no HLS machinery
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            assert not roots & forbidden, f"{module.name} imports {roots & forbidden}"
