"""Optional external publish authorisation: ask the platform backend about each key.

Fails closed: a backend that is slow, broken or unreachable denies the publish, with a
reason that says which. Definite answers are cached briefly, and identical concurrent
questions share one request, so an encoder reconnect storm does not hammer the backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from control_api.keys import hash_stream_key, is_valid_channel_name, usable_key

DEFAULT_TIMEOUT = 3.0  # OBS waits ~10 s for a publish answer; stay well inside that
DEFAULT_CACHE_TTL = 5.0  # long enough to absorb a reconnect burst, short enough to revoke
# Bounds the cache under a flood of distinct bogus keys.
MAX_CACHE_ENTRIES = 10_000
# A decision is a tiny JSON object; refuse to buffer more than this from the backend.
MAX_RESPONSE_BYTES = 64 * 1024

_CacheKey = tuple[str, str]  # (app, SHA-256 of the key): the plaintext key is never held


@dataclass(frozen=True, slots=True)
class AuthDecision:
    allowed: bool
    channel: str | None
    reason: str


class AuthWebhook:
    """POSTs `{"app", "stream_key", "client_ip"}`; 2xx `{"channel": NAME}` allows, 4xx denies.

    The cache is keyed by app and key hash, not client address: within the TTL a key
    gets the same answer from any address, and coalesced requests carry the address of
    the first caller.
    """

    def __init__(
        self,
        url: str,
        timeout: float = DEFAULT_TIMEOUT,
        cache_ttl: float = DEFAULT_CACHE_TTL,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._timeout = timeout
        self._cache_ttl = cache_ttl
        self._clock = clock
        self._cache: OrderedDict[_CacheKey, tuple[float, AuthDecision]] = OrderedDict()
        self._inflight: dict[_CacheKey, asyncio.Task[AuthDecision]] = {}
        self._session: aiohttp.ClientSession | None = None
        self.requests_sent = 0

    def __repr__(self) -> str:
        return f"AuthWebhook({self._url!r})"

    async def close(self) -> None:
        for task in list(self._inflight.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def authorize(self, app: str, stream_key: str, client_ip: str) -> AuthDecision:
        key = usable_key(stream_key)
        if key is None:
            return AuthDecision(False, None, "malformed stream key")
        cache_key = (app, hash_stream_key(key))
        cached = self._cached(cache_key)
        if cached is not None:
            return cached
        task = self._inflight.get(cache_key)
        if task is None:
            task = asyncio.create_task(self._ask(cache_key, key, client_ip))
            self._inflight[cache_key] = task
            task.add_done_callback(lambda done: self._forget(cache_key, done))
        # shield: one caller giving up (its client hung up) must not cancel the others.
        return await asyncio.shield(task)

    def _forget(self, cache_key: _CacheKey, task: asyncio.Task[AuthDecision]) -> None:
        if self._inflight.get(cache_key) is task:
            del self._inflight[cache_key]

    def _cached(self, cache_key: _CacheKey) -> AuthDecision | None:
        entry = self._cache.get(cache_key)
        if entry is None:
            return None
        expires, decision = entry
        if expires <= self._clock():
            del self._cache[cache_key]
            return None
        return decision

    def _remember(self, cache_key: _CacheKey, decision: AuthDecision) -> None:
        if self._cache_ttl <= 0:
            return
        self._cache[cache_key] = (self._clock() + self._cache_ttl, decision)
        self._cache.move_to_end(cache_key)
        while len(self._cache) > MAX_CACHE_ENTRIES:
            self._cache.popitem(last=False)

    async def _ask(self, cache_key: _CacheKey, key: str, client_ip: str) -> AuthDecision:
        app = cache_key[0]
        if self._session is None:
            self._session = aiohttp.ClientSession()
        self.requests_sent += 1
        try:
            async with asyncio.timeout(self._timeout):
                status, body = await self._post(
                    {"app": app, "stream_key": key, "client_ip": client_ip}
                )
        except TimeoutError:
            return AuthDecision(False, None, f"auth webhook gave no answer in {self._timeout:g}s")
        except (aiohttp.ClientError, OSError) as exc:
            return AuthDecision(False, None, f"auth webhook unreachable ({type(exc).__name__})")
        except Exception as exc:  # fail closed on anything else, too
            return AuthDecision(False, None, f"auth webhook error ({type(exc).__name__})")
        decision: AuthDecision | None
        if 400 <= status < 500:
            decision = AuthDecision(False, None, f"denied by auth webhook (HTTP {status})")
        elif 200 <= status < 300:
            decision = _allow(body)
            if decision is None:
                return AuthDecision(False, None, "auth webhook allowed but named no valid channel")
        else:
            # 5xx, or a redirect we do not follow: the backend is broken, not saying no.
            return AuthDecision(False, None, f"auth webhook failed (HTTP {status})")
        # Only definite answers are cached; failures are retried on the next publish.
        self._remember(cache_key, decision)
        return decision

    async def _post(self, document: dict[str, str]) -> tuple[int, bytes]:
        assert self._session is not None
        async with self._session.post(self._url, json=document, allow_redirects=False) as response:
            body = bytearray()
            while chunk := await response.content.read(MAX_RESPONSE_BYTES + 1 - len(body)):
                body += chunk
                if len(body) > MAX_RESPONSE_BYTES:
                    break
            return response.status, bytes(body)


def _allow(body: bytes) -> AuthDecision | None:
    """The allow decision a 2xx body carries, or None unless it names a valid channel."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        document = None
    channel = document.get("channel") if isinstance(document, dict) else None
    if not is_valid_channel_name(channel):
        return None
    return AuthDecision(True, channel, "allowed by auth webhook")
