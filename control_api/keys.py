"""Channel names and stream keys: validation, generation, hashing.

Stream keys are bearer secrets. They exist in plaintext only in the response that
creates or rotates them and in the publisher's RTMP stream name; everywhere else we
hold their SHA-256 digest.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import TypeGuard

from hls.names import CHANNEL_NAME, MAX_CHANNEL_NAME_LENGTH

# The rule itself is hls.names.CHANNEL_NAME (the HLS routes check names too); this is it
# anchored, as OpenAPI's `pattern` wants.
CHANNEL_NAME_PATTERN = f"^{CHANNEL_NAME.pattern}$"

# 24 random bytes = 192 bits, comfortably above the 128-bit floor the spec asks for,
# and 32 URL-safe characters: short enough to paste into OBS without wrapping.
STREAM_KEY_BYTES = 24

# No key we issue is longer than this; anything longer is refused before hashing so a
# hostile peer cannot make us hash megabytes.
MAX_STREAM_KEY_LENGTH = 512


class InvalidChannelName(ValueError):
    """The proposed channel name breaks the naming rule."""


def is_valid_channel_name(name: object) -> TypeGuard[str]:
    """True when `name` is a string that could name a channel."""
    return isinstance(name, str) and CHANNEL_NAME.fullmatch(name) is not None


def validate_channel_name(name: object) -> None:
    """Raise InvalidChannelName, with a message a person can act on, unless `name` is valid."""
    if not isinstance(name, str):
        raise InvalidChannelName("channel name must be a string")
    if is_valid_channel_name(name):
        return
    if not name:
        raise InvalidChannelName("channel name must not be empty")
    if len(name) > MAX_CHANNEL_NAME_LENGTH:
        raise InvalidChannelName(
            f"channel name must be at most {MAX_CHANNEL_NAME_LENGTH} characters")
    raise InvalidChannelName(
        "channel name must be lowercase letters, digits, '_' or '-', "
        "starting with a letter or digit"
    )


def new_stream_key() -> str:
    """A fresh random URL-safe stream key."""
    return secrets.token_urlsafe(STREAM_KEY_BYTES)


def strip_key_query(stream_key: str) -> str:
    """Drop a `?query` suffix: encoders append one to the RTMP stream name and we ignore it."""
    return stream_key.split("?", 1)[0]


def hash_stream_key(stream_key: str) -> str:
    """The stored form of a key: SHA-256 hex of its UTF-8 bytes.

    A plain fast hash is right here because our keys carry 192 bits of randomness:
    nobody can brute-force that preimage, so a slow password hash (bcrypt, scrypt)
    would buy nothing. It would also need a per-key salt, which rules out looking a
    key up by its hash through a unique index.
    """
    return hashlib.sha256(stream_key.encode("utf-8", "surrogatepass")).hexdigest()


def hashes_match(computed: str, stored: str) -> bool:
    """Constant-time comparison of two key hashes."""
    return hmac.compare_digest(computed.encode(), stored.encode())


def usable_key(stream_key: object) -> str | None:
    """The key with any query string removed, or None if it cannot be one of ours."""
    if not isinstance(stream_key, str):
        return None
    key = strip_key_query(stream_key)
    if not key or len(key) > MAX_STREAM_KEY_LENGTH:
        return None
    return key
