"""The control API's view of the whole cluster (control_api.live.LiveControl).

Streams held here are read from the hub, fresh; the other nodes' from the stats
their heartbeats leave in Redis (at most a heartbeat old). A kick is done here
when the publisher is here, else sent over the bus to the node the registry says
holds it, and the answer waited for, so the API replies once it is done.
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError

from control_api.live import StreamStats
from control_api.store import StoreUnavailable

from ..hub import StreamHub
from .blocks import Blocks
from .bus import ControlBus
from .messages import Kick
from .registry import Registry, RemoteStream

log = logging.getLogger("mediaserver.cluster")

# How long the API waits for the node holding a publisher to confirm its kick. A
# node answers in milliseconds; one that does not within this is gone or cut off
# from Redis (its records lapse on their own).
KICK_ANSWER_SECONDS = 2.0


class ClusterLive:
    def __init__(self, hub: StreamHub, registry: Registry, bus: ControlBus,
                 blocks: Blocks) -> None:
        self.hub = hub
        self.registry = registry
        self.bus = bus
        self.blocks = blocks
        self.node = registry.node

    def live_here(self) -> set[str]:
        return {publisher.channel for publisher in self.hub.publishers()}

    async def live_streams(self) -> list[StreamStats]:
        local = self.hub.live_streams()
        here = {stats.channel for stats in local}
        streams = local + [stream.stats for stream in await self.elsewhere()
                           if stream.stats.channel not in here]
        return sorted(streams, key=lambda stats: stats.channel)

    async def elsewhere(self) -> list[RemoteStream]:
        """The live streams other nodes hold; none while Redis cannot be asked."""
        try:
            return await self.registry.remote_streams()
        except (RedisError, OSError) as exc:
            log.warning("cluster: listing this node's streams only (Redis unavailable): %s", exc)
            return []

    async def is_live(self, channel: str) -> bool:
        if self.hub.is_live(channel):
            return True
        try:
            found = await self.registry.holder(channel)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"cannot ask the cluster: {exc}") from exc
        return found is not None and found[0] != self.node

    async def kick(self, channel: str, reason: str, block_seconds: float = 0.0) -> bool:
        try:
            if block_seconds > 0:
                # First, so a publish racing this kick on another node is refused too.
                await self.blocks.set(channel, block_seconds, reason)
            kicked = self.hub.kick(channel, reason, block_seconds)
            if kicked and block_seconds == 0:
                return True  # a channel has one origin, and it was this node
            found = await self.registry.holder(channel)
            holder = found[0] if found is not None and found[0] != self.node else None
            if holder is None and block_seconds == 0:
                return kicked
            command = Kick(channel, reason, block_seconds, self.bus.new_request_id(), self.node,
                           (holder,) if holder is not None else ())
            acks = await self.bus.request(command, KICK_ANSWER_SECONDS)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"cannot reach the other nodes: {exc}") from exc
        if holder is None:
            return kicked
        ack = acks.get(holder)
        # No answer: it was live there as far as Redis knew, and Redis is what the
        # holder's own records lapse from if it is gone.
        return kicked or ack is None or ack.kicked
