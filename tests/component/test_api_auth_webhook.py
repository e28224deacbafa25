"""External publish authorisation against a real aiohttp backend on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from control_api.auth_webhook import AuthDecision, AuthWebhook
from tests.api_fakes import wait_until
from tests.redis_server import free_port

DEADLINE = 5.0


@dataclass
class Backend:
    """Answers by key: allow[key] -> channel, deny -> 403; `hold` stalls every answer."""

    allow: dict[str, str] = field(default_factory=dict)
    status: int | None = None  # forced status, e.g. 500
    body: bytes | None = None  # forced 200 body
    hold: asyncio.Event | None = None
    requests: list[dict[str, str]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        asked = await request.json()
        self.requests.append(asked)
        if self.hold is not None:
            await self.hold.wait()
        if self.status is not None:
            return web.Response(status=self.status)
        if self.body is not None:
            return web.Response(body=self.body, content_type="application/json")
        channel = self.allow.get(asked["stream_key"])
        if channel is None:
            return web.json_response({"error": "no"}, status=403)
        return web.json_response({"channel": channel})


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    state = Backend()
    app = web.Application()
    app.router.add_post("/auth", state.handle)
    async with TestServer(app, host="127.0.0.1") as server:
        state.url = str(server.make_url("/auth"))
        yield state
        if state.hold is not None:
            state.hold.set()


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def hook(backend: Backend) -> AsyncIterator[AuthWebhook]:
    auth = AuthWebhook(backend.url, timeout=2.0, cache_ttl=5.0)
    yield auth
    await auth.close()


async def test_allow(backend: Backend, hook: AuthWebhook) -> None:
    backend.allow["secret-key"] = "demo"
    decision = await hook.authorize("live", "secret-key?obs=1", "203.0.113.7")
    assert decision == AuthDecision(True, "demo", "allowed by auth webhook")
    assert backend.requests == [
        {"app": "live", "stream_key": "secret-key", "client_ip": "203.0.113.7"}
    ]
    assert "secret-key" not in repr(decision) and "secret-key" not in repr(hook)


async def test_deny_on_403(backend: Backend, hook: AuthWebhook) -> None:
    decision = await hook.authorize("live", "wrong", "127.0.0.1")
    assert not decision.allowed and decision.channel is None
    assert "403" in decision.reason


async def test_timeout_denies(backend: Backend) -> None:
    backend.hold = asyncio.Event()
    auth = AuthWebhook(backend.url, timeout=0.2, cache_ttl=5.0)
    try:
        started = time.monotonic()
        decision = await auth.authorize("live", "k", "127.0.0.1")
        assert time.monotonic() - started < DEADLINE
        assert not decision.allowed and "no answer" in decision.reason
    finally:
        await auth.close()


@pytest.mark.parametrize("status", [500, 502, 503, 301])
async def test_server_errors_deny_and_are_not_cached(
    backend: Backend, hook: AuthWebhook, status: int
) -> None:
    backend.status = status
    first = await hook.authorize("live", "k", "127.0.0.1")
    assert not first.allowed and str(status) in first.reason
    backend.status = None
    backend.allow["k"] = "demo"
    assert (await hook.authorize("live", "k", "127.0.0.1")).allowed
    assert len(backend.requests) == 2


@pytest.mark.parametrize(
    "body", [b"", b"not json", b"[]", b"{}", b'{"channel": 5}', b'{"channel": "Bad Name"}']
)
async def test_2xx_without_a_valid_channel_denies(
    backend: Backend, hook: AuthWebhook, body: bytes
) -> None:
    backend.body = body
    decision = await hook.authorize("live", "k", "127.0.0.1")
    assert not decision.allowed and "no valid channel" in decision.reason


async def test_unreachable_denies() -> None:
    auth = AuthWebhook(f"http://127.0.0.1:{free_port()}/auth", timeout=2.0, cache_ttl=5.0)
    try:
        decision = await auth.authorize("live", "k", "127.0.0.1")
        assert not decision.allowed and "unreachable" in decision.reason
    finally:
        await auth.close()


async def test_malformed_key_denied_without_asking(backend: Backend, hook: AuthWebhook) -> None:
    for key in ["", "?only=query", "x" * 10_000]:
        assert not (await hook.authorize("live", key, "127.0.0.1")).allowed
    assert backend.requests == []


async def test_cache_hit_avoids_a_second_request(backend: Backend) -> None:
    clock = Clock()
    auth = AuthWebhook(backend.url, timeout=2.0, cache_ttl=5.0, clock=clock)
    backend.allow["k"] = "demo"
    try:
        assert (await auth.authorize("live", "k", "10.0.0.1")).channel == "demo"
        assert (await auth.authorize("live", "k?x=1", "10.0.0.2")).channel == "demo"
        assert len(backend.requests) == 1
        # Denials are cached too: a storm of bad reconnects costs one request.
        await auth.authorize("live", "bad", "10.0.0.1")
        await auth.authorize("live", "bad", "10.0.0.1")
        assert len(backend.requests) == 2
        # Another app is another question.
        await auth.authorize("other", "k", "10.0.0.1")
        assert len(backend.requests) == 3
        clock.now += 5.1
        assert (await auth.authorize("live", "k", "10.0.0.1")).allowed
        assert len(backend.requests) == 4
    finally:
        await auth.close()


async def test_zero_ttl_disables_the_cache(backend: Backend) -> None:
    auth = AuthWebhook(backend.url, timeout=2.0, cache_ttl=0)
    try:
        await auth.authorize("live", "k", "127.0.0.1")
        await auth.authorize("live", "k", "127.0.0.1")
        assert len(backend.requests) == 2
    finally:
        await auth.close()


async def test_concurrent_identical_requests_coalesce(backend: Backend, hook: AuthWebhook) -> None:
    backend.allow["k"] = "demo"
    backend.hold = asyncio.Event()
    waiters = [asyncio.create_task(hook.authorize("live", "k", "127.0.0.1")) for _ in range(10)]
    other = asyncio.create_task(hook.authorize("live", "k2", "127.0.0.1"))
    await wait_until(lambda: len(backend.requests) == 2)
    backend.hold.set()
    decisions = await asyncio.gather(*waiters)
    assert set(decisions) == {AuthDecision(True, "demo", "allowed by auth webhook")}
    assert not (await other).allowed
    assert len(backend.requests) == 2


async def test_one_caller_giving_up_does_not_cancel_the_others(
    backend: Backend, hook: AuthWebhook
) -> None:
    backend.allow["k"] = "demo"
    backend.hold = asyncio.Event()
    impatient = asyncio.create_task(hook.authorize("live", "k", "127.0.0.1"))
    patient = asyncio.create_task(hook.authorize("live", "k", "127.0.0.1"))
    await wait_until(lambda: len(backend.requests) == 1)
    impatient.cancel()
    backend.hold.set()
    assert (await patient).allowed
    with pytest.raises(asyncio.CancelledError):
        await impatient
