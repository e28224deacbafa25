"""Outgoing webhooks against a real aiohttp receiver on 127.0.0.1."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from control_api.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    WebhookSender,
    sign,
    verify_signature,
)
from tests.api_fakes import wait_until
from tests.redis_server import free_port

SECRET = "webhook-secret"
FAST_RETRY = 0.01


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]


@dataclass
class Receiver:
    """Answers `statuses` in turn (then 200), recording every request."""

    statuses: list[int] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(Received(await request.read(), dict(request.headers)))
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(status=status)

    @property
    def events(self) -> list[dict[str, object]]:
        return [json.loads(r.body) for r in self.requests]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    recv = Receiver()
    app = web.Application()
    app.router.add_post("/hook", recv.handle)
    async with TestServer(app, host="127.0.0.1") as server:
        recv.url = str(server.make_url("/hook"))
        yield recv


@pytest.fixture
async def sender(receiver: Receiver) -> AsyncIterator[WebhookSender]:
    hooks = WebhookSender(receiver.url, SECRET, retry_base_delay=FAST_RETRY)
    await hooks.start()
    yield hooks
    await hooks.close(drain_timeout=0)


async def test_events_arrive_signed(receiver: Receiver, sender: WebhookSender) -> None:
    assert sender.emit("stream.started", {"channel": "demo", "reason": "publish"})
    assert sender.emit("stream.ended", {"channel": "demo", "reason": "publisher left"})
    await wait_until(lambda: len(receiver.requests) == 2)
    for received in receiver.requests:
        assert verify_signature(SECRET, received.body, received.headers[SIGNATURE_HEADER])
        assert received.headers[SIGNATURE_HEADER] == sign(SECRET, received.body)
        assert received.headers[SIGNATURE_HEADER].startswith("sha256=")
        assert not verify_signature(
            "other-secret", received.body, received.headers[SIGNATURE_HEADER]
        )
        assert received.headers["Content-Type"] == "application/json"
    started, ended = receiver.events
    assert started["event"] == "stream.started" and ended["event"] == "stream.ended"
    assert started["channel"] == "demo" and ended["reason"] == "publisher left"
    assert abs(float(started["time"]) - time.time()) < 60  # type: ignore[arg-type]
    assert receiver.requests[0].headers[EVENT_HEADER] == "stream.started"
    assert receiver.requests[0].headers[DELIVERY_HEADER] == started["id"]
    await wait_until(lambda: sender.stats.delivered == 2)
    assert sender.stats.failed == sender.stats.dropped == 0


async def test_failed_attempts_are_retried(receiver: Receiver, sender: WebhookSender) -> None:
    receiver.statuses = [500, 503]
    sender.emit("stream.started", {"channel": "demo"})
    await wait_until(lambda: sender.stats.delivered == 1)
    assert len(receiver.requests) == 3
    bodies = {r.body for r in receiver.requests}
    assert len(bodies) == 1, "a retry resends the same signed body"
    assert all(
        verify_signature(SECRET, r.body, r.headers[SIGNATURE_HEADER]) for r in receiver.requests
    )


async def test_gives_up_after_max_attempts(receiver: Receiver) -> None:
    receiver.statuses = [500] * 10
    hooks = WebhookSender(receiver.url, SECRET, max_attempts=3, retry_base_delay=FAST_RETRY)
    await hooks.start()
    try:
        hooks.emit("stream.started", {"channel": "demo"})
        await wait_until(lambda: hooks.stats.failed == 1)
        assert len(receiver.requests) == 3 and hooks.stats.delivered == 0
    finally:
        await hooks.close(drain_timeout=0)


async def test_client_errors_are_not_retried(receiver: Receiver, sender: WebhookSender) -> None:
    receiver.statuses = [400]
    sender.emit("stream.started", {"channel": "demo"})
    sender.emit("stream.ended", {"channel": "demo"})
    await wait_until(lambda: sender.stats.delivered == 1)
    assert sender.stats.failed == 1
    assert [e["event"] for e in receiver.events] == ["stream.started", "stream.ended"]


async def test_unreachable_receiver_fails_in_bounded_time() -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"
    hooks = WebhookSender(url, SECRET, max_attempts=3, retry_base_delay=FAST_RETRY)
    await hooks.start()
    try:
        hooks.emit("stream.started", {"channel": "demo"})
        await wait_until(lambda: hooks.stats.failed == 1)
    finally:
        await hooks.close(drain_timeout=0)


async def test_full_queue_drops_and_counts(receiver: Receiver) -> None:
    hooks = WebhookSender(receiver.url, SECRET, queue_size=2)
    results = [hooks.emit("stream.started", {"channel": f"c{i}"}) for i in range(5)]
    assert results == [True, True, False, False, False]
    assert hooks.stats.dropped == 3 and hooks.stats.pending == 2
    await hooks.start()
    await wait_until(lambda: hooks.stats.delivered == 2)
    assert [e["channel"] for e in receiver.events] == ["c0", "c1"]
    await hooks.close()


async def test_close_drains_then_refuses(receiver: Receiver) -> None:
    hooks = WebhookSender(receiver.url, SECRET)
    await hooks.start()
    for i in range(5):
        hooks.emit("stream.ended", {"channel": f"c{i}", "reason": "shutdown"})
    await hooks.close()
    assert hooks.stats.delivered == 5 and len(receiver.requests) == 5
    assert hooks.emit("stream.started", {"channel": "late"}) is False
    assert hooks.stats.dropped == 1


async def test_unserialisable_payload_is_dropped_not_raised(sender: WebhookSender) -> None:
    assert sender.emit("stream.started", {"channel": "demo", "fps": float("nan")}) is False
    assert sender.emit("stream.started", {"channel": "demo", "bad": {(1, 2): "x"}}) is False
    assert sender.stats.dropped == 2


def test_secret_is_required_and_hidden() -> None:
    with pytest.raises(ValueError, match="secret"):
        WebhookSender("http://127.0.0.1:1/hook", "")
    hooks = WebhookSender("http://127.0.0.1:1/hook", SECRET)
    assert SECRET not in repr(hooks)


def test_signature_helpers() -> None:
    body = b'{"event":"x"}'
    assert verify_signature(SECRET, body, sign(SECRET, body))
    assert not verify_signature(SECRET, body + b" ", sign(SECRET, body))
    assert not verify_signature(SECRET, body, None)
    assert not verify_signature(SECRET, body, "sha256=zz")
    assert not verify_signature(SECRET, body, "sha256=ünicode")
