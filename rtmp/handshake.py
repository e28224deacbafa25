"""RTMP handshake, server side: C0+C1 -> S0+S1+S2, then C2.

Two flavours exist in the field. The simple one (RTMP spec 5.2) has a zero
"version" field in C1 and any random bytes. The Flash Player 9 "complex" one
hides an HMAC-SHA256 digest at a position derived from C1's own bytes; clients
that send it (ffmpeg, Flash-era encoders) may check that S1/S2 carry digests of
the same scheme, so we answer in kind when C1's digest verifies. C2 is never
checked against S1: OBS and others echo whatever they like, and no server that
encoders are tested against insists on it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct

from .errors import RemoteProtocolError

RTMP_VERSION = 3
HANDSHAKE_SIZE = 1536
DIGEST_SIZE = 32

# Keys of the FP9 scheme. The 32-byte tail is shared by client and server keys;
# the short prefixes alone sign C1 (30 bytes) and S1 (36 bytes); the full keys (62
# and 68 bytes) derive the keys that sign S2 and C2 over the peer's digest.
_KEY_TAIL = bytes.fromhex(
    "f0eec24a8068bee82e00d0d1029e7e576eec5d2d29806fab93b8e636cfeb31ae"
)
CLIENT_KEY_PREFIX = b"Genuine Adobe Flash Player 001"
SERVER_KEY_PREFIX = b"Genuine Adobe Flash Media Server 001"
SERVER_KEY_FULL = SERVER_KEY_PREFIX + _KEY_TAIL

# Version we claim in a complex S1 (any non-zero value marks it as complex).
SERVER_VERSION = b"\x04\x05\x00\x01"


def _digest_offset(block: bytes, scheme: int) -> int:
    """Where the 32-byte digest sits in a 1536-byte C1/S1 for a scheme (0 or 1)."""
    base = 8 if scheme == 0 else 772
    return sum(block[base : base + 4]) % 728 + base + 4


def _hmac(key: bytes, *parts: bytes) -> bytes:
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for part in parts:
        mac.update(part)
    return mac.digest()


def _digest_for(block: bytes, offset: int, key: bytes) -> bytes:
    return _hmac(key, block[:offset], block[offset + DIGEST_SIZE :])


def find_client_digest(c1: bytes) -> bytes | None:
    """The C1 digest if C1 follows the FP9 scheme (either layout), else None."""
    if c1[4:8] == b"\x00\x00\x00\x00":
        return None
    for scheme in (0, 1):
        offset = _digest_offset(c1, scheme)
        expected = _digest_for(c1, offset, CLIENT_KEY_PREFIX)
        if hmac.compare_digest(expected, c1[offset : offset + DIGEST_SIZE]):
            return expected
    return None


def _sign_block(block: bytearray, key: bytes, scheme: int = 0) -> None:
    offset = _digest_offset(block, scheme)
    block[offset : offset + DIGEST_SIZE] = _digest_for(bytes(block), offset, key)


def build_server_response(c1: bytes, server_time: int = 0) -> bytes:
    """S0 + S1 + S2 for a given C1."""
    if len(c1) != HANDSHAKE_SIZE:
        raise RemoteProtocolError(f"C1 must be {HANDSHAKE_SIZE} bytes, got {len(c1)}")
    client_digest = find_client_digest(c1)
    s1 = bytearray(struct.pack(">I", server_time & 0xFFFFFFFF))
    if client_digest is None:
        s1 += b"\x00\x00\x00\x00" + os.urandom(HANDSHAKE_SIZE - 8)
        # Simple scheme: S2 echoes C1 (time, time2 = time we read it, random).
        s2 = c1[:4] + struct.pack(">I", server_time & 0xFFFFFFFF) + c1[8:]
        return bytes([RTMP_VERSION]) + bytes(s1) + s2
    s1 += SERVER_VERSION + os.urandom(HANDSHAKE_SIZE - 8)
    _sign_block(s1, SERVER_KEY_PREFIX)
    s2 = bytearray(os.urandom(HANDSHAKE_SIZE))
    s2_key = _hmac(SERVER_KEY_FULL, client_digest)
    s2[-DIGEST_SIZE:] = _hmac(s2_key, bytes(s2[:-DIGEST_SIZE]))
    return bytes([RTMP_VERSION]) + bytes(s1) + bytes(s2)


def check_c0(version: int) -> None:
    """Accept version 3 (and 6, RTMPE's marker, is refused with a clear reason)."""
    if version == 6:
        raise RemoteProtocolError("encrypted RTMP (RTMPE, C0 version 6) is not supported")
    if version != RTMP_VERSION:
        raise RemoteProtocolError(f"unsupported RTMP version {version} in C0 (expected 3)")


def build_client_c0c1(complex_digest: bool = False, client_time: int = 0) -> bytes:
    """C0 + C1 as a client sends them; used by tests and the benchmark publishers."""
    c1 = bytearray(struct.pack(">I", client_time & 0xFFFFFFFF))
    if complex_digest:
        c1 += b"\x09\x00\x7c\x02" + os.urandom(HANDSHAKE_SIZE - 8)
        _sign_block(c1, CLIENT_KEY_PREFIX)
    else:
        c1 += b"\x00\x00\x00\x00" + os.urandom(HANDSHAKE_SIZE - 8)
    return bytes([RTMP_VERSION]) + bytes(c1)

