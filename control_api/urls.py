"""Public URLs handed to streamers and viewers; none of them ever carries a key."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PublicUrls:
    """Bases as clients reach this server, e.g. behind NAT or a proxy."""

    rtmp_base: str  # "rtmp://HOST:1935/live": OBS's "Server" field
    http_base: str  # "http://HOST:8080"

    def rtmp_url(self) -> str:
        """Where to publish; the key goes separately into the encoder's key field."""
        return self.rtmp_base.rstrip("/")

    def playback_url(self, channel: str) -> str:
        return f"{self.http_base.rstrip('/')}/live/{channel}/index.m3u8"

    def credentials(self, channel: str, stream_key: str) -> dict[str, str]:
        """The object shown once when a key is issued (API and `channel add --json`)."""
        return {
            "name": channel,
            "stream_key": stream_key,
            "rtmp_url": self.rtmp_url(),
            "playback_url": self.playback_url(channel),
        }
