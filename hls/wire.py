"""HTTP/1.1 response heads as bytes, for answers written straight to a transport.

A head made here stops before the Date line and the blank line that ends it:
whoever writes it adds those (the date changes every second, the head does not),
so a head can be made once per playlist version or content type and reused.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus


def response_head(status: int, headers: Mapping[str, str],
                  content_length: int | None = None) -> bytes:
    """Status line and header lines, each ending in CRLF; Content-Length last if given."""
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"]
    for name, value in headers.items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name:
            raise ValueError(f"header {name!r} cannot go on the wire as it is")
        lines.append(f"{name}: {value}\r\n")
    if content_length is not None:
        lines.append(f"Content-Length: {content_length}\r\n")
    return "".join(lines).encode("latin-1")


def content_length_line(size: int) -> bytes:
    return b"Content-Length: %d\r\n" % size
