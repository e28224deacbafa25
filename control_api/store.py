"""The channel store contract: what a channel is, what a store does, how one is opened.

Two implementations sit beside this module: `sqlite_store` (the embedded default,
one node) and `redis_store` (shared by several nodes). Callers depend only on the
`ChannelStore` protocol and the errors below.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

SQLITE_FILENAME = "channels.sqlite3"


@dataclass(frozen=True, slots=True)
class Channel:
    """Public facts about a channel. Deliberately holds no key material."""

    name: str
    created_at: float
    key_rotated_at: float


class StoreError(Exception):
    """Base of every error a store raises on purpose."""


class StoreUnavailable(StoreError):
    """The backing database cannot be reached right now; the call may succeed later."""


class ChannelExists(StoreError):
    """A channel with that name already exists."""


class ChannelNotFound(StoreError):
    """No channel has that name."""


class ChannelStore(Protocol):
    """Channels, their hashed keys, and which channels are live on some node."""

    async def create_channel(self, name: str) -> str:
        """Create `name` and return its new plaintext key (the only time it is seen)."""
        ...

    async def get_channel(self, name: str) -> Channel | None: ...

    async def list_channels(self) -> list[Channel]:
        """Every channel, sorted by name."""
        ...

    async def rotate_key(self, name: str) -> str:
        """Replace the key; the old one stops working before this returns."""
        ...

    async def delete_channel(self, name: str) -> bool:
        """Remove the channel and its key; False if there was none."""
        ...

    async def channel_for_key(self, stream_key: str) -> str | None:
        """The channel a key publishes to, ignoring any `?query`; None if none."""
        ...

    async def mark_online(self, name: str, node: str, ttl_seconds: float) -> None:
        """Record that `node` carries `name`; lapses unless refreshed within the TTL."""
        ...

    async def mark_offline(self, name: str) -> None: ...

    async def online_channels(self) -> set[str]: ...

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the backing database answers."""
        ...

    async def close(self) -> None: ...


# URL schemes of the store several nodes can share (Redis).
SHARED_SCHEMES = frozenset({"redis", "rediss", "unix"})


def is_shared_store(url: str | None) -> bool:
    """Whether `--store URL` names a store that several nodes can share."""
    return url is not None and urlsplit(url).scheme.lower() in SHARED_SCHEMES


def open_store(url: str | None, data_dir: Path) -> ChannelStore:
    """Open the store a `--store` URL names, without doing network I/O.

    - None, `sqlite://` or `sqlite:///`: `channels.sqlite3` under `data_dir`.
    - `sqlite:///relative/file.db`: that file, relative to `data_dir`.
    - `sqlite:////absolute/file.db`: that absolute path (the usual SQLAlchemy spelling).
    - `redis://[user:pass@]host:port/db`, `rediss://…`, `unix://…`: Redis.
    """
    if url is None:
        return _open_sqlite(data_dir / SQLITE_FILENAME)
    scheme = urlsplit(url).scheme.lower()
    if scheme == "sqlite":
        rest = url[len("sqlite://") :]
        relative = rest[1:] if rest.startswith("/") else rest
        if not relative:
            return _open_sqlite(data_dir / SQLITE_FILENAME)
        return _open_sqlite(data_dir / relative)
    if scheme in SHARED_SCHEMES:
        from control_api.redis_store import RedisStore

        return RedisStore(url)
    raise ValueError(f"unsupported store URL scheme {scheme!r}: use sqlite:// or redis://")


def _open_sqlite(path: Path) -> ChannelStore:
    from control_api.sqlite_store import SQLiteStore

    return SQLiteStore(path)
