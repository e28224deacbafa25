"""The control bus: one Redis pub/sub channel that every node listens on.

Kicks (API kick, key rotation, channel deletion, blocks) and handoffs (a
publish moving to another node) are broadcast; the nodes they concern act and
answer with an Ack on the same channel, which the asking node waits for with
a deadline. Pub/sub delivers at most once: a node that was disconnected misses
what was sent meanwhile, which is why what must outlive a message (blocks, who
holds a channel) also lives in Redis keys. A lost subscription is retried
forever; it never takes the node down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .keys import CONTROL_CHANNEL
from .messages import Ack, Handoff, Kick, MessageError, decode, encode
from .tasks import Background

log = logging.getLogger("mediaserver.cluster.bus")

# How long one read of the subscription waits for a message before looping; also
# how soon a stop() is noticed. Short enough not to matter, long enough to idle.
POLL_SECONDS = 1.0
# Pause between attempts to subscribe again after Redis went away.
RESUBSCRIBE_SECONDS = 0.5


@dataclass(slots=True)
class BusStats:
    sent: int = 0
    received: int = 0
    malformed: int = 0
    ack_timeouts: int = 0
    resubscribes: int = 0


@dataclass(slots=True)
class _Waiting:
    """The Acks one request is waiting for."""

    expected: set[str]
    acks: dict[str, Ack] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, ack: Ack) -> None:
        self.acks[ack.sender] = ack
        if self.expected <= set(self.acks):
            self.done.set()


Command = Kick | Handoff


class ControlBus:
    """Send commands to the other nodes, hear theirs, and match their answers."""

    def __init__(self, redis: aioredis.Redis, node: str,
                 handle: Callable[[Command], Awaitable[None]]) -> None:
        self._redis = redis
        self.node = node
        self._handle = handle
        self.stats = BusStats()
        self.subscribed = asyncio.Event()
        self._waiting: dict[str, _Waiting] = {}
        self._handlers = Background()
        self._listener: asyncio.Task[None] | None = None

    @staticmethod
    def new_request_id() -> str:
        return secrets.token_hex(8)

    async def start(self) -> None:
        self._listener = asyncio.get_running_loop().create_task(self._listen())

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await self._handlers.cancel()

    async def send(self, message: Kick | Handoff | Ack) -> None:
        """Publish one message; raises RedisError/OSError when Redis cannot be reached."""
        await self._redis.publish(CONTROL_CHANNEL, encode(message))
        self.stats.sent += 1

    async def request(self, command: Command, timeout: float) -> dict[str, Ack]:
        """Send a command and wait (at most `timeout`) for an Ack from each target.

        Returns the Acks that came, by node; a missing one means that node did not
        answer in time (gone, or cut off from Redis). Raises as send() does.
        """
        waiting = _Waiting(set(command.targets))
        self._waiting[command.request_id] = waiting
        try:
            await self.send(command)
            if waiting.expected:
                try:
                    await asyncio.wait_for(waiting.done.wait(), timeout)
                except TimeoutError:
                    self.stats.ack_timeouts += 1
                    missing = sorted(waiting.expected - set(waiting.acks))
                    log.warning("control bus: no answer in %.1fs from %s to %s channel=%s",
                                timeout, ", ".join(missing), type(command).__name__.lower(),
                                command.channel)
            return dict(waiting.acks)
        finally:
            del self._waiting[command.request_id]

    async def _listen(self) -> None:
        failing = False
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CONTROL_CHANNEL)
                self.subscribed.set()
                if failing:
                    log.info("control bus: subscribed again")
                    failing = False
                while True:
                    raw = await pubsub.get_message(ignore_subscribe_messages=True,
                                                   timeout=POLL_SECONDS)
                    if raw is not None and raw.get("type") == "message":
                        self._dispatch(raw["data"])
            except (RedisError, OSError) as exc:
                self.subscribed.clear()
                self.stats.resubscribes += 1
                if not failing:
                    log.warning("control bus: subscription lost (retrying): %s", exc)
                    failing = True
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(RESUBSCRIBE_SECONDS)

    def _dispatch(self, data: str | bytes) -> None:
        try:
            message = decode(data)
        except MessageError as exc:
            self.stats.malformed += 1
            log.warning("control bus: malformed message dropped: %s", exc)
            return
        self.stats.received += 1
        if message.sender == self.node:
            return  # our own broadcast
        if isinstance(message, Ack):
            waiting = self._waiting.get(message.request_id)
            if waiting is not None:
                waiting.add(message)
            return
        what = f"{type(message).__name__.lower()} channel={message.channel} from {message.sender}"
        self._handlers.spawn(self._handle(message), what)
