"""The control API's view of a node on its own: the stream hub behind LiveControl.

The hub is synchronous and answers at once; the protocol is async because in a
cluster (mediaserver.cluster) a kick may have to reach another node.
"""

from __future__ import annotations

from control_api.live import StreamStats

from .hub import StreamHub


class HubLive:
    """control_api.live.LiveControl for one node: everything live is in this hub."""

    def __init__(self, hub: StreamHub) -> None:
        self.hub = hub

    def live_here(self) -> set[str]:
        return {publisher.channel for publisher in self.hub.publishers()}

    async def live_streams(self) -> list[StreamStats]:
        return self.hub.live_streams()

    async def is_live(self, channel: str) -> bool:
        return self.hub.is_live(channel)

    async def kick(self, channel: str, reason: str, block_seconds: float = 0.0) -> bool:
        return self.hub.kick(channel, reason, block_seconds)
