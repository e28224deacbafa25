"""The narrow view of the live system that the control API is handed.

The composition root implements `LiveControl` (the stream hub); the API never imports
it, so the API can be tested with a fake and the hub knows nothing about HTTP.
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
    """What the API may ask of, and do to, the streams live on this node."""

    def live_streams(self) -> list[StreamStats]: ...

    def is_live(self, channel: str) -> bool: ...

    def kick(self, channel: str, reason: str, block_seconds: float = 0.0) -> bool:
        """Close the channel's publisher; True if one was closed.

        A positive `block_seconds` refuses publishes on the channel for that long,
        whether or not anyone was live.
        """
        ...
