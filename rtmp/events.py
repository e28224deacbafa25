"""Events a ServerConnection hands to its owner: frozen, slotted, comparable."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Event:
    """Base class of everything next_event() returns."""


@dataclass(frozen=True, slots=True)
class HandshakeComplete(Event):
    complex_digest: bool


@dataclass(frozen=True, slots=True)
class Connected(Event):
    """`connect` was answered with NetConnection.Connect.Success."""

    app: str
    tc_url: str
    flash_ver: str
    properties: dict[str, Any] = field(compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class PublishRequested(Event):
    """A `publish` waits for accept_publish() or reject_publish(); reading pauses until then."""

    stream_id: int
    stream_name: str
    publish_type: str
    app: str

    def __repr__(self) -> str:
        # The stream name is the secret key: never print it.
        return f"PublishRequested(stream_id={self.stream_id}, app={self.app!r}, name=<hidden>)"


@dataclass(frozen=True, slots=True)
class PlayRequested(Event):
    stream_id: int
    stream_name: str


@dataclass(frozen=True, slots=True)
class Metadata(Event):
    stream_id: int
    values: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AudioData(Event):
    stream_id: int
    timestamp: int
    payload: bytes | bytearray = field(repr=False)


@dataclass(frozen=True, slots=True)
class VideoData(Event):
    stream_id: int
    timestamp: int
    payload: bytes | bytearray = field(repr=False)


@dataclass(frozen=True, slots=True)
class MediaReceived(Event):
    """Audio and video messages that came back to back, in order (batching connections only).

    One event for a run of media instead of one per message: the per-message
    work is then one tuple, not an event object and a dispatch. Each frame is
    ``(type_id, timestamp, payload)`` with type_id 8 (audio) or 9 (video);
    empty payloads are left out, as for AudioData/VideoData.
    """

    stream_id: int
    frames: list[tuple[int, int, bytes]] = field(repr=False)


@dataclass(frozen=True, slots=True)
class ConnectRejected(Event):
    """`connect` named an application that does not exist; answered with
    NetConnection.Connect.Rejected, the connection now only waits to be closed."""

    app: str


@dataclass(frozen=True, slots=True)
class Unpublished(Event):
    """The encoder ended its publish on this stream (FCUnpublish, closeStream, deleteStream)."""

    stream_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class PingResponse(Event):
    timestamp: int


@dataclass(frozen=True, slots=True)
class UnhandledCommand(Event):
    """A command we do not act on; reported for the log, not an error."""

    name: str
    stream_id: int
