"""Outgoing event webhooks: signed, retried, and never in ingest's way.

`emit()` only serialises and enqueues; one background task delivers in order. The queue
is bounded, so a dead receiver costs at most that many events (dropped and counted)
instead of memory or latency on the publish path.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

log = logging.getLogger(__name__)

STREAM_STARTED = "stream.started"
STREAM_ENDED = "stream.ended"

SIGNATURE_HEADER = "X-Mediaserver-Signature"
EVENT_HEADER = "X-Mediaserver-Event"
DELIVERY_HEADER = "X-Mediaserver-Delivery"

# Events waiting for delivery. Streams start and end a few times a minute at most, so
# a thousand is minutes of backlog; beyond that the receiver is down, not slow.
QUEUE_SIZE = 1_000
# 1 try + 3 retries with delays 0.5, 1, 2 s: rides out a receiver restart, gives up
# before the backlog grows.
MAX_ATTEMPTS = 4
RETRY_BASE_DELAY = 0.5
RETRY_MAX_DELAY = 8.0
# Per attempt; a receiver should acknowledge at once and work asynchronously.
REQUEST_TIMEOUT = 5.0
# How long close() keeps delivering what is queued (a shutdown's stream.ended events).
CLOSE_DRAIN_TIMEOUT = 5.0


def sign(secret: str, body: bytes) -> str:
    """The signature header value: `sha256=` + HMAC-SHA256 hex of the exact body bytes."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(secret: str, body: bytes, header: str | None) -> bool:
    """What a receiver does: recompute the signature and compare in constant time."""
    if header is None:
        return False
    return hmac.compare_digest(sign(secret, body).encode(), header.encode("utf-8", "replace"))


@dataclass(frozen=True, slots=True)
class WebhookStats:
    delivered: int
    failed: int  # gave up after the last attempt or on a 4xx
    dropped: int  # never queued: queue full, sender closed, or not serialisable
    pending: int


@dataclass(frozen=True, slots=True)
class _Delivery:
    event: str
    delivery_id: str
    body: bytes
    channel: str | None


class WebhookSender:
    """Posts `{"event", "time", **payload, "id"}` JSON to one URL.

    For STREAM_STARTED / STREAM_ENDED the payload is `{"channel", "reason"}`; `time`
    (epoch seconds) defaults to the moment of `emit()`, and `id` is the same on every
    retry of one event so receivers can discard duplicates.
    """

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        queue_size: int = QUEUE_SIZE,
        max_attempts: int = MAX_ATTEMPTS,
        retry_base_delay: float = RETRY_BASE_DELAY,
        retry_max_delay: float = RETRY_MAX_DELAY,
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        if not secret:
            raise ValueError("a webhook secret is required so receivers can verify events")
        if max_attempts < 1 or queue_size < 1:
            raise ValueError("max_attempts and queue_size must be at least 1")
        self._url = url
        self._secret = secret
        self._max_attempts = max_attempts
        self._retry_base_delay = retry_base_delay
        self._retry_max_delay = retry_max_delay
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._queue: asyncio.Queue[_Delivery] = asyncio.Queue(maxsize=queue_size)
        self._session: aiohttp.ClientSession | None = None
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        self._delivered = 0
        self._failed = 0
        self._dropped = 0

    def __repr__(self) -> str:
        return f"WebhookSender({self._url!r})"

    @property
    def stats(self) -> WebhookStats:
        return WebhookStats(self._delivered, self._failed, self._dropped, self._queue.qsize())

    async def start(self) -> None:
        if self._worker is not None:
            return
        self._session = aiohttp.ClientSession()
        self._worker = asyncio.create_task(self._run(), name="webhook-sender")

    async def close(self, drain_timeout: float = CLOSE_DRAIN_TIMEOUT) -> None:
        """Stop accepting events, deliver what is queued for up to `drain_timeout`, stop."""
        self._closed = True
        if self._worker is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), drain_timeout)
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        self._dropped += self._queue.qsize()
        while not self._queue.empty():
            self._queue.get_nowait()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def emit(self, event: str, payload: Mapping[str, object]) -> bool:
        """Queue an event without waiting; False (and counted) if it had to be dropped."""
        raw_channel = payload.get("channel")
        channel = raw_channel if isinstance(raw_channel, str) else None
        if self._closed:
            self._dropped += 1
            return False
        delivery_id = uuid.uuid4().hex
        document = {"event": event, "time": time.time(), **payload, "id": delivery_id}
        try:
            body = json.dumps(document, allow_nan=False, default=str).encode("utf-8")
        except (TypeError, ValueError):
            log.warning("webhook %s for channel %s dropped: payload is not JSON", event, channel)
            self._dropped += 1
            return False
        delivery = _Delivery(event, delivery_id, body, channel)
        try:
            self._queue.put_nowait(delivery)
        except asyncio.QueueFull:
            self._dropped += 1
            log.warning("webhook queue full; %s for channel %s dropped", event, channel)
            return False
        return True

    async def _run(self) -> None:
        while True:
            delivery = await self._queue.get()
            try:
                await self._deliver(delivery)
            except Exception:
                self._failed += 1
                log.exception("webhook %s delivery crashed", delivery.event)
            finally:
                self._queue.task_done()

    async def _deliver(self, delivery: _Delivery) -> None:
        problem = ""
        for attempt in range(1, self._max_attempts + 1):
            if attempt > 1:
                delay = self._retry_base_delay * 2 ** (attempt - 2)
                await asyncio.sleep(min(delay, self._retry_max_delay))
            problem, retryable = await self._attempt(delivery)
            if not problem:
                self._delivered += 1
                return
            if not retryable:
                break
        self._failed += 1
        log.warning(
            "webhook %s for channel %s not delivered after %d attempt(s): %s",
            delivery.event,
            delivery.channel,
            attempt,
            problem,
        )

    async def _attempt(self, delivery: _Delivery) -> tuple[str, bool]:
        """("", _) on success, else (what went wrong, whether a retry may help)."""
        assert self._session is not None
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self._secret, delivery.body),
            EVENT_HEADER: delivery.event,
            DELIVERY_HEADER: delivery.delivery_id,
        }
        try:
            async with self._session.post(
                self._url,
                data=delivery.body,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                if 200 <= response.status < 300:
                    return "", False
                # 4xx says the receiver rejects this event: resending it cannot help,
                # except for "too many requests" and "request timeout".
                retryable = response.status >= 500 or response.status in (408, 429)
                return f"HTTP {response.status}", retryable
        except TimeoutError:
            return "timed out", True
        except aiohttp.ClientError as exc:
            return f"{type(exc).__name__}: {exc}", True
