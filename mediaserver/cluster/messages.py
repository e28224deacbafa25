"""Control bus messages (pure): what one node asks of the others, and their answers.

One Redis pub/sub channel carries them all as JSON. Every node reads every
message, so decoding is strict and bounded: a malformed message raises
MessageError and is counted and dropped, never acted on.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from hls.names import CHANNEL_NAME

# A message is a channel name, a reason and a few ids: far under this many characters.
# Anything longer is not ours, and is refused before it is parsed.
MAX_MESSAGE_LENGTH = 4096
# Reasons are short sentences ("stream key rotated"); they reach logs and encoders.
MAX_REASON_LENGTH = 200
# Node ids are host:pid:token; request ids are short tokens.
MAX_ID_LENGTH = 300
# The longest block the API accepts is a week (control_api.handlers); a little slack.
MAX_BLOCK_SECONDS = 8 * 24 * 3600.0


class MessageError(ValueError):
    """A bus message this node will not act on."""


@dataclass(frozen=True, slots=True)
class Kick:
    """Close the channel's publisher where it is live; block it everywhere if asked."""

    channel: str
    reason: str
    block_seconds: float
    request_id: str
    sender: str
    targets: tuple[str, ...]  # nodes that must answer (those believed to hold it)


@dataclass(frozen=True, slots=True)
class Handoff:
    """The channel now starts on `sender`: let go of its publisher and playlist here."""

    channel: str
    reason: str
    request_id: str
    sender: str
    targets: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Ack:
    """A node's answer to a Kick or Handoff: done, and whether it closed a publisher."""

    request_id: str
    sender: str
    kicked: bool


Message = Kick | Handoff | Ack


def encode(message: Message) -> str:
    if isinstance(message, Ack):
        body: dict[str, Any] = {"op": "ack", "request_id": message.request_id,
                                "sender": message.sender, "kicked": message.kicked}
    else:
        body = {"op": "kick" if isinstance(message, Kick) else "handoff",
                "channel": message.channel, "reason": message.reason,
                "request_id": message.request_id, "sender": message.sender,
                "targets": list(message.targets)}
        if isinstance(message, Kick):
            body["block_seconds"] = message.block_seconds
    return json.dumps(body, separators=(",", ":"))


def decode(data: str | bytes) -> Message:
    if len(data) > MAX_MESSAGE_LENGTH:
        raise MessageError(f"message of {len(data)} characters is over {MAX_MESSAGE_LENGTH}")
    try:
        body = json.loads(data)
    except (ValueError, TypeError) as exc:
        raise MessageError(f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise MessageError("not a JSON object")
    op = body.get("op")
    request_id = _id(body, "request_id")
    sender = _id(body, "sender")
    if op == "ack":
        kicked = body.get("kicked")
        if not isinstance(kicked, bool):
            raise MessageError("ack without a boolean 'kicked'")
        return Ack(request_id, sender, kicked)
    if op not in ("kick", "handoff"):
        raise MessageError(f"unknown op {op!r}")
    channel = body.get("channel")
    if not isinstance(channel, str) or not CHANNEL_NAME.fullmatch(channel):
        raise MessageError("no valid channel name")
    reason = body.get("reason")
    if not isinstance(reason, str) or len(reason) > MAX_REASON_LENGTH:
        raise MessageError("reason must be a short string")
    targets = body.get("targets")
    if not isinstance(targets, list) or not all(
            isinstance(t, str) and 0 < len(t) <= MAX_ID_LENGTH for t in targets):
        raise MessageError("targets must be a list of node ids")
    if op == "handoff":
        return Handoff(channel, reason, request_id, sender, tuple(targets))
    seconds = body.get("block_seconds")
    if (not isinstance(seconds, int | float) or isinstance(seconds, bool)
            or not math.isfinite(seconds) or not 0 <= seconds <= MAX_BLOCK_SECONDS):
        raise MessageError("block_seconds must be a number from 0 to a week")
    return Kick(channel, reason, float(seconds), request_id, sender, tuple(targets))


def _id(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_LENGTH:
        raise MessageError(f"no valid {name}")
    return value
