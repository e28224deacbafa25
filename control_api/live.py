"""The narrow view of the live system that the control API is handed.

The composition root implements `LiveControl`: the stream hub of a node on its own,
or the cluster layer when several nodes share Redis (then a kick may have to reach
another node, hence the awaits). The API never imports either, so it can be tested
with a fake and the hub knows nothing about HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class StreamStats:
    """A snapshot of one live publish, as measured at ingest."""

    channel: str
    publisher: str  # peer address, "host:port"
    started_at: float  # epoch seconds
    video_codec: str | None
    width: int | None
    height: int | None
    fps: float | None
    bitrate_bps: float
    keyframe_interval: float | None  # seconds
    audio_codec: str | None
    sample_rate: int | None
    audio_channels: int | None
    warnings: tuple[str, ...]


class LiveControl(Protocol):
    """What the API may ask of, and do to, the streams live on any node."""

    def live_here(self) -> set[str]:
        """Channels live on this node, without I/O (the store's online records, which
        lag a little, cover the other nodes)."""
        ...

    async def live_streams(self) -> list[StreamStats]:
        """Every live stream, on every node."""
        ...

    async def is_live(self, channel: str) -> bool:
        """Whether some node holds a live publisher for the channel."""
        ...

    async def kick(self, channel: str, reason: str, block_seconds: float = 0.0) -> bool:
        """Close the channel's publisher on whichever node holds it; True if one was.

        A positive `block_seconds` refuses publishes on the channel for that long, on
        every node, whether or not anyone was live. May raise StoreUnavailable when
        the nodes cannot be reached to do so.
        """
        ...
